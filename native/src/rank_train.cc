// Tensor-parallel training (rank.h): Model::layer_forward / layer_backward with each
// decoder layer split over the ranks, every rank on its own Exec and TrainOps (CPU kernels
// on host arrays for thread ranks, the device's on device memory for device ranks).
// Column-parallel linears (q/k/v/gate/up) keep the LoRA A replicated and B split by rows;
// row-parallel ones (o/down) split A by columns and keep B replicated, so each rank's LoRA
// is exactly its slice of the unsplit one. Dropout masks are the TP=1 masks: a column layer's
// rank draws the whole [T, in] mask, a row layer's rank its columns of it (the mask is a pure
// function of the element index). Gradients of split tensors go to each rank's disjoint
// slice; those of replicated tensors (a column layer's A, a row layer's B, the norms) are
// written by rank 0 alone, their partial sums all-reduced first. The trainable state and the
// step: rank.h.
#include <algorithm>
#include <cmath>
#include <string>

#include "dist/communicator.h"
#include "errors.h"
#include "model.h"
#include "rank.h"
#include "train/zero.h"

namespace hc {

const LoraMats* TensorParallel::lora_of(const Model& m, int64_t l, int t) {
  const Adapter* a = m.tape_.adapter;
  return a && a->at(l, t).on() ? &a->at(l, t) : nullptr;
}

const float* TensorParallel::trained(Exec& ex, const std::vector<float>& v) {
  return static_cast<const float*>(ex.weight(v.data(), static_cast<int64_t>(v.size()) * 4, true));
}

float* TensorParallel::grad(Model& m, int r, const void* host) const {
  if (r == 0 || !device_ranks_) return m.grad_for(host);  // rank 0's, or the one host set the thread ranks share
  const Rank& rk = rank_[r];
  auto f = rk.mirror_of.find(host);
  return f == rk.mirror_of.end() ? nullptr : const_cast<float*>(rk.mirror[f->second].grad.data());
}

const float* TensorParallel::rope_cos(Model& m, int r) const {
  return r == 0 ? m.tape_.cos.data() : m.tape_.rank_cos[r].data();
}
const float* TensorParallel::rope_sin(Model& m, int r) const {
  return r == 0 ? m.tape_.sin.data() : m.tape_.rank_sin[r].data();
}

void TensorParallel::train_begin(Model& m, int64_t T) {
  const int64_t n = T * m.spec_.HD / 2;
  m.tape_.rank_cos.resize(static_cast<size_t>(n_));
  m.tape_.rank_sin.resize(static_cast<size_t>(n_));
  run_ranks([&](int r) {
    Exec& ex = *rank_[r].exec;
    ex.bind();
    if (r > 0) m.tape_.rank_cos[r].fit(ex.train(), n), m.tape_.rank_sin[r].fit(ex.train(), n);
    comm(r).broadcast(const_cast<float*>(rope_cos(m, r)), n, DType::F32, 0);
    comm(r).broadcast(const_cast<float*>(rope_sin(m, r)), n, DType::F32, 0);
  });
}

const float* TensorParallel::dropped(Model& m, int r, const LayerTape& rt, const float* in, int t, int64_t K,
                                     int64_t T) {
  if (!m.tape_.dropout) return in;
  Rank& rk = rank_[r];
  TrainOps& ops = rk.exec->train();
  rk.dropped.fit(ops, T * K);
  ops.mul(rk.dropped.data(), in, rt.mask[t].data(), T * K, false);
  return rk.dropped.data();
}

void TensorParallel::train_column(Model& m, int r, LayerTape& rt, float* out, const float* in, int64_t l, int t,
                                  Slice sh, int64_t T) {
  Exec& ex = *rank_[r].exec;
  TrainOps& ops = ex.train();
  const Linear& w = m.layers_[l].at(t);
  const int64_t O = sh.size(), K = w.in;
  ops.linear(out, in, column_shard(ex, w, sh), w.dtype, vec(ex, w.bias, sh.begin, O), T, O, K, K);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  if (m.tape_.dropout) {
    rt.mask[t].fit(ops, T * K);
    ops.dropout_mask(rt.mask[t].data(), T, K, K, 0, a->spec.lora.dropout, a->spec.lora.seed, m.tape_.counter, l, t);
  }
  const float* xd = dropped(m, r, rt, in, t, K, T);
  rt.u[t].fit(ops, T * R);  // u = x·Aᵀ is replicated: every rank computes it whole
  ex.sgemm(false, true, T, R, K, 1.f, xd, K, trained(ex, lm->A), K, 0.f, rt.u[t].data(), R);
  ex.sgemm(false, true, T, O, R, a->scale, rt.u[t].data(), R, trained(ex, lm->B) + sh.begin * R, R, 1.f, out, O);
}

void TensorParallel::train_row(Model& m, int r, LayerTape& rt, const float* in, int64_t l, int t, Slice sh,
                               int64_t T) {
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  TrainOps& ops = ex.train();
  const Linear& w = m.layers_[l].at(t);
  const int64_t K = sh.size(), N = w.out;
  rk.part.fit(ops, T * N);
  const Exec::View v = row_shard(ex, w, sh);
  // the bias once, by rank 0, before the all-reduce
  ops.linear(rk.part.data(), in, v.w, w.dtype, r == 0 ? vec(ex, w.bias) : nullptr, T, N, K, v.ld);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  if (m.tape_.dropout) {  // this rank's columns of the whole input's mask
    rt.mask[t].fit(ops, T * K);
    ops.dropout_mask(rt.mask[t].data(), T, K, w.in, sh.begin, a->spec.lora.dropout, a->spec.lora.seed,
                     m.tape_.counter, l, t);
  }
  const float* xd = dropped(m, r, rt, in, t, K, T);
  rt.u[t].fit(ops, T * R);  // u = Σ_ranks x_r·A_rᵀ, kept whole for dB
  ex.sgemm(false, true, T, R, K, 1.f, xd, K, trained(ex, lm->A) + sh.begin, w.in, 0.f, rt.u[t].data(), R);
  comm(r).all_reduce_sum(rt.u[t].data(), T * R, DType::F32);
  if (r == 0)  // B is replicated: its product is added once, before the all-reduce of part
    ex.sgemm(false, true, T, N, R, a->scale, rt.u[t].data(), R, trained(ex, lm->B), R, 1.f, rk.part.data(), N);
}

void TensorParallel::train_attention(Model& m, int r, LayerTape& rt, int64_t l, int64_t T) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  TrainOps& ops = ex.train();
  const int64_t HD = s.HD, NH = rk.heads.size(), NKV = rk.kv_heads.size(), QD = NH * HD, KD = NKV * HD;
  rt.q.fit(ops, T * QD), rt.k.fit(ops, T * KD), rt.v.fit(ops, T * KD), rt.att.fit(ops, T * QD);
  rt.lse.fit(ops, T * NH);
  const Slice qs{rk.heads.begin * HD, rk.heads.end * HD}, ks{rk.kv_heads.begin * HD, rk.kv_heads.end * HD};
  train_column(m, r, rt, rt.q.data(), rt.xn1.data(), l, kQ, qs, T);
  train_column(m, r, rt, rt.k.data(), rt.xn1.data(), l, kK, ks, T);
  train_column(m, r, rt, rt.v.data(), rt.xn1.data(), l, kV, ks, T);
  if (s.qk_norm) {
    rt.q_raw.fit(ops, T * QD), rt.k_raw.fit(ops, T * KD);
    ops.copy(rt.q_raw.data(), rt.q.data(), T * QD);
    ops.copy(rt.k_raw.data(), rt.k.data(), T * KD);
    ex.rmsnorm(rt.q.data(), rt.q.data(), vec(ex, w.q_norm), T * NH, HD, s.eps);
    ex.rmsnorm(rt.k.data(), rt.k.data(), vec(ex, w.k_norm), T * NKV, HD, s.eps);
  }
  ex.rope(rt.q.data(), rope_cos(m, r), rope_sin(m, r), T, NH, HD);
  ex.rope(rt.k.data(), rope_cos(m, r), rope_sin(m, r), T, NKV, HD);
  const std::vector<int32_t>& counts = m.tape_.counts;
  for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(counts.size()); t0 += counts[sq++])
    ops.attention_train_forward(rt.att.data() + t0 * QD, rt.lse.data() + t0 * NH, rt.q.data() + t0 * QD,
                                rt.k.data() + t0 * KD, rt.v.data() + t0 * KD, counts[sq], NH, NKV, HD, s.window(l));
  train_row(m, r, rt, rt.att.data(), l, kO, qs, T);
}

