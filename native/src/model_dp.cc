#include "model_dp.h"

#include <string>
#include <utility>

#include "dist/comm_threads.h"
#include "dist/nccl_devices.h"
#include "errors.h"

namespace hc {

namespace {

// A Model's trainable set as its ZeRO rank reaches it: ParamSet's host arrays on the CPU,
// the resident copies of train/resident_params.h on a device.
class ModelHome final : public ZeroHome {
 public:
  explicit ModelHome(Model& m) : m_(m), set_(m.trainable()), device_(m.resident_params().active()) {}
  ParamSet& set() override { return set_; }
  TrainOps& ops() override {
    m_.exec().bind();
    return m_.exec().train();
  }
  float* data(size_t i) override {
    float* host = set_.params()[i].data;
    return device_ ? m_.resident_params().data_for(host) : host;
  }
  float* grad(size_t i) override {
    Param& p = set_.params()[i];
    return device_ ? m_.resident_params().grad_for(p.data) : p.grad.data();
  }
  void ensure_grads() override { device_ ? m_.resident_params().ensure_grads(m_.exec()) : set_.ensure_grads(); }
  void release_grads() override { device_ ? m_.resident_params().release_grads() : set_.release_grads(); }
  bool holds_grads() const override {
    if (device_) return m_.resident_params().holds_grads();
    return !set_.params().empty() && static_cast<int64_t>(set_.params()[0].grad.size()) == set_.params()[0].n;
  }
  void release_moments() override {
    set_.release_moments();
    if (device_) m_.resident_params().release_moments();
  }

 private:
  Model& m_;
  ParamSet& set_;
  const bool device_;
};

// Thread communicators for CPU models; NCCL for models on CUDA devices 0..N-1, rank r on r.
dist::CommMaker comms_for(const std::vector<std::shared_ptr<Model>>& models) {
  const bool cuda = std::string(models[0]->device()) != "cpu";
  for (size_t r = 0; r < models.size(); r++) {
    const Model& m = *models[r];
    if ((std::string(m.device()) != "cpu") != cuda)
      throw Error("invalid_argument", "data parallel ranks must all be on the CPU or all on CUDA devices");
    if (m.devices() > 1)
      throw Error("unsupported", "data parallel ranks of a tensor-parallel model are not built: use one of them");
    if (cuda && m.device_index() != static_cast<int>(r))
      throw Error("invalid_argument", "data parallel rank " + std::to_string(r) + " must be on CUDA device " +
                                          std::to_string(r) + ", not " + std::to_string(m.device_index()));
  }
  if (!cuda) return nullptr;
  for (auto& m : models)
    if (!m->resident_params().active())
      throw Error("nothing_trainable", "data parallel training needs a trainable set (setTrainable first)");
  return dist::nccl_device_comms(static_cast<int>(models.size()));
}

}  // namespace

DataParallelGroup::DataParallelGroup(std::vector<std::shared_ptr<Model>> models, int stage)
    : models_(std::move(models)), stage_(stage) {
  if (models_.empty()) throw Error("invalid_argument", "data parallel training needs at least one model");
  const auto& first = std::as_const(*models_[0]).trainable().params();
  for (auto& m : models_) {
    const auto& ps = std::as_const(*m).trainable().params();
    bool alike = ps.size() == first.size();
    for (size_t i = 0; alike && i < ps.size(); i++) alike = ps[i].name == first[i].name && ps[i].n == first[i].n;
    if (!alike) throw Error("invalid_argument", "data parallel ranks must train the same set of tensors");
  }
  ranks_on_ = std::make_unique<dist::RankLauncher>(size(), comms_for(models_));
  // rank 0's moments (a resumed run's, pushed to its device) into its host arrays, to broadcast
  models_[0]->sync_to_host();
  for (int r = 0; r < size(); r++) {
    homes_.push_back(std::make_unique<ModelHome>(*models_[r]));
    ranks_.push_back(std::make_unique<ZeroRank>(*homes_[r], stage, r, size()));
  }
  ranks_on_->run([&](int r) { ranks_[r]->sync(ranks_on_->comm(r)); });
}

void DataParallelGroup::check_current() const {
  for (int r = 0; r < size(); r++)
    if (!ranks_[r]->matches(models_[r]->trainable()))  // on the CPU: tells its Exec the weights change
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
    for (auto& m : models_) m->zero_grad();
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
  for (const Param& p : std::as_const(*models_[0]).trainable().params()) st.names.push_back(p.name);
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
