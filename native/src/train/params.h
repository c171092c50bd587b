// The trainable set as the optimizer sees it: a flat list of fp32 tensors, each with
// its gradient and AdamW moments. The data itself is owned elsewhere (the model's
// materialised master weights, or an adapter's matrices); a parameter only points at
// it, and the backward finds a tensor's gradient by that data pointer (frozen tensors
// have none, so their weight-gradient work is skipped).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "../threadpool.h"

namespace hc {

struct Param {
  std::string name;
  std::vector<int64_t> shape;
  float* data = nullptr;
  int64_t n = 0;
  std::vector<float> grad, exp_avg, exp_avg_sq;
};

struct OptimizerStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, max_grad_norm = 0;
};

struct StepResult {
  double grad_norm = 0;
  int64_t step = 0;
};

class ParamSet {
 public:
  void clear();
  void add(std::string name, std::vector<int64_t> shape, float* data);
  // The gradient buffer of the tensor whose fp32 data starts at `data`; null when frozen.
  float* grad_for(const void* data) const;
  bool empty() const { return params_.empty(); }
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param* find(const std::string& name);

  void zero_grad();
  // Global L2 norm (double accumulation), clipping, torch.optim.AdamW, zeroed grads.
  StepResult step(const OptimizerStep& o, ThreadPool& pool);
  int64_t steps() const { return step_; }
  void set_steps(int64_t s) { step_ = s; }

 private:
  std::vector<Param> params_;
  std::unordered_map<const void*, size_t> by_data_;
  int64_t step_ = 0;
};

}  // namespace hc
