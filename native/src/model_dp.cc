#include "model_dp.h"

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
  ranks_on_ = std::make_unique<dist::RankLauncher>(size());
  for (int r = 0; r < size(); r++)
    ranks_.push_back(std::make_unique<ZeroRank>(models_[r]->trainable(), stage, r, size()));
  ranks_on_->run([&](int r) { ranks_[r]->sync(ranks_on_->comm(r)); });
}

void DataParallelGroup::check_current() const {
  for (int r = 0; r < size(); r++)
    if (!ranks_[r]->matches(models_[r]->trainable()))
      throw Error("zero_stale", "a rank's trainable set changed after the data parallel group was made");
}

StepResult DataParallelGroup::step(const OptimizerStep& o) {
  check_current();
  std::vector<StepResult> res(static_cast<size_t>(size()));
  try {
    ranks_on_->run([&](int r) { res[r] = ranks_[r]->step(ranks_on_->comm(r), o); });
  } catch (...) {
    // The launcher has made its communicators afresh; what is left to undo is the step's
    // gradients, some of which may already be summed over ranks. They are dropped on every
    // rank, so the batch is redone from its forward. Parameters, moments and the step count
    // change only after every reduction, so a failure during them leaves those as they were.
    for (auto& m : models_) m->trainable().zero_grad();
    throw;
  }
  return res[0];
}

void DataParallelGroup::gather() {
  check_current();
  if (stage_ < 3 || gathered()) return;  // every forward asks; only stage 3 between steps has work
  ranks_on_->run([&](int r) { ranks_[r]->gather(ranks_on_->comm(r)); });
}

void DataParallelGroup::release() {
  check_current();
  for (auto& r : ranks_) r->release();
}

DataParallelGroup::State DataParallelGroup::optimizer_state() {
  check_current();
  State st;
  std::vector<std::vector<std::vector<float>>> m(static_cast<size_t>(size())), v(static_cast<size_t>(size()));
  ranks_on_->run([&](int r) { ranks_[r]->whole_moments(ranks_on_->comm(r), m[r], v[r]); });
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
