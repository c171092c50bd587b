// The training forward and backward (DESIGN.md's boundary): whole sequences packed at
// positions 0..n-1, log-probs of given targets out, dL/dlogp in. Same math as
// Model::forward, with attention per sequence (no KV cache), the batch adapter's LoRA
// (with dropout when training) on its targeted linears, and a tape for the backward.
// Every op runs over the model's Exec (exec.h, exec_train.h): the CPU kernels on host
// arrays, or the device's on resident weights, a device tape and device gradients.
#include <algorithm>
#include <cmath>

#include "errors.h"
#include "model.h"

namespace hc {


// Rows of logits computed at once, so the head never holds [T,V] for a long batch.
static int64_t head_rows(int64_t T, int64_t V) { return std::max<int64_t>(1, std::min<int64_t>(T, (1 << 22) / V)); }

void Model::head_logits(float* logits, const float* xf, int64_t r0, int64_t R) {
  linear(logits, xf + r0 * spec_.C, lm_head_, R);
}

float* Model::grad_for(const void* host) const {
  return resident_params_.active() ? resident_params_.grad_for(host) : trainable_.grad_for(host);
}

// out = in·Wᵀ + b, plus the tape adapter's LoRA: out += s·(dropout(in)·Aᵀ)·Bᵀ.
void Model::train_linear(float* out, const float* in, int64_t layer, int t, int64_t T, LayerTape& tp) {
  const Linear& w = layers_[layer].at(t);
  linear(out, in, w, T);
  const Adapter* a = tape_.adapter;
  if (!a || !a->at(layer, t).on()) return;
  TrainOps& ops = exec_->train();
  const LoraMats& m = a->at(layer, t);
  const int64_t r = a->spec.lora.rank;
  const float* xd = in;
  Buf& dropped = scratch_.dropped;
  if (tape_.dropout) {
    tp.mask[t].fit(ops, T * m.in);
    ops.dropout_mask(tp.mask[t].data(), T, m.in, m.in, 0, a->spec.lora.dropout, a->spec.lora.seed, tape_.counter, layer, t);
    dropped.fit(ops, T * m.in);
    ops.mul(dropped.data(), in, tp.mask[t].data(), T * m.in, false);
    xd = dropped.data();
  }
  tp.u[t].fit(ops, T * r);
  exec_->sgemm(false, true, T, r, m.in, 1.0f, xd, m.in, resident(m.A), m.in, 0.0f, tp.u[t].data(), r);
  exec_->sgemm(false, true, T, m.out, r, a->scale, tp.u[t].data(), r, resident(m.B), r, 1.0f, out, m.out);
}

// dx = beta·dx + dy·W (+ the LoRA path), and the trainable weights' gradients.
void Model::train_linear_backward(float* dx, float beta, const float* dy, const float* x, int64_t layer, int t,
                                  int64_t T, const LayerTape& tp) {
  const Linear& w = layers_[layer].at(t);
  TrainOps& ops = exec_->train();
  ops.linear_backward(dx, beta, grad_for(w.w), w.bias.empty() ? nullptr : grad_for(w.bias.data()), dy, x,
                      resident(w), w.dtype, T, w.out, w.in, w.in);
  const Adapter* a = tape_.adapter;
  if (!a || !a->at(layer, t).on()) return;
  const LoraMats& m = a->at(layer, t);
  const int64_t r = a->spec.lora.rank;
  const float s = a->scale;
  const float *A = resident(m.A), *B = resident(m.B);
  Buf& du = scratch_.du;
  du.fit(ops, T * r);
  exec_->sgemm(false, false, T, r, m.out, s, dy, m.out, B, r, 0.0f, du.data(), r);
  if (float* dB = grad_for(m.B.data())) exec_->sgemm(true, false, m.out, r, T, s, dy, m.out, tp.u[t].data(), r, 1.0f, dB, r);
  const bool masked = tape_.dropout;
  if (float* dA = grad_for(m.A.data())) {
    const float* xd = x;
    Buf& dropped = scratch_.dropped;
    if (masked) {
      dropped.fit(ops, T * m.in);
      ops.mul(dropped.data(), x, tp.mask[t].data(), T * m.in, false);
      xd = dropped.data();
    }
    exec_->sgemm(true, false, r, m.in, T, 1.0f, du.data(), r, xd, m.in, 1.0f, dA, m.in);
  }
  if (!masked) {
    exec_->sgemm(false, false, T, m.in, r, 1.0f, du.data(), r, A, m.in, 1.0f, dx, m.in);
    return;
  }
  Buf& dxd = scratch_.dxd;
  dxd.fit(ops, T * m.in);
  exec_->sgemm(false, false, T, m.in, r, 1.0f, du.data(), r, A, m.in, 0.0f, dxd.data(), m.in);
  ops.mul(dx, dxd.data(), tp.mask[t].data(), T * m.in, true);
}

void Model::layer_forward(int64_t l, const float* x, float* x_out, LayerTape& tp) {
  if (tp_) return tp_->train_layer_forward(*this, l, x, x_out, tp);
  const ModelSpec& s = spec_;
  const LayerWeights& w = layers_[l];
  const int64_t T = static_cast<int64_t>(tape_.tokens.size());
  const int64_t C = s.C, I = s.I, NH = s.NH, NKV = s.NKV, HD = s.HD, QD = NH * HD, KD = NKV * HD;
  Exec& ex = *exec_;
  TrainOps& ops = ex.train();
  tp.xn1.fit(ops, T * C), tp.q.fit(ops, T * QD), tp.k.fit(ops, T * KD), tp.v.fit(ops, T * KD);
  tp.att.fit(ops, T * QD), tp.lse.fit(ops, T * NH), tp.x_mid.fit(ops, T * C), tp.xn2.fit(ops, T * C);
  tp.gate.fit(ops, T * I), tp.up.fit(ops, T * I), tp.h.fit(ops, T * I);
  ex.rmsnorm(tp.xn1.data(), x, resident(w.attn_norm), T, C, s.eps);
  train_linear(tp.q.data(), tp.xn1.data(), l, kQ, T, tp);
  train_linear(tp.k.data(), tp.xn1.data(), l, kK, T, tp);
  train_linear(tp.v.data(), tp.xn1.data(), l, kV, T, tp);
  if (s.qk_norm) {
    tp.q_raw.fit(ops, T * QD), tp.k_raw.fit(ops, T * KD);
    ops.copy(tp.q_raw.data(), tp.q.data(), T * QD);
    ops.copy(tp.k_raw.data(), tp.k.data(), T * KD);
    ex.rmsnorm(tp.q.data(), tp.q.data(), resident(w.q_norm), T * NH, HD, s.eps);
    ex.rmsnorm(tp.k.data(), tp.k.data(), resident(w.k_norm), T * NKV, HD, s.eps);
  }
  ex.rope(tp.q.data(), tape_.cos.data(), tape_.sin.data(), T, NH, HD);
  ex.rope(tp.k.data(), tape_.cos.data(), tape_.sin.data(), T, NKV, HD);
  for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(tape_.counts.size()); t0 += tape_.counts[sq++]) {
    const int64_t n = tape_.counts[sq];
    ops.attention_train_forward(tp.att.data() + t0 * QD, tp.lse.data() + t0 * NH, tp.q.data() + t0 * QD,
                                tp.k.data() + t0 * KD, tp.v.data() + t0 * KD, n, NH, NKV, HD, s.window(l));
  }
  train_linear(tp.x_mid.data(), tp.att.data(), l, kO, T, tp);
  ex.residual(tp.x_mid.data(), tp.x_mid.data(), x, T * C);
  ex.rmsnorm(tp.xn2.data(), tp.x_mid.data(), resident(w.mlp_norm), T, C, s.eps);
  train_linear(tp.gate.data(), tp.xn2.data(), l, kGate, T, tp);
  train_linear(tp.up.data(), tp.xn2.data(), l, kUp, T, tp);
  ex.swiglu(tp.h.data(), tp.gate.data(), tp.up.data(), T * I);
  train_linear(x_out, tp.h.data(), l, kDown, T, tp);
  ex.residual(x_out, x_out, tp.x_mid.data(), T * C);
}

