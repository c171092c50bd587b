// The training forward and backward (DESIGN.md's boundary): whole sequences packed at
// positions 0..n-1, log-probs of given targets out, dL/dlogp in. Same math as
// Model::forward, with attention per sequence (no KV cache), the batch adapter's LoRA
// (with dropout when training) on its targeted linears, and a tape for the backward.
#include <algorithm>
#include <cmath>

#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "errors.h"
#include "model.h"

namespace hc {

static void fit(std::vector<float>& v, int64_t n) { v.resize(static_cast<size_t>(n)); }

// Rows of logits computed at once, so the head never holds [T,V] for a long batch.
static int64_t head_rows(int64_t T, int64_t V) { return std::max<int64_t>(1, std::min<int64_t>(T, (1 << 22) / V)); }

void Model::head_logits(float* logits, const float* xf, int64_t r0, int64_t R) {
  linear(logits, xf + r0 * spec_.C, lm_head_, R);
}

// out = in·Wᵀ + b, plus the tape adapter's LoRA: out += s·(dropout(in)·Aᵀ)·Bᵀ.
void Model::train_linear(float* out, const float* in, int64_t layer, int t, int64_t T, LayerTape& tp) {
  const Linear& w = layers_[layer].at(t);
  linear(out, in, w, T);
  const Adapter* a = tape_.adapter;
  if (!a || !a->at(layer, t).on()) return;
  const LoraMats& m = a->at(layer, t);
  const int64_t r = a->spec.lora.rank;
  const float* xd = in;
  std::vector<float>& dropped = scratch_.dropped;
  if (tape_.dropout) {
    fit(tp.mask[t], T * m.in);
    dropout_mask(tp.mask[t].data(), T * m.in, a->spec.lora.dropout, a->spec.lora.seed, tape_.counter, layer, t);
    fit(dropped, T * m.in);
    for (int64_t i = 0; i < T * m.in; i++) dropped[i] = in[i] * tp.mask[t][i];
    xd = dropped.data();
  }
  fit(tp.u[t], T * r);
  cpu::sgemm(false, true, T, r, m.in, 1.0f, xd, m.in, m.A.data(), m.in, 0.0f, tp.u[t].data(), r, *pool_);
  cpu::sgemm(false, true, T, m.out, r, a->scale, tp.u[t].data(), r, m.B.data(), r, 1.0f, out, m.out, *pool_);
}

// dx = beta·dx + dy·W (+ the LoRA path), and the trainable weights' gradients.
void Model::train_linear_backward(float* dx, float beta, const float* dy, const float* x, int64_t layer, int t,
                                  int64_t T, const LayerTape& tp) {
  const Linear& w = layers_[layer].at(t);
  float* dw = trainable_.grad_for(w.w);
  float* db = w.bias.empty() ? nullptr : trainable_.grad_for(w.bias.data());
  if (dw || db) cpu::matmul_backward(nullptr, dw, db, dy, x, w.w, w.dtype, T, w.out, w.in, *pool_);
  cpu::gemm(false, false, T, w.in, w.out, 1.0f, dy, w.out, w.w, w.dtype, w.in, beta, dx, w.in, nullptr, *pool_);
  const Adapter* a = tape_.adapter;
  if (!a || !a->at(layer, t).on()) return;
  const LoraMats& m = a->at(layer, t);
  const int64_t r = a->spec.lora.rank;
  const float s = a->scale;
  std::vector<float>& du = scratch_.du;
  fit(du, T * r);
  cpu::sgemm(false, false, T, r, m.out, s, dy, m.out, m.B.data(), r, 0.0f, du.data(), r, *pool_);
  if (float* dB = trainable_.grad_for(m.B.data()))
    cpu::sgemm(true, false, m.out, r, T, s, dy, m.out, tp.u[t].data(), r, 1.0f, dB, r, *pool_);
  const bool masked = tape_.dropout;
  if (float* dA = trainable_.grad_for(m.A.data())) {
    const float* xd = x;
    std::vector<float>& dropped = scratch_.dropped;
    if (masked) {
      fit(dropped, T * m.in);
      for (int64_t i = 0; i < T * m.in; i++) dropped[i] = x[i] * tp.mask[t][i];
      xd = dropped.data();
    }
    cpu::sgemm(true, false, r, m.in, T, 1.0f, du.data(), r, xd, m.in, 1.0f, dA, m.in, *pool_);
  }
  if (!masked) {
    cpu::sgemm(false, false, T, m.in, r, 1.0f, du.data(), r, m.A.data(), m.in, 1.0f, dx, m.in, *pool_);
    return;
  }
  std::vector<float>& dxd = scratch_.dxd;
  fit(dxd, T * m.in);
  cpu::sgemm(false, false, T, m.in, r, 1.0f, du.data(), r, m.A.data(), m.in, 0.0f, dxd.data(), m.in, *pool_);
  for (int64_t i = 0; i < T * m.in; i++) dx[i] += dxd[i] * tp.mask[t][i];
}

void Model::layer_forward(int64_t l, const float* x, float* x_out, LayerTape& tp) {
  if (tp_) return tp_->train_layer_forward(*this, l, x, x_out, tp);
  const ModelSpec& s = spec_;
  const LayerWeights& w = layers_[l];
  const int64_t T = static_cast<int64_t>(tape_.tokens.size());
  const int64_t C = s.C, I = s.I, NH = s.NH, NKV = s.NKV, HD = s.HD, QD = NH * HD, KD = NKV * HD;
  ThreadPool& pool = *pool_;
  fit(tp.xn1, T * C), fit(tp.q, T * QD), fit(tp.k, T * KD), fit(tp.v, T * KD), fit(tp.att, T * QD);
  fit(tp.lse, T * NH), fit(tp.x_mid, T * C), fit(tp.xn2, T * C), fit(tp.gate, T * I), fit(tp.up, T * I);
  fit(tp.h, T * I);
  cpu::rmsnorm_forward(tp.xn1.data(), x, w.attn_norm.data(), T, C, s.eps, pool);
  train_linear(tp.q.data(), tp.xn1.data(), l, kQ, T, tp);
  train_linear(tp.k.data(), tp.xn1.data(), l, kK, T, tp);
  train_linear(tp.v.data(), tp.xn1.data(), l, kV, T, tp);
  if (s.qk_norm) {
    tp.q_raw = tp.q;
    tp.k_raw = tp.k;
    cpu::rmsnorm_forward(tp.q.data(), tp.q.data(), w.q_norm.data(), T * NH, HD, s.eps, pool);
    cpu::rmsnorm_forward(tp.k.data(), tp.k.data(), w.k_norm.data(), T * NKV, HD, s.eps, pool);
  }
  cpu::rope_forward(tp.q.data(), tape_.cos.data(), tape_.sin.data(), T, NH, HD, pool);
  cpu::rope_forward(tp.k.data(), tape_.cos.data(), tape_.sin.data(), T, NKV, HD, pool);
  for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(tape_.counts.size()); t0 += tape_.counts[sq++]) {
    const int64_t n = tape_.counts[sq];
    cpu::attention_train_forward(tp.att.data() + t0 * QD, tp.lse.data() + t0 * NH, tp.q.data() + t0 * QD,
                                 tp.k.data() + t0 * KD, tp.v.data() + t0 * KD, n, NH, NKV, HD, s.window(l), pool);
  }
  train_linear(tp.x_mid.data(), tp.att.data(), l, kO, T, tp);
  cpu::residual_forward(tp.x_mid.data(), tp.x_mid.data(), x, T * C);
  cpu::rmsnorm_forward(tp.xn2.data(), tp.x_mid.data(), w.mlp_norm.data(), T, C, s.eps, pool);
  train_linear(tp.gate.data(), tp.xn2.data(), l, kGate, T, tp);
  train_linear(tp.up.data(), tp.xn2.data(), l, kUp, T, tp);
  cpu::swiglu_forward(tp.h.data(), tp.gate.data(), tp.up.data(), T * I, pool);
  train_linear(x_out, tp.h.data(), l, kDown, T, tp);
  cpu::residual_forward(x_out, x_out, tp.x_mid.data(), T * C);
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
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t sq = 0, t = 0; sq < static_cast<int64_t>(b.counts.size()); sq++)
    for (int32_t i = 0; i < b.counts[sq]; i++) pos[t++] = i;
  fit(tape_.cos, T * HD / 2), fit(tape_.sin, T * HD / 2);
  cpu::rope_tables(tape_.cos.data(), tape_.sin.data(), pos.data(), s.inv_freq.data(), T, HD / 2, s.rope_scaling);

  // inputs[l] is layer l's input; without grad only two buffers alternate
  tape_.inputs.resize(static_cast<size_t>(b.grad ? L : 2));
  tape_.layers.resize(b.grad && !b.checkpoint ? static_cast<size_t>(L) : 1);
  for (auto& v : tape_.inputs) fit(v, T * C);
  fit(tape_.x_final, T * C);
  auto input = [&](int64_t l) { return tape_.inputs[static_cast<size_t>(b.grad ? l : l % 2)].data(); };
  cpu::embedding_forward(input(0), b.tokens.data(), embed_, embed_dtype_, T, C);
  for (int64_t l = 0; l < L; l++) {
    float* out = l + 1 < L ? input(l + 1) : tape_.x_final.data();
    layer_forward(l, input(l), out, tape_.layers[tape_.layers.size() == 1 ? 0 : static_cast<size_t>(l)]);
  }

  fit(tape_.xf, T * C);
  cpu::rmsnorm_forward(tape_.xf.data(), tape_.x_final.data(), final_norm_.data(), T, C, s.eps, *pool_);
  res.logp.assign(static_cast<size_t>(T), 0.0f);
  const int64_t rows = head_rows(T, s.V);
  std::vector<float>& logits = scratch_.logits;
  fit(logits, rows * s.V);
  for (int64_t r0 = 0; r0 < T; r0 += rows) {
    const int64_t R = std::min(rows, T - r0);
    head_logits(logits.data(), tape_.xf.data(), r0, R);
    cpu::logprob_forward(res.logp.data() + r0, logits.data(), b.targets.data() + r0, R, s.V, *pool_);
  }
  res.values.clear();
  if (b.values) {
    res.values.resize(static_cast<size_t>(T));
    const float* vh = a->value_head.data();
    for (int64_t t = 0; t < T; t++) {
      double acc = 0;
      for (int64_t i = 0; i < C; i++) acc += static_cast<double>(vh[i]) * tape_.xf[t * C + i];
      res.values[t] = static_cast<float>(acc);
    }
  }
  tape_.valid = b.grad;
}

