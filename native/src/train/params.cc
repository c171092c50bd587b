#include "params.h"

#include <algorithm>
#include <cmath>

#include "../errors.h"

namespace hc {

void ParamSet::clear() {
  params_.clear();
  by_data_.clear();
  step_ = 0;
}

void ParamSet::add(std::string name, std::vector<int64_t> shape, float* data) {
  Param p;
  p.name = std::move(name);
  p.n = 1;
  for (int64_t d : shape) p.n *= d;
  p.shape = std::move(shape);
  p.data = data;
  p.grad.assign(static_cast<size_t>(p.n), 0.0f);
  p.exp_avg.assign(static_cast<size_t>(p.n), 0.0f);
  p.exp_avg_sq.assign(static_cast<size_t>(p.n), 0.0f);
  by_data_[data] = params_.size();
  params_.push_back(std::move(p));
}

float* ParamSet::grad_for(const void* data) const {
  auto it = by_data_.find(data);
  if (it == by_data_.end()) return nullptr;
  return const_cast<float*>(params_[it->second].grad.data());
}

Param* ParamSet::find(const std::string& name) {
  for (Param& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

void ParamSet::zero_grad() {
  for (Param& p : params_) std::fill(p.grad.begin(), p.grad.end(), 0.0f);
}

void ParamSet::release_moments() {
  for (Param& p : params_) std::vector<float>().swap(p.exp_avg), std::vector<float>().swap(p.exp_avg_sq);
}

void ParamSet::release_grads() {
  for (Param& p : params_) std::vector<float>().swap(p.grad);
}

void ParamSet::ensure_grads() {
  for (Param& p : params_)
    if (static_cast<int64_t>(p.grad.size()) != p.n) p.grad.assign(static_cast<size_t>(p.n), 0.0f);
}

void validate_step(const OptimizerStep& o) {
  if (!(o.lr >= 0) || !(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) || !(o.eps > 0) ||
      !(o.weight_decay >= 0) || !(o.max_grad_norm >= 0))
    throw Error("invalid_argument", "step: lr, weightDecay, maxGradNorm >= 0, betas in [0, 1), eps > 0");
}

float clip_coefficient(const OptimizerStep& o, double norm) {
  // torch.nn.utils.clip_grad_norm_: coefficient max/(norm+1e-6), only ever shrinking
  return o.max_grad_norm > 0 && norm > o.max_grad_norm ? static_cast<float>(o.max_grad_norm / (norm + 1e-6)) : 1.0f;
}

double sum_squares(const float* g, int64_t n) {
  double sq = 0;
  for (int64_t i = 0; i < n; i++) sq += static_cast<double>(g[i]) * g[i];
  return sq;
}

AdamW::AdamW(const OptimizerStep& o, int64_t step) {
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(step));
  decay = static_cast<float>(1 - o.lr * o.weight_decay);
  b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2);
  step_size = static_cast<float>(o.lr / bc1), bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  eps = static_cast<float>(o.eps);
}

void AdamW::update(float* data, float* grad, float* m, float* v, int64_t n, float clip) const {
  for (int64_t i = 0; i < n; i++) {
    const float g = grad[i] * clip;
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    data[i] = data[i] * decay - step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
    grad[i] = 0.0f;
  }
}

StepResult ParamSet::step(const OptimizerStep& o, ThreadPool& pool) {
  validate_step(o);
  ensure_grads();
  double sq = 0;
  for (const Param& p : params_) sq += sum_squares(p.grad.data(), p.n);
  const double norm = std::sqrt(sq);
  const float clip = clip_coefficient(o, norm);
  step_++;
  const AdamW adam(o, step_);
  for (Param& p : params_) {
    if (static_cast<int64_t>(p.exp_avg.size()) != p.n) {
      p.exp_avg.assign(static_cast<size_t>(p.n), 0.0f);
      p.exp_avg_sq.assign(static_cast<size_t>(p.n), 0.0f);
    }
    pool.parallel_for(p.n, 4096, [&](int64_t b, int64_t e) {
      adam.update(p.data + b, p.grad.data() + b, p.exp_avg.data() + b, p.exp_avg_sq.data() + b, e - b, clip);
    });
  }
  return StepResult{norm, step_};
}

}  // namespace hc