void TensorParallel::train_mlp(Model& m, int r, LayerTape& rt, int64_t l, int64_t T) {
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  TrainOps& ops = ex.train();
  const int64_t I = rk.mlp.size();
  rt.gate.fit(ops, T * I), rt.up.fit(ops, T * I), rt.h.fit(ops, T * I);
  train_column(m, r, rt, rt.gate.data(), rt.xn2.data(), l, kGate, rk.mlp, T);
  train_column(m, r, rt, rt.up.data(), rt.xn2.data(), l, kUp, rk.mlp, T);
  ex.swiglu(rt.h.data(), rt.gate.data(), rt.up.data(), T * I);
  train_row(m, r, rt, rt.h.data(), l, kDown, rk.mlp, T);
}

void TensorParallel::train_layer_forward(Model& m, int64_t l, const float* x, float* x_out, LayerTape& tp) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  const int64_t T = static_cast<int64_t>(m.tape_.tokens.size()), C = s.C;
  tp.ranks.resize(static_cast<size_t>(n_));
  run_ranks([&](int r) {
    Rank& rk = rank_[r];
    Exec& ex = *rk.exec;
    ex.bind();
    TrainOps& ops = ex.train();
    dist::Communicator& c = comm(r);
    LayerTape& rt = tp.ranks[r];
    // the layer's input: rank 0's is the model's tape, every other rank gets its own copy
    if (r > 0) rk.x.fit(ops, T * C);
    float* xr = r == 0 ? const_cast<float*>(x) : rk.x.data();
    c.broadcast(xr, T * C, DType::F32, 0);
    rt.xn1.fit(ops, T * C), rt.x_mid.fit(ops, T * C), rt.xn2.fit(ops, T * C);
    ex.rmsnorm(rt.xn1.data(), xr, vec(ex, w.attn_norm), T, C, s.eps);
    train_attention(m, r, rt, l, T);
    c.all_reduce_sum(rk.part.data(), T * C, DType::F32);
    ex.residual(rt.x_mid.data(), rk.part.data(), xr, T * C);
    ex.rmsnorm(rt.xn2.data(), rt.x_mid.data(), vec(ex, w.mlp_norm), T, C, s.eps);
    train_mlp(m, r, rt, l, T);
    c.all_reduce_sum(rk.part.data(), T * C, DType::F32);
    // only rank 0's output is kept: the next layer broadcasts it again
    if (r == 0) ex.residual(x_out, rk.part.data(), rt.x_mid.data(), T * C);
  });
}