void Model::layer_backward(int64_t l, float* dy, const float* x, const LayerTape& tp) {
  if (tp_) return tp_->train_layer_backward(*this, l, dy, x, tp);
  const ModelSpec& s = spec_;
  const LayerWeights& w = layers_[l];
  const int64_t T = static_cast<int64_t>(tape_.tokens.size());
  const int64_t C = s.C, I = s.I, NH = s.NH, NKV = s.NKV, HD = s.HD, QD = NH * HD, KD = NKV * HD;
  ThreadPool& pool = *pool_;
  std::vector<float>&dh = scratch_.dh, &dup = scratch_.dup, &dxn = scratch_.dxn;
  fit(dh, T * I), fit(dup, T * I), fit(dxn, T * C);
  // MLP block: x_out = x_mid + down(swiglu(gate(xn2), up(xn2)))
  train_linear_backward(dh.data(), 0.0f, dy, tp.h.data(), l, kDown, T, tp);
  cpu::swiglu_backward(dh.data(), dup.data(), dh.data(), tp.gate.data(), tp.up.data(), T * I, pool);
  train_linear_backward(dxn.data(), 0.0f, dh.data(), tp.xn2.data(), l, kGate, T, tp);
  train_linear_backward(dxn.data(), 1.0f, dup.data(), tp.xn2.data(), l, kUp, T, tp);
  cpu::rmsnorm_backward(dxn.data(), trainable_.grad_for(w.mlp_norm.data()), dxn.data(), tp.x_mid.data(),
                        w.mlp_norm.data(), T, C, s.eps, pool);
  for (int64_t i = 0; i < T * C; i++) dy[i] += dxn[i];  // dy is now dL/dx_mid
  // attention block: x_mid = x + o(attention(rope(norm(q)), rope(norm(k)), v))
  std::vector<float>&datt = scratch_.datt, &dq = scratch_.dq, &dk = scratch_.dk, &dv = scratch_.dv;
  fit(datt, T * QD), fit(dq, T * QD), fit(dk, T * KD), fit(dv, T * KD);
  train_linear_backward(datt.data(), 0.0f, dy, tp.att.data(), l, kO, T, tp);
  for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(tape_.counts.size()); t0 += tape_.counts[sq++]) {
    const int64_t n = tape_.counts[sq];
    cpu::attention_backward(dq.data() + t0 * QD, dk.data() + t0 * KD, dv.data() + t0 * KD, datt.data() + t0 * QD,
                            tp.q.data() + t0 * QD, tp.k.data() + t0 * KD, tp.v.data() + t0 * KD,
                            tp.lse.data() + t0 * NH, n, NH, NKV, HD, s.window(l), pool);
  }
  cpu::rope_backward(dq.data(), tape_.cos.data(), tape_.sin.data(), T, NH, HD, pool);
  cpu::rope_backward(dk.data(), tape_.cos.data(), tape_.sin.data(), T, NKV, HD, pool);
  if (s.qk_norm) {
    cpu::rmsnorm_backward(dq.data(), trainable_.grad_for(w.q_norm.data()), dq.data(), tp.q_raw.data(),
                          w.q_norm.data(), T * NH, HD, s.eps, pool);
    cpu::rmsnorm_backward(dk.data(), trainable_.grad_for(w.k_norm.data()), dk.data(), tp.k_raw.data(),
                          w.k_norm.data(), T * NKV, HD, s.eps, pool);
  }
  train_linear_backward(dxn.data(), 0.0f, dq.data(), tp.xn1.data(), l, kQ, T, tp);
  train_linear_backward(dxn.data(), 1.0f, dk.data(), tp.xn1.data(), l, kK, T, tp);
  train_linear_backward(dxn.data(), 1.0f, dv.data(), tp.xn1.data(), l, kV, T, tp);
  cpu::rmsnorm_backward(dxn.data(), trainable_.grad_for(w.attn_norm.data()), dxn.data(), x, w.attn_norm.data(), T,
                        C, s.eps, pool);
  for (int64_t i = 0; i < T * C; i++) dy[i] += dxn[i];  // dL/dx
}