void Model::train_forward(const TrainBatch& b, TrainResult& res) {
  const ModelSpec& s = spec_;
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  if (T == 0 || b.counts.empty()) throw Error("invalid_batch", "trainForward: empty batch");
  if (static_cast<int64_t>(b.targets.size()) != T)
    throw Error("invalid_batch", "trainForward: targets must hold one entry per token");
  int64_t total = 0;
  for (int32_t c : b.counts) {
    if (c < 1) throw Error("invalid_batch", "trainForward: every count must be >= 1");
    if (c > s.max_positions)
      throw Error("context_full", "trainForward: a sequence of " + std::to_string(c) + " tokens exceeds the model's " +
                                      std::to_string(s.max_positions) + " positions");
    total += c;
  }
  if (total != T)
    throw Error("invalid_batch", "trainForward: counts sum to " + std::to_string(total) + " but " +
                                     std::to_string(T) + " tokens were given");
  for (int64_t i = 0; i < T; i++) {
    if (b.tokens[i] < 0 || b.tokens[i] >= s.V)
      throw Error("invalid_batch", "trainForward: token id " + std::to_string(b.tokens[i]) + " outside the vocabulary");
    if (b.targets[i] >= s.V || b.targets[i] < -1)
      throw Error("invalid_batch", "trainForward: target " + std::to_string(b.targets[i]) + " outside the vocabulary");
  }
  Adapter* a = b.adapter.empty() ? nullptr : &adapter(b.adapter);
  if (b.values && (!a || a->value_head.empty()))
    throw Error("no_value_head", "trainForward: values asked for, but the batch's adapter has no value head");
  if (any_merged())
    throw Error("adapter_merged", "trainForward: adapter '" + merged_ + "' is merged; unmerge it before training");

  const int64_t C = s.C, L = s.L, HD = s.HD;
  // A no-grad forward (e.g. reference log-probs) leaves a pending grad forward's tape alone.
  struct Keep {
    Tape& tape;
    bool on;
    Tape& saved;
    ~Keep() {
      if (on) std::swap(tape, saved);
    }
  } keep{tape_, !b.grad, nograd_tape_};
  if (keep.on) std::swap(tape_, keep.saved);
  tape_.valid = false;
  tape_.checkpoint = b.checkpoint;
  tape_.values = b.values;
  tape_.tokens = b.tokens;
  tape_.targets = b.targets;
  tape_.counts = b.counts;
  tape_.adapter = a;
  tape_.dropout = b.grad && a && a->spec.has_lora && a->spec.lora.dropout > 0;
  if (tape_.dropout) tape_.counter = a->forwards++;
  Exec& ex = *exec_;
  ex.bind();  // this call's worker thread works on the model's device
  TrainOps& ops = ex.train();
  tape_.tokens_d.fit(ops, T), tape_.targets_d.fit(ops, T);
  ops.upload(tape_.tokens_d.data(), b.tokens.data(), T * 4);
  ops.upload(tape_.targets_d.data(), b.targets.data(), T * 4);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t sq = 0, t = 0; sq < static_cast<int64_t>(b.counts.size()); sq++)
    for (int32_t i = 0; i < b.counts[sq]; i++) pos[t++] = i;
  Arr<int32_t>& pos_d = scratch_.pos;
  pos_d.fit(ops, T);
  ops.upload(pos_d.data(), pos.data(), T * 4);
  tape_.cos.fit(ops, T * HD / 2), tape_.sin.fit(ops, T * HD / 2);
  ex.rope_tables(tape_.cos.data(), tape_.sin.data(), pos_d.data(), resident(s.inv_freq), T, HD / 2, s.rope_scaling);
  if (tp_) tp_->train_begin(*this, T);  // each rank's copy of the tables

  // inputs[l] is layer l's input; without grad only two buffers alternate
  tape_.inputs.resize(static_cast<size_t>(b.grad ? L : 2));
  tape_.layers.resize(b.grad && !b.checkpoint ? static_cast<size_t>(L) : 1);
  for (auto& v : tape_.inputs) v.fit(ops, T * C);
  tape_.x_final.fit(ops, T * C);
  auto input = [&](int64_t l) { return tape_.inputs[static_cast<size_t>(b.grad ? l : l % 2)].data(); };
  ex.embedding(input(0), tape_.tokens_d.data(), resident_embed(), embed_dtype_, T, C);
  for (int64_t l = 0; l < L; l++) {
    float* out = l + 1 < L ? input(l + 1) : tape_.x_final.data();
    layer_forward(l, input(l), out, tape_.layers[tape_.layers.size() == 1 ? 0 : static_cast<size_t>(l)]);
  }

  tape_.xf.fit(ops, T * C);
  ex.rmsnorm(tape_.xf.data(), tape_.x_final.data(), resident(final_norm_), T, C, s.eps);
  const int64_t rows = head_rows(T, s.V);
  Buf &logits = scratch_.logits, &logp = scratch_.logp;
  logits.fit(ops, rows * s.V), logp.fit(ops, T);
  for (int64_t r0 = 0; r0 < T; r0 += rows) {
    const int64_t R = std::min(rows, T - r0);
    head_logits(logits.data(), tape_.xf.data(), r0, R);
    ops.logprob_forward(logp.data() + r0, logits.data(), tape_.targets_d.data() + r0, R, s.V);
  }
  res.logp.resize(static_cast<size_t>(T));
  ops.download(res.logp.data(), logp.data(), T * 4);
  res.values.clear();
  if (b.values) {
    Buf& values = scratch_.values;
    values.fit(ops, T);
    ops.value_head(values.data(), tape_.xf.data(), resident(a->value_head), T, C);
    res.values.resize(static_cast<size_t>(T));
    ops.download(res.values.data(), values.data(), T * 4);
  }
  tape_.valid = b.grad;
}