// ---- backward ----------------------------------------------------------------------

void TensorParallel::column_backward(Model& m, int r, const LayerTape& rt, float* dx, float beta, const float* dy,
                                     const float* x, int64_t l, int t, Slice sh, int64_t T) {
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  TrainOps& ops = ex.train();
  const Linear& w = m.layers_[l].at(t);
  const int64_t O = sh.size(), K = w.in;
  float* dw = grad(m, r, w.w);
  float* db = w.bias.empty() ? nullptr : grad(m, r, w.bias.data());
  // this rank's rows of dW and entries of db
  ops.linear_backward(dx, beta, dw ? dw + sh.begin * K : nullptr, db ? db + sh.begin : nullptr, dy, x,
                      column_shard(ex, w, sh), w.dtype, T, O, K, K);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  const float s = a->scale;
  const float *A = trained(ex, lm->A), *B = trained(ex, lm->B);
  rk.du.fit(ops, T * R);
  ex.sgemm(false, false, T, R, O, s, dy, O, B + sh.begin * R, R, 0.f, rk.du.data(), R);
  if (float* dB = grad(m, r, lm->B.data()))
    ex.sgemm(true, false, O, R, T, s, dy, O, rt.u[t].data(), R, 1.f, dB + sh.begin * R, R);
  // du is a sum over the ranks' output slices; A is replicated, so rank 0 applies the total
  comm(r).all_reduce_sum(rk.du.data(), T * R, DType::F32);
  if (r != 0) return;
  if (float* dA = grad(m, r, lm->A.data()))
    ex.sgemm(true, false, R, K, T, 1.f, rk.du.data(), R, dropped(m, r, rt, x, t, K, T), K, 1.f, dA, K);
  if (!m.tape_.dropout) {
    ex.sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, A, K, 1.f, dx, K);
    return;
  }
  rk.dxd.fit(ops, T * K);
  ex.sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, A, K, 0.f, rk.dxd.data(), K);
  ops.mul(dx, rk.dxd.data(), rt.mask[t].data(), T * K, true);
}

