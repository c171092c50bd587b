// The trainable set on a device: each tensor's fp32 data (the Exec's pinned resident
// copy, updated in place), its gradient and its AdamW moments in device memory, and the
// optimizer step (global-norm clipping, AdamW) as device kernels. ParamSet keeps naming
// the tensors and holds the host arrays, which go stale while attached: pull() brings a
// tensor (and with sync(), the moments) back, explicitly. On the CPU nothing attaches:
// ParamSet's host vectors are the state.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "../exec.h"
#include "params.h"

namespace hc {

class ResidentParams {
 public:
  bool active() const { return !items_.empty(); }
  // Pins every tensor's data on ex (uploaded unless already resident), device gradients
  // and moments (from the host ones when present); frees ParamSet's host grads/moments.
  void attach(Exec& ex, ParamSet& set);
  // Data back into the host arrays (the resident copies, now equal, stay), unpinned, freed.
  void detach(Exec& ex, ParamSet& set);
  // Data and moments copied into ParamSet's host arrays; stays attached.
  void sync(Exec& ex, ParamSet& set);
  // After the host moments were replaced (loadOptimizerState).
  void push_moments(Exec& ex, ParamSet& set);
  // true when `host` is an attached tensor's host array (its device copy is the current one)
  bool attached(const void* host) const { return index_.count(host) != 0; }
  // The device gradient of the tensor whose host data is `host`; null when frozen.
  float* grad_for(const void* host) const;
  // Its pinned device data (the copy the forward reads); null when not attached.
  float* data_for(const void* host) const;
  // A data-parallel rank's ZeRO optimizer (train/zero.h) keeps the moments, and between
  // ZeRO-2/3 steps the gradients, itself: these free the device copies; ensure_grads
  // (every backward) and step bring them back, zero-filled.
  void release_moments();
  void release_grads();
  void ensure_grads(Exec& ex);
  bool holds_grads() const { return !items_.empty() && !items_[0].grad.empty(); }
  void zero_grad(Exec& ex);
  StepResult step(Exec& ex, ParamSet& set, const OptimizerStep& o);

 private:
  struct Item {
    float* host;
    float* data;  // the pinned device copy
    int64_t n;
    Buf grad, m, v;
  };
  static void upload_moments(TrainOps& ops, Item& it, const Param& p);
  std::vector<Item> items_;
  std::unordered_map<const void*, size_t> index_;
};

}  // namespace hc