void Model::layer_backward(int64_t l, float* dy, const float* x, const LayerTape& tp) {
  if (tp_) return tp_->train_layer_backward(*this, l, dy, x, tp);
  const ModelSpec& s = spec_;
  const LayerWeights& w = layers_[l];
  const int64_t T = static_cast<int64_t>(tape_.tokens.size());
  const int64_t C = s.C, I = s.I, NH = s.NH, NKV = s.NKV, HD = s.HD, QD = NH * HD, KD = NKV * HD;
  Exec& ex = *exec_;
  TrainOps& ops = ex.train();
  Buf &dh = scratch_.dh, &dup = scratch_.dup, &dxn = scratch_.dxn;
  dh.fit(ops, T * I), dup.fit(ops, T * I), dxn.fit(ops, T * C);
  // MLP block: x_out = x_mid + down(swiglu(gate(xn2), up(xn2)))
  train_linear_backward(dh.data(), 0.0f, dy, tp.h.data(), l, kDown, T, tp);
  ops.swiglu_backward(dh.data(), dup.data(), dh.data(), tp.gate.data(), tp.up.data(), T * I);
  train_linear_backward(dxn.data(), 0.0f, dh.data(), tp.xn2.data(), l, kGate, T, tp);
  train_linear_backward(dxn.data(), 1.0f, dup.data(), tp.xn2.data(), l, kUp, T, tp);
  ops.rmsnorm_backward(dxn.data(), grad_for(w.mlp_norm.data()), dxn.data(), tp.x_mid.data(), resident(w.mlp_norm),
                       T, C, s.eps);
  ex.residual(dy, dy, dxn.data(), T * C);  // dy is now dL/dx_mid
  // attention block: x_mid = x + o(attention(rope(norm(q)), rope(norm(k)), v))
  Buf &datt = scratch_.datt, &dq = scratch_.dq, &dk = scratch_.dk, &dv = scratch_.dv;
  datt.fit(ops, T * QD), dq.fit(ops, T * QD), dk.fit(ops, T * KD), dv.fit(ops, T * KD);
  train_linear_backward(datt.data(), 0.0f, dy, tp.att.data(), l, kO, T, tp);
  for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(tape_.counts.size()); t0 += tape_.counts[sq++]) {
    const int64_t n = tape_.counts[sq];
    ops.attention_backward(dq.data() + t0 * QD, dk.data() + t0 * KD, dv.data() + t0 * KD, datt.data() + t0 * QD,
                           tp.q.data() + t0 * QD, tp.k.data() + t0 * KD, tp.v.data() + t0 * KD,
                           tp.lse.data() + t0 * NH, n, NH, NKV, HD, s.window(l));
  }
  ops.rope_backward(dq.data(), tape_.cos.data(), tape_.sin.data(), T, NH, HD);
  ops.rope_backward(dk.data(), tape_.cos.data(), tape_.sin.data(), T, NKV, HD);
  if (s.qk_norm) {
    ops.rmsnorm_backward(dq.data(), grad_for(w.q_norm.data()), dq.data(), tp.q_raw.data(), resident(w.q_norm),
                         T * NH, HD, s.eps);
    ops.rmsnorm_backward(dk.data(), grad_for(w.k_norm.data()), dk.data(), tp.k_raw.data(), resident(w.k_norm),
                         T * NKV, HD, s.eps);
  }
  train_linear_backward(dxn.data(), 0.0f, dq.data(), tp.xn1.data(), l, kQ, T, tp);
  train_linear_backward(dxn.data(), 1.0f, dk.data(), tp.xn1.data(), l, kK, T, tp);
  train_linear_backward(dxn.data(), 1.0f, dv.data(), tp.xn1.data(), l, kV, T, tp);
  ops.rmsnorm_backward(dxn.data(), grad_for(w.attn_norm.data()), dxn.data(), x, resident(w.attn_norm), T, C, s.eps);
  ex.residual(dy, dy, dxn.data(), T * C);  // dL/dx
}

