// ZeRO (Rajbhandari et al. 2020, as in DeepSpeed) for one data-parallel rank's trainable set:
//   stage 0  plain DP: gradients all-reduced, every rank keeps whole moments and params;
//   stage 1  AdamW moments partitioned: each rank updates only its shard of every tensor,
//            then the params are all-gathered;
//   stage 2  gradients too: reduce-scattered, the whole-gradient buffers freed between steps;
//   stage 3  params too: each rank keeps an fp32 master of its shard only; the whole tensors
//            are all-gathered before use (gather) and released after the step.
// Every tensor is split by dist::shard_of, so a rank holds ceil(n/N) (or fewer) elements of it.
// One code path on every device: the rank's buffers (shards, moments, master) live in its
// model's Exec memory and every buffer op goes through its TrainOps (exec_train.h), so on
// the CPU they are host arrays and thread collectives, on a GPU device buffers and NCCL.
#pragma once
#include <cstdint>
#include <cstddef>
#include <vector>

#include "dist/communicator.h"
#include "exec_train.h"
#include "train/params.h"

namespace hc {

// Bytes one rank holds for training between steps (the model's own activations excluded).
struct TrainingMemory {
  int64_t params = 0, grads = 0, optimizer = 0;
};

// Where a rank's trainable set trains, as its ZeRO optimizer reaches it (model_dp.cc
// fills it from a Model): the host arrays of the ParamSet on the CPU, the Exec's resident
// copies (train/resident_params.h) on a device.
class ZeroHome {
 public:
  virtual ~ZeroHome() = default;
  // names, sizes and the step count; the host moments rank 0 starts the group from
  virtual ParamSet& set() = 0;
  // the model's training ops and memory, its device made current on the calling thread
  virtual TrainOps& ops() = 0;
  // tensor i's data and (after ensure_grads) gradient, in ops()'s memory
  virtual float* data(size_t i) = 0;
  virtual float* grad(size_t i) = 0;
  virtual void ensure_grads() = 0;
  virtual void release_grads() = 0;
  virtual bool holds_grads() const = 0;
  virtual void release_moments() = 0;
};

// A failure point for tests of a group that loses a rank mid-step (ZeroRank::step, and the
// tensor-parallel ranks' TensorParallel::step): with HYBRIDCHAT_TEST_FAIL_STEP_RANK=r, rank r
// throws before reducing gradient tensor `tensors / 2` (the other ranks have summed half the
// gradients and wait in the next collective). SIZE_MAX: none.
size_t injected_step_failure(int rank, size_t tensors);

class ZeroRank {
 public:
  // Takes over the set's optimizer state. Call sync() on every rank before the first step.
  ZeroRank(ZeroHome& home, int stage, int rank, int size);

  // Makes every rank start from rank 0's parameters, AdamW moments and step count (a resumed
  // run loads them into rank 0's model only), keeping its part; frees the set's own moments.
  void sync(dist::Communicator& c);
  // Whole moments of every tensor (all-gathered from the shards), for a checkpoint.
  void whole_moments(dist::Communicator& c, std::vector<std::vector<float>>& m, std::vector<std::vector<float>>& v);
  // After every rank's backward over its part of the batch: sum the gradients, clip by their
  // global norm, AdamW on this rank's part, params whole again (0-2) or released (3).
  StepResult step(dist::Communicator& c, const OptimizerStep& o);
  // Stage 3: whole params before a forward or a read; release() drops them again. No-ops below 3.
  void gather(dist::Communicator& c);
  void release();
  bool gathered() const { return gathered_; }

  TrainingMemory memory() const;
  int64_t steps() const { return step_; }
  // The model's trainable set is still the one this rank was built on.
  bool matches(const ParamSet& set) const;

 private:
  struct Part {
    Param* p;
    dist::Shard s;
    Buf master;  // stage 3: this rank's shard of the params
    Buf grad;    // stages 2-3: this rank's shard of the summed gradient
    Buf m, v;    // AdamW moments: whole at stage 0, the shard above
  };
  // a double through the fp32 all-reduce, ~48 bits kept (a (hi, lo) pair summed)
  double all_reduce_double(dist::Communicator& c, double x);

  ZeroHome& home_;
  ParamSet& set_;
  const int stage_, rank_, size_;
  std::vector<Part> parts_;
  Buf scalars_;  // a few floats for the collectives of scalars (device memory on a GPU)
  int64_t step_ = 0;
  bool gathered_ = true;
  bool host_;  // the set trains in host memory (the CPU)
};

}  // namespace hc
