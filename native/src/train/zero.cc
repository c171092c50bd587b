#include "train/zero.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "errors.h"

namespace hc {

namespace {

// Gives a released whole tensor's pages back to the OS (the buffer stays mapped, so the
// model's pointers into it stay valid; its contents are undefined until the next gather).
void release_buffer(float* p, int64_t n) {
  std::fill(p, p + n, std::numeric_limits<float>::quiet_NaN());
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t e = reinterpret_cast<uintptr_t>(p + n) & ~(page - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

// A double through an fp32 all-reduce with ~48 bits kept: summed as a (hi, lo) pair.
double all_reduce_double(dist::Communicator& c, double x) {
  float pair[2];
  pair[0] = static_cast<float>(x);
  pair[1] = static_cast<float>(x - static_cast<double>(pair[0]));
  c.all_reduce_sum(pair, 2, DType::F32);
  return static_cast<double>(pair[0]) + static_cast<double>(pair[1]);
}

// A failure point for tests of a group that loses a rank mid-step: with
// HYBRIDCHAT_TEST_FAIL_STEP_RANK=r, rank r throws halfway through the step's reductions (the
// other ranks have summed half the gradients and wait in the next collective). SIZE_MAX: none.
size_t injected_failure_point(int rank, size_t tensors) {
  const char* r = std::getenv("HYBRIDCHAT_TEST_FAIL_STEP_RANK");
  return r != nullptr && *r != '\0' && std::atoi(r) == rank ? tensors / 2 : SIZE_MAX;
}

}  // namespace

ZeroRank::ZeroRank(ParamSet& set, int stage, int rank, int size) : set_(set), stage_(stage), rank_(rank), size_(size) {
  if (stage < 0 || stage > 3) throw Error("invalid_argument", "ZeRO stage must be 0, 1, 2 or 3");
  if (set.empty()) throw Error("nothing_trainable", "data parallel training needs a trainable set (setTrainable first)");
  for (Param& p : set.params()) {
    Part part{&p, stage == 0 ? dist::Shard{0, p.n} : dist::shard_of(p.n, size, rank), {}, {}, {}, {}};
    part.m.assign(static_cast<size_t>(part.s.length), 0.0f);
    part.v.assign(static_cast<size_t>(part.s.length), 0.0f);
    if (stage >= 2) part.grad.assign(static_cast<size_t>(part.s.length), 0.0f);
    parts_.push_back(std::move(part));
  }
}

bool ZeroRank::matches(const ParamSet& set) const {
  if (set.params().size() != parts_.size()) return false;
  for (size_t i = 0; i < parts_.size(); i++)
    if (&set.params()[i] != parts_[i].p || set.params()[i].data != parts_[i].p->data) return false;
  return true;
}

void ZeroRank::sync(dist::Communicator& c) {
  float steps = static_cast<float>(set_.steps());  // exact below 2^24
  c.broadcast(&steps, 1, DType::F32, 0);
  step_ = static_cast<int64_t>(steps);
  std::vector<float> whole;
  for (Part& part : parts_) {
    Param& p = *part.p;
    c.broadcast(p.data, p.n, DType::F32, 0);
    if (stage_ == 3) part.master.assign(p.data + part.s.offset, p.data + part.s.offset + part.s.length);
    for (int k = 0; k < 2; k++) {
      std::vector<float>& own = k == 0 ? p.exp_avg : p.exp_avg_sq;
      whole.assign(static_cast<size_t>(p.n), 0.0f);
      if (rank_ == 0 && static_cast<int64_t>(own.size()) == p.n) whole = own;
      c.broadcast(whole.data(), p.n, DType::F32, 0);
      std::copy(whole.begin() + part.s.offset, whole.begin() + part.s.offset + part.s.length, (k == 0 ? part.m : part.v).begin());
    }
  }
  set_.release_moments();
  if (stage_ == 3) release();
}

void ZeroRank::whole_moments(dist::Communicator& c, std::vector<std::vector<float>>& m, std::vector<std::vector<float>>& v) {
  m.clear();
  v.clear();
  for (Part& part : parts_) {
    for (int k = 0; k < 2; k++) {
      std::vector<float>& mine = k == 0 ? part.m : part.v;
      std::vector<float> whole(static_cast<size_t>(part.p->n));
      if (stage_ == 0)
        whole = mine;
      else
        c.all_gather(mine.data(), whole.data(), part.p->n, DType::F32);
      (k == 0 ? m : v).push_back(std::move(whole));
    }
  }
}

void ZeroRank::gather(dist::Communicator& c) {
  if (stage_ < 3 || gathered_) return;
  for (Part& part : parts_) c.all_gather(part.master.data(), part.p->data, part.p->n, DType::F32);
  gathered_ = true;
}

void ZeroRank::release() {
  if (stage_ < 3 || !gathered_) return;
  for (Part& part : parts_) release_buffer(part.p->data, part.p->n);
  gathered_ = false;
}

StepResult ZeroRank::step(dist::Communicator& c, const OptimizerStep& o) {
  validate_step(o);
  set_.ensure_grads();  // a rank whose slice of the batch was empty ran no backward
  // 1. gradients summed over ranks: whole on every rank (0-1) or this rank's shard (2-3)
  double sq = 0;
  const size_t fail_at = injected_failure_point(rank_, parts_.size());
  for (size_t i = 0; i < parts_.size(); i++) {
    if (i == fail_at) throw Error("injected_failure", "rank " + std::to_string(rank_) + " failed mid-step (HYBRIDCHAT_TEST_FAIL_STEP_RANK)");
    Part& part = parts_[i];
    Param& p = *part.p;
    if (stage_ <= 1) {
      c.all_reduce_sum(p.grad.data(), p.n, DType::F32);
      sq += sum_squares(p.grad.data(), p.n);
    } else {
      c.reduce_scatter_sum(p.grad.data(), part.grad.data(), p.n, DType::F32);
      sq += sum_squares(part.grad.data(), part.s.length);
    }
  }
  if (stage_ >= 2) {
    sq = all_reduce_double(c, sq);
    set_.release_grads();
  }
  const double norm = std::sqrt(sq);
  const float clip = clip_coefficient(o, norm);
  step_++;
  const AdamW adam(o, step_);
  // 2. AdamW on this rank's part, 3. params whole again (or kept as the shard)
  for (Part& part : parts_) {
    Param& p = *part.p;
    const int64_t off = part.s.offset, len = part.s.length;
    float* grad = stage_ >= 2 ? part.grad.data() : p.grad.data() + off;
    float* data = stage_ == 3 ? part.master.data() : p.data + off;
    adam.update(data, grad, part.m.data(), part.v.data(), len, clip);
    if (stage_ == 1) {
      std::fill(p.grad.begin(), p.grad.begin() + off, 0.0f);
      std::fill(p.grad.begin() + off + len, p.grad.end(), 0.0f);
    }
    if (stage_ == 1 || stage_ == 2) c.all_gather(p.data + off, p.data, p.n, DType::F32);
  }
  if (stage_ == 3) {
    gathered_ = true;  // the whole buffers hold the pre-step values: drop them
    release();
  }
  return StepResult{norm, step_};
}

TrainingMemory ZeroRank::memory() const {
  TrainingMemory m;
  for (const Part& part : parts_) {
    const Param& p = *part.p;
    m.params += 4 * (stage_ == 3 ? static_cast<int64_t>(part.master.size()) + (gathered_ ? p.n : 0) : p.n);
    m.grads += 4 * (static_cast<int64_t>(p.grad.size()) + static_cast<int64_t>(part.grad.size()));
    m.optimizer += 4 * static_cast<int64_t>(part.m.size() + part.v.size());
  }
  return m;
}

}  // namespace hc