void Model::train_backward(const std::vector<float>& dlogp, const std::vector<float>* dvalues) {
  if (!tape_.valid)
    throw Error("no_forward", "trainBackward needs a grad trainForward first (each forward allows one backward)");
  const ModelSpec& s = spec_;
  const int64_t T = static_cast<int64_t>(tape_.tokens.size()), C = s.C, V = s.V;
  if (static_cast<int64_t>(dlogp.size()) != T)
    throw Error("invalid_argument", "trainBackward: dlogp must hold " + std::to_string(T) + " values");
  if (dvalues && !tape_.values)
    throw Error("invalid_argument", "trainBackward: dvalues given but the forward computed no values");
  if (dvalues && static_cast<int64_t>(dvalues->size()) != T)
    throw Error("invalid_argument", "trainBackward: dvalues must hold " + std::to_string(T) + " values");
  tape_.valid = false;  // consumed, whatever happens below
  Exec& ex = *exec_;
  ex.bind();
  TrainOps& ops = ex.train();
  // a ZeRO-2/3 rank frees them between steps
  if (resident_params_.active()) resident_params_.ensure_grads(ex);
  else trainable_.ensure_grads();

  Buf &dxf = scratch_.dxf, &logits = scratch_.logits, &dlogp_d = scratch_.dlogp;
  const int64_t rows = head_rows(T, V);
  dxf.fit(ops, T * C), logits.fit(ops, rows * V), dlogp_d.fit(ops, T);
  ops.upload(dlogp_d.data(), dlogp.data(), T * 4);
  float* dhead = grad_for(lm_head_.w);
  const void* head = resident(lm_head_);
  for (int64_t r0 = 0; r0 < T; r0 += rows) {
    const int64_t R = std::min(rows, T - r0);
    head_logits(logits.data(), tape_.xf.data(), r0, R);
    ops.logprob_backward(logits.data(), dlogp_d.data() + r0, logits.data(), tape_.targets_d.data() + r0, R, V);
    ops.linear_backward(dxf.data() + r0 * C, 0.0f, dhead, nullptr, logits.data(), tape_.xf.data() + r0 * C, head,
                        lm_head_.dtype, R, V, C, C);
  }
  if (dvalues) {
    Buf& g = scratch_.dvalues;
    g.fit(ops, T);
    ops.upload(g.data(), dvalues->data(), T * 4);
    const float* vh = tape_.adapter->value_head.data();
    ops.value_head_backward(dxf.data(), grad_for(vh), g.data(), tape_.xf.data(), resident(tape_.adapter->value_head), T,
                            C);
  }
  float* dx = dxf.data();  // reused in place: dL/dx of each layer's output, then input
  ops.rmsnorm_backward(dx, grad_for(final_norm_.data()), dx, tape_.x_final.data(), resident(final_norm_), T, C, s.eps);
  for (int64_t l = s.L - 1; l >= 0; l--) {
    const float* x = tape_.inputs[static_cast<size_t>(l)].data();
    LayerTape& tp = tape_.layers[tape_.checkpoint ? 0 : static_cast<size_t>(l)];
    if (tape_.checkpoint) {
      scratch_.layer_out.fit(ops, T * C);
      layer_forward(l, x, scratch_.layer_out.data(), tp);
    }
    layer_backward(l, dx, x, tp);
  }
  if (float* demb = grad_for(embed_)) ops.embedding_backward(demb, dx, tape_.tokens_d.data(), T, C);
}

StepResult Model::step(const OptimizerStep& o) {
  if (train_kind_ == TrainKind::None) throw Error("nothing_trainable", "step: setTrainable chose nothing to train");
  if (train_kind_ == TrainKind::Adapter && train_adapter_ == merged_)
    throw Error("adapter_merged", "step: adapter '" + merged_ + "' is merged; unmerge it before training");
  // on a device the trainable tensors are updated in place where the forward reads them:
  // nothing to upload again (a host step rewrites host arrays the Exec may have copied)
  if (tp_ && tp_->mirrors()) return tp_->step(*this, o);  // tensor-parallel ranks on devices (rank.h)
  if (resident_params_.active()) {
    exec_->bind();
    return resident_params_.step(*exec_, trainable_, o);
  }
  weights_changed();
  return trainable_.step(o, *pool_);
}

}  // namespace hc