void Model::train_backward(const std::vector<float>& dlogp, const std::vector<float>* dvalues) {
  if (!tape_.valid)
    throw Error("no_forward", "trainBackward needs a grad trainForward first (each forward allows one backward)");
  const ModelSpec& s = spec_;
  const int64_t T = static_cast<int64_t>(tape_.tokens.size()), C = s.C, V = s.V;
  if (static_cast<int64_t>(dlogp.size()) != T)
    throw Error("invalid_argument", "trainBackward: dlogp must hold " + std::to_string(T) + " values");
  trainable_.ensure_grads();  // a ZeRO-2/3 rank frees them between steps
  if (dvalues && !tape_.values)
    throw Error("invalid_argument", "trainBackward: dvalues given but the forward computed no values");
  if (dvalues && static_cast<int64_t>(dvalues->size()) != T)
    throw Error("invalid_argument", "trainBackward: dvalues must hold " + std::to_string(T) + " values");
  tape_.valid = false;  // consumed, whatever happens below
  ThreadPool& pool = *pool_;

  std::vector<float>&dxf = scratch_.dxf, &logits = scratch_.logits;
  const int64_t rows = head_rows(T, V);
  fit(dxf, T * C), fit(logits, rows * V);
  float* dhead = trainable_.grad_for(lm_head_.w);
  for (int64_t r0 = 0; r0 < T; r0 += rows) {
    const int64_t R = std::min(rows, T - r0);
    head_logits(logits.data(), tape_.xf.data(), r0, R);
    cpu::logprob_backward(logits.data(), dlogp.data() + r0, logits.data(), tape_.targets.data() + r0, R, V, pool);
    cpu::matmul_backward(dxf.data() + r0 * C, dhead, nullptr, logits.data(), tape_.xf.data() + r0 * C, lm_head_.w,
                         lm_head_.dtype, R, V, C, pool);
  }
  if (dvalues) {
    const float* vh = tape_.adapter->value_head.data();
    float* dvh = trainable_.grad_for(vh);
    for (int64_t t = 0; t < T; t++) {
      const float g = (*dvalues)[t];
      for (int64_t i = 0; i < C; i++) {
        dxf[t * C + i] += g * vh[i];
        if (dvh) dvh[i] += g * tape_.xf[t * C + i];
      }
    }
  }
  float* dx = dxf.data();  // reused in place: dL/dx of each layer's output, then input
  cpu::rmsnorm_backward(dx, trainable_.grad_for(final_norm_.data()), dx, tape_.x_final.data(), final_norm_.data(), T,
                        C, s.eps, pool);
  for (int64_t l = s.L - 1; l >= 0; l--) {
    const float* x = tape_.inputs[static_cast<size_t>(l)].data();
    LayerTape& tp = tape_.layers[tape_.checkpoint ? 0 : static_cast<size_t>(l)];
    if (tape_.checkpoint) {
      fit(scratch_.layer_out, T * C);
      layer_forward(l, x, scratch_.layer_out.data(), tp);
    }
    layer_backward(l, dx, x, tp);
  }
  if (float* demb = trainable_.grad_for(embed_)) cpu::embedding_backward(demb, dx, tape_.tokens.data(), T, C);
}

StepResult Model::step(const OptimizerStep& o) {
  if (train_kind_ == TrainKind::None) throw Error("nothing_trainable", "step: setTrainable chose nothing to train");
  if (train_kind_ == TrainKind::Adapter && train_adapter_ == merged_)
    throw Error("adapter_merged", "step: adapter '" + merged_ + "' is merged; unmerge it before training");
  weights_changed();
  return trainable_.step(o, *pool_);
}

}  // namespace hc
