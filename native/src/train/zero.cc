#include "train/zero.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "errors.h"

namespace hc {

size_t injected_step_failure(int rank, size_t tensors) {
  const char* r = std::getenv("HYBRIDCHAT_TEST_FAIL_STEP_RANK");
  return r != nullptr && *r != '\0' && std::atoi(r) == rank ? tensors / 2 : SIZE_MAX;
}

double ZeroRank::all_reduce_double(dist::Communicator& c, double x) {
  TrainOps& ops = home_.ops();
  float pair[2];
  pair[0] = static_cast<float>(x);
  pair[1] = static_cast<float>(x - static_cast<double>(pair[0]));
  ops.upload(scalars_.data(), pair, sizeof pair);
  c.all_reduce_sum(scalars_.data(), 2, DType::F32);
  ops.download(pair, scalars_.data(), sizeof pair);
  return static_cast<double>(pair[0]) + static_cast<double>(pair[1]);
}

ZeroRank::ZeroRank(ZeroHome& home, int stage, int rank, int size)
    : home_(home), set_(home.set()), stage_(stage), rank_(rank), size_(size) {
  if (stage < 0 || stage > 3) throw Error("invalid_argument", "ZeRO stage must be 0, 1, 2 or 3");
  if (set_.empty()) throw Error("nothing_trainable", "data parallel training needs a trainable set (setTrainable first)");
  TrainOps& ops = home_.ops();
  host_ = ops.host();
  scalars_.fit(ops, 2);
  for (Param& p : set_.params()) {
    Part part{&p, stage == 0 ? dist::Shard{0, p.n} : dist::shard_of(p.n, size, rank), {}, {}, {}, {}};
    part.m.fit(ops, part.s.length), part.v.fit(ops, part.s.length);  // zero-filled
    if (stage >= 2) part.grad.fit(ops, part.s.length);
    if (stage == 3) part.master.fit(ops, part.s.length);
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
  TrainOps& ops = home_.ops();
  float steps = static_cast<float>(set_.steps());  // exact below 2^24
  ops.upload(scalars_.data(), &steps, sizeof steps);
  c.broadcast(scalars_.data(), 1, DType::F32, 0);
  ops.download(&steps, scalars_.data(), sizeof steps);
  step_ = static_cast<int64_t>(steps);
  Buf whole;
  for (size_t i = 0; i < parts_.size(); i++) {
    Part& part = parts_[i];
    Param& p = *part.p;
    float* data = home_.data(i);
    c.broadcast(data, p.n, DType::F32, 0);
    if (stage_ == 3) ops.copy(part.master.data(), data + part.s.offset, part.s.length);
    for (int k = 0; k < 2; k++) {
      const std::vector<float>& own = k == 0 ? p.exp_avg : p.exp_avg_sq;
      whole.fit(ops, p.n);
      if (rank_ == 0 && static_cast<int64_t>(own.size()) == p.n)
        ops.upload(whole.data(), own.data(), p.n * 4);
      else
        ops.zero(whole.data(), p.n);
      c.broadcast(whole.data(), p.n, DType::F32, 0);
      ops.copy((k == 0 ? part.m : part.v).data(), whole.data() + part.s.offset, part.s.length);
    }
  }
  home_.release_moments();
  if (stage_ == 3) release();
}

void ZeroRank::whole_moments(dist::Communicator& c, std::vector<std::vector<float>>& m, std::vector<std::vector<float>>& v) {
  TrainOps& ops = home_.ops();
  m.clear();
  v.clear();
  Buf whole;
  for (Part& part : parts_) {
    for (int k = 0; k < 2; k++) {
      Buf& mine = k == 0 ? part.m : part.v;
      std::vector<float> out(static_cast<size_t>(part.p->n));
      const float* src = mine.data();
      if (stage_ != 0) {
        whole.fit(ops, part.p->n);
        c.all_gather(mine.data(), whole.data(), part.p->n, DType::F32);
        src = whole.data();
      }
      ops.download(out.data(), src, part.p->n * 4);
      (k == 0 ? m : v).push_back(std::move(out));
    }
  }
}

void ZeroRank::gather(dist::Communicator& c) {
  if (stage_ < 3 || gathered_) return;
  home_.ops();  // binds the device
  for (size_t i = 0; i < parts_.size(); i++)
    c.all_gather(parts_[i].master.data(), home_.data(i), parts_[i].p->n, DType::F32);
  gathered_ = true;
}

void ZeroRank::release() {
  if (stage_ < 3 || !gathered_) return;
  TrainOps& ops = home_.ops();
  for (size_t i = 0; i < parts_.size(); i++) ops.discard(home_.data(i), parts_[i].p->n);
  gathered_ = false;
}

StepResult ZeroRank::step(dist::Communicator& c, const OptimizerStep& o) {
  validate_step(o);
  TrainOps& ops = home_.ops();
  home_.ensure_grads();  // a rank whose slice of the batch was empty ran no backward
  // 1. gradients summed over ranks: whole on every rank (0-1) or this rank's shard (2-3)
  std::vector<std::pair<const float*, int64_t>> summed;
  const size_t fail_at = injected_step_failure(rank_, parts_.size());
  for (size_t i = 0; i < parts_.size(); i++) {
    if (i == fail_at) throw Error("injected_failure", "rank " + std::to_string(rank_) + " failed mid-step (HYBRIDCHAT_TEST_FAIL_STEP_RANK)");
    Part& part = parts_[i];
    float* grad = home_.grad(i);
    if (stage_ <= 1) {
      c.all_reduce_sum(grad, part.p->n, DType::F32);
      summed.emplace_back(grad, part.p->n);
    } else {
      c.reduce_scatter_sum(grad, part.grad.data(), part.p->n, DType::F32);
      summed.emplace_back(part.grad.data(), part.s.length);
    }
  }
  double sq = ops.sum_squares(summed);
  if (stage_ >= 2) {
    sq = all_reduce_double(c, sq);
    home_.release_grads();
  }
  const double norm = std::sqrt(sq);
  const float clip = clip_coefficient(o, norm);
  step_++;
  const AdamW adam(o, step_);
  // 2. AdamW on this rank's part, 3. params whole again (or kept as the shard)
  for (size_t i = 0; i < parts_.size(); i++) {
    Part& part = parts_[i];
    const int64_t n = part.p->n, off = part.s.offset, len = part.s.length;
    float* data = home_.data(i);
    float* grad = stage_ >= 2 ? part.grad.data() : home_.grad(i) + off;
    ops.adamw(stage_ == 3 ? part.master.data() : data + off, grad, part.m.data(), part.v.data(), len, adam, clip);
    if (stage_ == 1) {  // the other ranks' parts of the whole gradient, which they zero in theirs
      ops.zero(home_.grad(i), off);
      ops.zero(home_.grad(i) + off + len, n - off - len);
    }
    if (stage_ == 1 || stage_ == 2) c.all_gather(data + off, data, n, DType::F32);
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
    const int64_t n = part.p->n;
    // a device keeps a released whole tensor allocated (the Exec's pinned copy the forward
    // reads), so only the CPU, whose pages go back to the OS, stops counting it
    const bool whole_held = stage_ < 3 || gathered_ || !host_;
    m.params += 4 * ((whole_held ? n : 0) + part.master.size());
    m.grads += 4 * ((home_.holds_grads() ? n : 0) + part.grad.size());
    m.optimizer += 4 * (part.m.size() + part.v.size());
  }
  return m;
}

}  // namespace hc
