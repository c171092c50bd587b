#include "model_dp.h"

#include <exception>
#include <thread>

#include "dist/comm_threads.h"
#include "errors.h"

namespace hc {

DataParallelGroup::DataParallelGroup(std::vector<std::shared_ptr<Model>> models, int stage)
    : models_(std::move(models)), stage_(stage) {
  if (models_.empty()) throw Error("invalid_argument", "data parallel training needs at least one model");
  const auto& first = models_[0]->trainable().params();
  for (auto& m : models_) {
    const auto& ps = m->trainable().params();
    bool alike = ps.size() == first.size();
    for (size_t i = 0; alike && i < ps.size(); i++) alike = ps[i].name == first[i].name && ps[i].n == first[i].n;
    if (!alike) throw Error("invalid_argument", "data parallel ranks must train the same set of tensors");
  }
  comms_ = dist::make_thread_communicators(size());
  for (int r = 0; r < size(); r++)
    ranks_.push_back(std::make_unique<ZeroRank>(models_[r]->trainable(), stage, r, size()));
  on_ranks([&](int r) { ranks_[r]->sync(*comms_[r]); });
}

void DataParallelGroup::on_ranks(const std::function<void(int)>& f) {
  std::vector<std::exception_ptr> errs(static_cast<size_t>(size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < size(); r++)
    threads.emplace_back([&, r] {
      try {
        f(r);
      } catch (...) {
        errs[r] = std::current_exception();
        dist::thread_group_of(*comms_[r])->abort();
      }
    });
  for (auto& t : threads) t.join();
  std::exception_ptr first;
  for (auto& e : errs) {
    if (!e) continue;
    if (!first) first = e;
    try {
      std::rethrow_exception(e);
    } catch (const Error& err) {
      if (err.code() != "comm_aborted") throw;
    } catch (...) {
      throw;
    }
  }
  if (first) {
    // an aborted group cannot run another collective: every later call would fail the same way
    std::rethrow_exception(first);
  }
}

void DataParallelGroup::check_current() const {
  for (int r = 0; r < size(); r++)
    if (!ranks_[r]->matches(models_[r]->trainable()))
      throw Error("zero_stale", "a rank's trainable set changed after the data parallel group was made");
}

StepResult DataParallelGroup::step(const OptimizerStep& o) {
  check_current();
  std::vector<StepResult> res(static_cast<size_t>(size()));
  on_ranks([&](int r) { res[r] = ranks_[r]->step(*comms_[r], o); });
  return res[0];
}

void DataParallelGroup::gather() {
  check_current();
  on_ranks([&](int r) { ranks_[r]->gather(*comms_[r]); });
}

void DataParallelGroup::release() {
  check_current();
  for (auto& r : ranks_) r->release();
}

DataParallelGroup::State DataParallelGroup::optimizer_state() {
  check_current();
  State st;
  std::vector<std::vector<std::vector<float>>> m(static_cast<size_t>(size())), v(static_cast<size_t>(size()));
  on_ranks([&](int r) { ranks_[r]->whole_moments(*comms_[r], m[r], v[r]); });
  st.step = ranks_[0]->steps();
  for (const Param& p : models_[0]->trainable().params()) st.names.push_back(p.name);
  st.exp_avg = std::move(m[0]);
  st.exp_avg_sq = std::move(v[0]);
  return st;
}

std::vector<TrainingMemory> DataParallelGroup::memory() const {
  std::vector<TrainingMemory> out;
  for (auto& r : ranks_) out.push_back(r->memory());
  return out;
}

}  // namespace hc