void TensorParallel::row_backward(Model& m, int r, const LayerTape& rt, float* dx, const float* dy, const float* x,
                                  int64_t l, int t, Slice sh, int64_t T) {
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  TrainOps& ops = ex.train();
  const Linear& w = m.layers_[l].at(t);
  const int64_t K = sh.size(), N = w.out, ld = w.in;
  float* dw = grad(m, r, w.w);  // this rank's columns of dW
  float* db = w.bias.empty() || r != 0 ? nullptr : grad(m, r, w.bias.data());  // dy is replicated: once
  const Exec::View v = row_shard(ex, w, sh);
  ops.linear_backward(dx, 0.f, dw ? dw + sh.begin : nullptr, db, dy, x, v.w, w.dtype, T, N, K, v.ld);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  const float s = a->scale;
  const float *A = trained(ex, lm->A) + sh.begin, *B = trained(ex, lm->B);
  rk.du.fit(ops, T * R);  // du = s·dy·B: dy and B are replicated, so du is too
  ex.sgemm(false, false, T, R, N, s, dy, N, B, R, 0.f, rk.du.data(), R);
  if (float* dB = grad(m, r, lm->B.data()); dB && r == 0)
    ex.sgemm(true, false, N, R, T, s, dy, N, rt.u[t].data(), R, 1.f, dB, R);
  if (float* dA = grad(m, r, lm->A.data()))
    ex.sgemm(true, false, R, K, T, 1.f, rk.du.data(), R, dropped(m, r, rt, x, t, K, T), K, 1.f, dA + sh.begin, ld);
  if (!m.tape_.dropout) {
    ex.sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, A, ld, 1.f, dx, K);
    return;
  }
  rk.dxd.fit(ops, T * K);
  ex.sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, A, ld, 0.f, rk.dxd.data(), K);
  ops.mul(dx, rk.dxd.data(), rt.mask[t].data(), T * K, true);
}

