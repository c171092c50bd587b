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

// torch.optim.AdamW's scalars for step number `step` (1-based), shared by ParamSet::step and
// the ZeRO optimizer so that a sharded update is the same arithmetic as a whole one.
struct AdamW {
  AdamW(const OptimizerStep& o, int64_t step);
  // data, m, v updated from grad·clip over [0, n); grad is zeroed
  void update(float* data, float* grad, float* m, float* v, int64_t n, float clip) const;
  float decay, b1, b2, step_size, bc2_sqrt, eps;
};
// Throws "invalid_argument" unless lr, weightDecay, maxGradNorm >= 0, betas in [0, 1), eps > 0.
void validate_step(const OptimizerStep& o);
// torch.nn.utils.clip_grad_norm_'s coefficient for a global norm: only ever shrinking.
float clip_coefficient(const OptimizerStep& o, double norm);
// Σ g² in double: the global gradient norm's accumulation, whole or per shard.
double sum_squares(const float* g, int64_t n);

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
  // Data-parallel ranks keep the moments (and between steps, with ZeRO-2/3, the gradients) in
  // their ZeRO optimizer: these free the per-rank copies; ensure_grads (every backward) and
  // step bring them back when needed.
  void release_moments();
  void release_grads();
  void ensure_grads();
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
