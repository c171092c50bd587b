// Data-parallel ranks of one model: N Model instances over the same checkpoint files (the
// frozen base is mapped read-only, so the OS keeps one copy of its pages for all of them),
// each with its own tape and activations for its slice of the global batch, and a ZeroRank
// per model. Collective calls run every rank on its own thread of the group's RankLauncher
// (dist/comm_threads.h), each with its Communicator: threads over host arrays for CPU
// models; for models on CUDA devices (rank r on device r) NCCL over their device buffers,
// the ZeRO rank's shards and moments then living on the device too (train/zero.h).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/comm_threads.h"
#include "model.h"
#include "train/zero.h"

namespace hc {

class DataParallelGroup {
 public:
  // The models' trainable sets must already be chosen (setTrainable) and alike.
  DataParallelGroup(std::vector<std::shared_ptr<Model>> models, int stage);
  int size() const { return static_cast<int>(models_.size()); }
  int stage() const { return stage_; }

  StepResult step(const OptimizerStep& o);
  void gather();
  void release();
  bool gathered() const { return ranks_[0]->gathered(); }
  std::vector<TrainingMemory> memory() const;
  // The whole optimizer state, as one model's optimizerState() holds it.
  struct State {
    int64_t step = 0;
    std::vector<std::string> names;
    std::vector<std::vector<float>> exp_avg, exp_avg_sq;
  };
  State optimizer_state();

 private:
  void check_current() const;

  std::vector<std::shared_ptr<Model>> models_;
  const int stage_;
  std::unique_ptr<dist::RankLauncher> ranks_on_;  // f(rank) on every rank's thread
  std::vector<std::unique_ptr<ZeroHome>> homes_;
  std::vector<std::unique_ptr<ZeroRank>> ranks_;
};

}  // namespace hc