void TensorParallel::train_layer_backward(Model& m, int64_t l, float* dy, const float* x, const LayerTape& tp) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  const int64_t T = static_cast<int64_t>(m.tape_.tokens.size()), C = s.C, HD = s.HD;
  // whether the norms train: every rank must agree on the collectives below
  const bool qk_norms = s.qk_norm && (m.grad_for(w.q_norm.data()) || m.grad_for(w.k_norm.data()));
  run_ranks([&](int r) {
    Rank& rk = rank_[r];
    Exec& ex = *rk.exec;
    ex.bind();
    TrainOps& ops = ex.train();
    dist::Communicator& c = comm(r);
    const LayerTape& rt = tp.ranks[r];
    // the upstream gradient and the layer's input: rank 0's are the model's, the others' copies
    if (r > 0) rk.dy.fit(ops, T * C), rk.x.fit(ops, T * C);
    float* dyr = r == 0 ? dy : rk.dy.data();
    float* xr = r == 0 ? const_cast<float*>(x) : rk.x.data();
    c.broadcast(dyr, T * C, DType::F32, 0);
    c.broadcast(xr, T * C, DType::F32, 0);
    // MLP block: x_out = x_mid + down(swiglu(gate(xn2), up(xn2)))
    const int64_t I = rk.mlp.size();
    rk.dh.fit(ops, T * I), rk.dup.fit(ops, T * I), rk.part.fit(ops, T * C);
    row_backward(m, r, rt, rk.dh.data(), dyr, rt.h.data(), l, kDown, rk.mlp, T);
    ops.swiglu_backward(rk.dh.data(), rk.dup.data(), rk.dh.data(), rt.gate.data(), rt.up.data(), T * I);
    column_backward(m, r, rt, rk.part.data(), 0.f, rk.dh.data(), rt.xn2.data(), l, kGate, rk.mlp, T);
    column_backward(m, r, rt, rk.part.data(), 1.f, rk.dup.data(), rt.xn2.data(), l, kUp, rk.mlp, T);
    c.all_reduce_sum(rk.part.data(), T * C, DType::F32);
    // the norm is replicated work; its weight's gradient written once
    float* dxn = rk.part.data();
    ops.rmsnorm_backward(dxn, r == 0 ? grad(m, r, w.mlp_norm.data()) : nullptr, dxn, rt.x_mid.data(),
                         vec(ex, w.mlp_norm), T, C, s.eps);
    ex.residual(dyr, dyr, dxn, T * C);  // dyr is now dL/dx_mid
    // attention block: x_mid = x + o(attention(rope(norm(q)), rope(norm(k)), v))
    const int64_t NH = rk.heads.size(), NKV = rk.kv_heads.size(), QD = NH * HD, KD = NKV * HD;
    const Slice qs{rk.heads.begin * HD, rk.heads.end * HD}, ks{rk.kv_heads.begin * HD, rk.kv_heads.end * HD};
    rk.datt.fit(ops, T * QD), rk.dq.fit(ops, T * QD), rk.dk.fit(ops, T * KD), rk.dv.fit(ops, T * KD);
    row_backward(m, r, rt, rk.datt.data(), dyr, rt.att.data(), l, kO, qs, T);
    const std::vector<int32_t>& counts = m.tape_.counts;
    for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(counts.size()); t0 += counts[sq++])
      ops.attention_backward(rk.dq.data() + t0 * QD, rk.dk.data() + t0 * KD, rk.dv.data() + t0 * KD,
                             rk.datt.data() + t0 * QD, rt.q.data() + t0 * QD, rt.k.data() + t0 * KD,
                             rt.v.data() + t0 * KD, rt.lse.data() + t0 * NH, counts[sq], NH, NKV, HD, s.window(l));
    ops.rope_backward(rk.dq.data(), rope_cos(m, r), rope_sin(m, r), T, NH, HD);
    ops.rope_backward(rk.dk.data(), rope_cos(m, r), rope_sin(m, r), T, NKV, HD);
    if (s.qk_norm) {  // the norms are replicated: each rank's share of their gradient is summed
      rk.dnorm.fit(ops, 2 * HD);
      ops.zero(rk.dnorm.data(), 2 * HD);
      ops.rmsnorm_backward(rk.dq.data(), qk_norms ? rk.dnorm.data() : nullptr, rk.dq.data(), rt.q_raw.data(),
                           vec(ex, w.q_norm), T * NH, HD, s.eps);
      ops.rmsnorm_backward(rk.dk.data(), qk_norms ? rk.dnorm.data() + HD : nullptr, rk.dk.data(), rt.k_raw.data(),
                           vec(ex, w.k_norm), T * NKV, HD, s.eps);
      if (qk_norms) {
        c.all_reduce_sum(rk.dnorm.data(), 2 * HD, DType::F32);
        if (r == 0) {
          if (float* dqn = grad(m, r, w.q_norm.data())) ex.residual(dqn, dqn, rk.dnorm.data(), HD);
          if (float* dkn = grad(m, r, w.k_norm.data())) ex.residual(dkn, dkn, rk.dnorm.data() + HD, HD);
        }
      }
    }
    column_backward(m, r, rt, rk.part.data(), 0.f, rk.dq.data(), rt.xn1.data(), l, kQ, qs, T);
    column_backward(m, r, rt, rk.part.data(), 1.f, rk.dk.data(), rt.xn1.data(), l, kK, ks, T);
    column_backward(m, r, rt, rk.part.data(), 1.f, rk.dv.data(), rt.xn1.data(), l, kV, ks, T);
    c.all_reduce_sum(rk.part.data(), T * C, DType::F32);
    ops.rmsnorm_backward(dxn, r == 0 ? grad(m, r, w.attn_norm.data()) : nullptr, dxn, xr, vec(ex, w.attn_norm), T,
                         C, s.eps);
    ex.residual(dyr, dyr, dxn, T * C);  // dL/dx (rank 0's: the model's buffer)
  });
}

