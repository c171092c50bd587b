#include "resident_params.h"

#include <cmath>

namespace hc {

void ResidentParams::attach(Exec& ex, ParamSet& set) {
  TrainOps& ops = ex.train();
  items_.clear();
  index_.clear();
  items_.reserve(set.params().size());
  for (Param& p : set.params()) {
    Item it{p.data, ex.pin(p.data, p.n), p.n, {}, {}, {}};
    it.grad.fit(ops, p.n), it.m.fit(ops, p.n), it.v.fit(ops, p.n);  // zero-filled
    upload_moments(ops, it, p);
    index_[p.data] = items_.size();
    items_.push_back(std::move(it));
  }
  set.release_grads();
  set.release_moments();
}

void ResidentParams::sync(Exec& ex, ParamSet& set) {
  TrainOps& ops = ex.train();
  for (Param& p : set.params()) {
    auto f = index_.find(p.data);
    if (f == index_.end()) continue;
    Item& it = items_[f->second];
    ex.pull(p.data, p.n);
    if (it.m.empty()) continue;  // a data-parallel rank's ZeRO optimizer holds them
    p.exp_avg.resize(static_cast<size_t>(p.n)), p.exp_avg_sq.resize(static_cast<size_t>(p.n));
    ops.download(p.exp_avg.data(), it.m.data(), p.n * 4);
    ops.download(p.exp_avg_sq.data(), it.v.data(), p.n * 4);
  }
}

void ResidentParams::detach(Exec& ex, ParamSet& set) {
  if (!active()) return;
  // the data only: the set's optimizer state is dropped with it (setTrainable's contract)
  for (Item& it : items_) ex.pull(it.host, it.n), ex.unpin(it.host);
  items_.clear();
  index_.clear();
  set.ensure_grads();
}

void ResidentParams::upload_moments(TrainOps& ops, Item& it, const Param& p) {
  if (static_cast<int64_t>(p.exp_avg.size()) != p.n) return;  // none on the host: zeros stay
  ops.upload(it.m.data(), p.exp_avg.data(), p.n * 4);
  ops.upload(it.v.data(), p.exp_avg_sq.data(), p.n * 4);
}

void ResidentParams::push_moments(Exec& ex, ParamSet& set) {
  for (Param& p : set.params())
    if (auto f = index_.find(p.data); f != index_.end()) upload_moments(ex.train(), items_[f->second], p);
  set.release_moments();
}

float* ResidentParams::grad_for(const void* host) const {
  auto f = index_.find(host);
  return f == index_.end() ? nullptr : const_cast<float*>(items_[f->second].grad.data());
}

float* ResidentParams::data_for(const void* host) const {
  auto f = index_.find(host);
  return f == index_.end() ? nullptr : items_[f->second].data;
}

void ResidentParams::release_moments() {
  for (Item& it : items_) it.m = Buf{}, it.v = Buf{};
}

void ResidentParams::release_grads() {
  for (Item& it : items_) it.grad = Buf{};
}

void ResidentParams::ensure_grads(Exec& ex) {
  for (Item& it : items_)
    if (it.grad.empty()) it.grad.fit(ex.train(), it.n);  // zero-filled
}

void ResidentParams::zero_grad(Exec& ex) {
  for (Item& it : items_)
    if (!it.grad.empty()) ex.train().zero(it.grad.data(), it.n);
}

StepResult ResidentParams::step(Exec& ex, ParamSet& set, const OptimizerStep& o) {
  validate_step(o);
  TrainOps& ops = ex.train();
  ensure_grads(ex);
  for (Item& it : items_)
    if (it.m.empty()) it.m.fit(ops, it.n), it.v.fit(ops, it.n);  // released by a former ZeRO rank: afresh
  std::vector<std::pair<const float*, int64_t>> grads;
  grads.reserve(items_.size());
  for (const Item& it : items_) grads.emplace_back(it.grad.data(), it.n);
  const double norm = std::sqrt(ops.sum_squares(grads));
  const float clip = clip_coefficient(o, norm);
  set.set_steps(set.steps() + 1);
  const AdamW adam(o, set.steps());
  for (Item& it : items_) ops.adamw(it.data, it.grad.data(), it.m.data(), it.v.data(), it.n, adam, clip);
  return StepResult{norm, set.steps()};
}

}  // namespace hc