// ---- the trainable state on device ranks (rank.h) ----------------------------------

void TensorParallel::each_device_rank(Model& m, const std::function<void(int, Exec&)>& fn) {
  if (!device_ranks_) return;
  try {
    for (int r = 1; r < n_; r++) {
      Exec& ex = *rank_[r].exec;
      ex.bind();
      fn(r, ex);
    }
  } catch (...) {
    m.exec_->bind();
    throw;
  }
  m.exec_->bind();
}

void TensorParallel::attach_trainable(Model& m) {
  each_device_rank(m, [&](int r, Exec& ex) {
    Rank& rk = rank_[r];
    for (Param& p : m.trainable_.params()) {
      Mirror mr{p.data, p.n, ex.pin(p.data, p.n), {}};  // the host arrays are current: the set was just attached
      mr.grad.fit(ex.train(), p.n);                      // zero-filled
      rk.mirror_of[p.data] = rk.mirror.size();
      rk.mirror.push_back(std::move(mr));
    }
  });
}

void TensorParallel::detach_trainable(Model& m) {
  // the data equal rank 0's, which the model pulls back to the host: each mirror is only unpinned
  each_device_rank(m, [&](int r, Exec& ex) {
    Rank& rk = rank_[r];
    for (Mirror& mr : rk.mirror) ex.unpin(mr.host);
    rk.mirror.clear();
    rk.mirror_of.clear();
  });
}

void TensorParallel::zero_grads(Model& m) {
  each_device_rank(m, [&](int r, Exec& ex) {
    for (Mirror& mr : rank_[r].mirror) ex.train().zero(mr.grad.data(), mr.n);
  });
}

void TensorParallel::push(Model& m, const float* host, int64_t n) {
  each_device_rank(m, [&](int, Exec& ex) { ex.push(host, n); });
}

int64_t TensorParallel::weight_bytes_moved() const {
  int64_t b = 0;
  for (const auto& e : owned_) b += e->weight_bytes_moved();
  return b;
}

StepResult TensorParallel::step(Model& m, const OptimizerStep& o) {
  validate_step(o);
  std::vector<Param>& params = m.trainable_.params();
  ResidentParams& home = m.resident_params_;
  StepResult out;
  try {
    run_ranks([&](int r) {
      Exec& ex = *rank_[r].exec;
      ex.bind();
      dist::Communicator& c = comm(r);
      auto data = [&](size_t i) { return r == 0 ? home.data_for(params[i].data) : rank_[r].mirror[i].data; };
      auto grad_of = [&](size_t i) { return r == 0 ? home.grad_for(params[i].data) : rank_[r].mirror[i].grad.data(); };
      if (r == 0) home.ensure_grads(ex);
      // 1. every gradient summed: each rank's buffer holds its slices (zeros elsewhere)
      const size_t fail_at = injected_step_failure(r, params.size());
      for (size_t i = 0; i < params.size(); i++) {
        if (i == fail_at)
          throw Error("injected_failure", "tensor-parallel rank " + std::to_string(r) +
                                              " failed mid-step (HYBRIDCHAT_TEST_FAIL_STEP_RANK)");
        c.all_reduce_sum(grad_of(i), params[i].n, DType::F32);
      }
      // 2. rank 0's optimizer (global norm over every gradient once, clipping, AdamW; its
      // gradients zeroed); the mirrors' sums are dropped
      if (r == 0) out = home.step(ex, m.trainable_, o);
      else
        for (size_t i = 0; i < params.size(); i++) ex.train().zero(grad_of(i), params[i].n);
      // 3. the updated tensors from device 0 to every device
      for (size_t i = 0; i < params.size(); i++) c.broadcast(data(i), params[i].n, DType::F32, 0);
    });
  } catch (...) {
    // the reductions may have summed part of the gradients: the step's gradients are dropped
    // on every rank, so the batch redone trains as on a group that never failed
    m.exec_->bind();
    home.zero_grad(*m.exec_);
    zero_grads(m);
    throw;
  }
  return out;
}

}  // namespace hc
