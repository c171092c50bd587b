// Tensor-parallel training (rank.h): Model::layer_forward / layer_backward with each
// decoder layer split over the thread ranks. Column-parallel linears (q/k/v/gate/up) keep
// the LoRA A replicated and B split by rows; row-parallel ones (o/down) split A by columns
// and keep B replicated, so each rank's LoRA is exactly its slice of the unsplit one.
// Dropout masks are drawn over the whole [T, in] input (a pure function of the element
// index), so every rank sees the masks of TP=1. Gradients of sharded weights go to each
// rank's disjoint slice; those of replicated tensors (a column layer's A, a row layer's
// B, the q/k norms) are all-reduced or written by rank 0 alone.
#include <algorithm>

#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "dist/communicator.h"
#include "model.h"
#include "rank.h"

namespace hc {

template <typename V>  // a rank's own std::vector or a tape Buf (host memory: TP runs on the CPU)
static void fit(V& v, int64_t n) { v.resize(static_cast<size_t>(n)); }

const LoraMats* TensorParallel::lora_of(const Model& m, int64_t l, int t) {
  const Adapter* a = m.tape_.adapter;
  return a && a->at(l, t).on() ? &a->at(l, t) : nullptr;
}

const float* TensorParallel::dropped(Model& m, int r, const LayerTape& rt, const float* in, int t, int64_t c0,
                                     int64_t K, int64_t ld, int64_t T) {
  if (!m.tape_.dropout) return in;
  std::vector<float>& d = rank_[r].dropped;
  fit(d, T * K);
  const float* mask = rt.mask[t].data();
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < K; j++) d[i * K + j] = in[i * K + j] * mask[i * ld + c0 + j];
  return d.data();
}

void TensorParallel::train_column(Model& m, int r, LayerTape& rt, float* out, const float* in, int64_t l, int t,
                                  Slice sh, int64_t T) {
  ThreadPool& pool = *rank_[r].pool;
  const Linear& w = m.layers_[l].at(t);
  const int64_t O = sh.size(), K = w.in;
  cpu::gemm(false, true, T, O, K, 1.f, in, K, at(w, sh.begin * K), w.dtype, K, 0.f, out, O,
            w.bias.empty() ? nullptr : w.bias.data() + sh.begin, pool, cpu::MatmulPrecision::Highest, true);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  if (m.tape_.dropout) {
    fit(rt.mask[t], T * K);
    dropout_mask(rt.mask[t].data(), T * K, a->spec.lora.dropout, a->spec.lora.seed, m.tape_.counter, l, t);
  }
  const float* xd = dropped(m, r, rt, in, t, 0, K, K, T);
  fit(rt.u[t], T * R);  // u = x·Aᵀ is replicated: every rank computes it whole
  cpu::sgemm(false, true, T, R, K, 1.f, xd, K, lm->A.data(), K, 0.f, rt.u[t].data(), R, pool);
  cpu::sgemm(false, true, T, O, R, a->scale, rt.u[t].data(), R, lm->B.data() + sh.begin * R, R, 1.f, out, O, pool);
}

void TensorParallel::train_row(Model& m, int r, LayerTape& rt, const float* in, int64_t l, int t, Slice sh,
                               int64_t T) {
  Rank& rk = rank_[r];
  const Linear& w = m.layers_[l].at(t);
  const int64_t K = sh.size(), N = w.out;
  fit(rk.part, T * N);
  const float* bias = r == 0 && !w.bias.empty() ? w.bias.data() : nullptr;  // once, before the all-reduce
  cpu::gemm(false, true, T, N, K, 1.f, in, K, at(w, sh.begin), w.dtype, w.in, 0.f, rk.part.data(), N, bias,
            *rk.pool, cpu::MatmulPrecision::Highest, true);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  if (m.tape_.dropout) {
    fit(rt.mask[t], T * w.in);
    dropout_mask(rt.mask[t].data(), T * w.in, a->spec.lora.dropout, a->spec.lora.seed, m.tape_.counter, l, t);
  }
  const float* xd = dropped(m, r, rt, in, t, sh.begin, K, w.in, T);
  fit(rt.u[t], T * R);  // u = Σ_ranks x_r·A_rᵀ, kept whole for dB
  cpu::sgemm(false, true, T, R, K, 1.f, xd, K, lm->A.data() + sh.begin, w.in, 0.f, rt.u[t].data(), R, *rk.pool);
  ranks_.comm(r).all_reduce_sum(rt.u[t].data(), T * R, DType::F32);
  if (r == 0)  // B is replicated: its product is added once, before the all-reduce of part
    cpu::sgemm(false, true, T, N, R, a->scale, rt.u[t].data(), R, lm->B.data(), R, 1.f, rk.part.data(), N,
               *rk.pool);
}

void TensorParallel::train_attention(Model& m, int r, LayerTape& rt, const LayerTape& tp, int64_t l, int64_t T) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  Rank& rk = rank_[r];
  ThreadPool& pool = *rk.pool;
  const int64_t HD = s.HD, NH = rk.heads.size(), NKV = rk.kv_heads.size(), QD = NH * HD, KD = NKV * HD;
  fit(rt.q, T * QD), fit(rt.k, T * KD), fit(rt.v, T * KD), fit(rt.att, T * QD), fit(rt.lse, T * NH);
  const Slice qs{rk.heads.begin * HD, rk.heads.end * HD}, ks{rk.kv_heads.begin * HD, rk.kv_heads.end * HD};
  train_column(m, r, rt, rt.q.data(), tp.xn1.data(), l, kQ, qs, T);
  train_column(m, r, rt, rt.k.data(), tp.xn1.data(), l, kK, ks, T);
  train_column(m, r, rt, rt.v.data(), tp.xn1.data(), l, kV, ks, T);
  if (s.qk_norm) {
    fit(rt.q_raw, T * QD), fit(rt.k_raw, T * KD);
    std::copy_n(rt.q.data(), T * QD, rt.q_raw.data());
    std::copy_n(rt.k.data(), T * KD, rt.k_raw.data());
    cpu::rmsnorm_forward(rt.q.data(), rt.q.data(), w.q_norm.data(), T * NH, HD, s.eps, pool);
    cpu::rmsnorm_forward(rt.k.data(), rt.k.data(), w.k_norm.data(), T * NKV, HD, s.eps, pool);
  }
  cpu::rope_forward(rt.q.data(), m.tape_.cos.data(), m.tape_.sin.data(), T, NH, HD, pool);
  cpu::rope_forward(rt.k.data(), m.tape_.cos.data(), m.tape_.sin.data(), T, NKV, HD, pool);
  const std::vector<int32_t>& counts = m.tape_.counts;
  for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(counts.size()); t0 += counts[sq++])
    cpu::attention_train_forward(rt.att.data() + t0 * QD, rt.lse.data() + t0 * NH, rt.q.data() + t0 * QD,
                                 rt.k.data() + t0 * KD, rt.v.data() + t0 * KD, counts[sq], NH, NKV, HD, s.window(l),
                                 pool);
  train_row(m, r, rt, rt.att.data(), l, kO, qs, T);
}

void TensorParallel::train_mlp(Model& m, int r, LayerTape& rt, const LayerTape& tp, int64_t l, int64_t T) {
  Rank& rk = rank_[r];
  const int64_t I = rk.mlp.size();
  fit(rt.gate, T * I), fit(rt.up, T * I), fit(rt.h, T * I);
  train_column(m, r, rt, rt.gate.data(), tp.xn2.data(), l, kGate, rk.mlp, T);
  train_column(m, r, rt, rt.up.data(), tp.xn2.data(), l, kUp, rk.mlp, T);
  cpu::swiglu_forward(rt.h.data(), rt.gate.data(), rt.up.data(), T * I, *rk.pool);
  train_row(m, r, rt, rt.h.data(), l, kDown, rk.mlp, T);
}

void TensorParallel::train_layer_forward(Model& m, int64_t l, const float* x, float* x_out, LayerTape& tp) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  const int64_t T = static_cast<int64_t>(m.tape_.tokens.size()), C = s.C;
  ThreadPool& pool = *m.pool_;
  fit(tp.xn1, T * C), fit(tp.x_mid, T * C), fit(tp.xn2, T * C);
  tp.ranks.resize(static_cast<size_t>(n_));
  cpu::rmsnorm_forward(tp.xn1.data(), x, w.attn_norm.data(), T, C, s.eps, pool);
  run_ranks([&](int r) {
    train_attention(m, r, tp.ranks[r], tp, l, T);
    ranks_.comm(r).all_reduce_sum(rank_[r].part.data(), T * C, DType::F32);
  });
  cpu::residual_forward(tp.x_mid.data(), rank_[0].part.data(), x, T * C);
  cpu::rmsnorm_forward(tp.xn2.data(), tp.x_mid.data(), w.mlp_norm.data(), T, C, s.eps, pool);
  run_ranks([&](int r) {
    train_mlp(m, r, tp.ranks[r], tp, l, T);
    ranks_.comm(r).all_reduce_sum(rank_[r].part.data(), T * C, DType::F32);
  });
  cpu::residual_forward(x_out, rank_[0].part.data(), tp.x_mid.data(), T * C);
}

// ---- backward ----------------------------------------------------------------------


void TensorParallel::column_backward(Model& m, int r, const LayerTape& rt, float* dx, float beta, const float* dy,
                                     const float* x, int64_t l, int t, Slice sh, int64_t T) {
  Rank& rk = rank_[r];
  ThreadPool& pool = *rk.pool;
  const Linear& w = m.layers_[l].at(t);
  const int64_t O = sh.size(), K = w.in;
  float* dw = m.trainable_.grad_for(w.w);
  float* db = w.bias.empty() ? nullptr : m.trainable_.grad_for(w.bias.data());
  if (dw || db)  // this rank's rows of dW and entries of db
    cpu::matmul_backward(nullptr, dw ? dw + sh.begin * K : nullptr, db ? db + sh.begin : nullptr, dy, x,
                         at(w, sh.begin * K), w.dtype, T, O, K, pool);
  cpu::gemm(false, false, T, K, O, 1.f, dy, O, at(w, sh.begin * K), w.dtype, K, beta, dx, K, nullptr, pool);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  const float s = a->scale;
  fit(rk.du, T * R);
  cpu::sgemm(false, false, T, R, O, s, dy, O, lm->B.data() + sh.begin * R, R, 0.f, rk.du.data(), R, pool);
  if (float* dB = m.trainable_.grad_for(lm->B.data()))
    cpu::sgemm(true, false, O, R, T, s, dy, O, rt.u[t].data(), R, 1.f, dB + sh.begin * R, R, pool);
  // du is a sum over the ranks' output slices; A is replicated, so rank 0 applies the total
  ranks_.comm(r).all_reduce_sum(rk.du.data(), T * R, DType::F32);
  if (r != 0) return;
  if (float* dA = m.trainable_.grad_for(lm->A.data()))
    cpu::sgemm(true, false, R, K, T, 1.f, rk.du.data(), R, dropped(m, r, rt, x, t, 0, K, K, T), K, 1.f, dA, K, pool);
  if (!m.tape_.dropout) {
    cpu::sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, lm->A.data(), K, 1.f, dx, K, pool);
    return;
  }
  fit(rk.dxd, T * K);
  cpu::sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, lm->A.data(), K, 0.f, rk.dxd.data(), K, pool);
  const float* mask = rt.mask[t].data();
  for (int64_t i = 0; i < T * K; i++) dx[i] += rk.dxd[i] * mask[i];
}

void TensorParallel::row_backward(Model& m, int r, const LayerTape& rt, float* dx, const float* dy, const float* x,
                                  int64_t l, int t, Slice sh, int64_t T) {
  Rank& rk = rank_[r];
  ThreadPool& pool = *rk.pool;
  const Linear& w = m.layers_[l].at(t);
  const int64_t K = sh.size(), N = w.out, ld = w.in;
  if (float* dw = m.trainable_.grad_for(w.w))  // this rank's columns of dW
    cpu::gemm(true, false, N, K, T, 1.f, dy, N, x, DType::F32, K, 1.f, dw + sh.begin, ld, nullptr, pool);
  if (float* db = w.bias.empty() ? nullptr : m.trainable_.grad_for(w.bias.data()); db && r == 0)  // dy is replicated
    cpu::matmul_backward(nullptr, nullptr, db, dy, x, w.w, w.dtype, T, N, K, pool);
  cpu::gemm(false, false, T, K, N, 1.f, dy, N, at(w, sh.begin), w.dtype, ld, 0.f, dx, K, nullptr, pool);
  const LoraMats* lm = lora_of(m, l, t);
  if (!lm) return;
  const Adapter* a = m.tape_.adapter;
  const int64_t R = a->spec.lora.rank;
  const float s = a->scale;
  fit(rk.du, T * R);  // du = s·dy·B: dy and B are replicated, so du is too
  cpu::sgemm(false, false, T, R, N, s, dy, N, lm->B.data(), R, 0.f, rk.du.data(), R, pool);
  if (float* dB = m.trainable_.grad_for(lm->B.data()); dB && r == 0)
    cpu::sgemm(true, false, N, R, T, s, dy, N, rt.u[t].data(), R, 1.f, dB, R, pool);
  if (float* dA = m.trainable_.grad_for(lm->A.data()))
    cpu::sgemm(true, false, R, K, T, 1.f, rk.du.data(), R, dropped(m, r, rt, x, t, sh.begin, K, ld, T), K, 1.f,
               dA + sh.begin, ld, pool);
  if (!m.tape_.dropout) {
    cpu::sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, lm->A.data() + sh.begin, ld, 1.f, dx, K, pool);
    return;
  }
  fit(rk.dxd, T * K);
  cpu::sgemm(false, false, T, K, R, 1.f, rk.du.data(), R, lm->A.data() + sh.begin, ld, 0.f, rk.dxd.data(), K, pool);
  const float* mask = rt.mask[t].data();
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < K; j++) dx[i * K + j] += rk.dxd[i * K + j] * mask[i * ld + sh.begin + j];
}

void TensorParallel::train_layer_backward(Model& m, int64_t l, float* dy, const float* x, const LayerTape& tp) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  const int64_t T = static_cast<int64_t>(m.tape_.tokens.size()), C = s.C, HD = s.HD;
  ThreadPool& pool = *m.pool_;
  // MLP block: x_out = x_mid + down(swiglu(gate(xn2), up(xn2)))
  run_ranks([&](int r) {
    Rank& rk = rank_[r];
    const LayerTape& rt = tp.ranks[r];
    const int64_t I = rk.mlp.size();
    fit(rk.dh, T * I), fit(rk.dup, T * I), fit(rk.part, T * C);
    row_backward(m, r, rt, rk.dh.data(), dy, rt.h.data(), l, kDown, rk.mlp, T);
    cpu::swiglu_backward(rk.dh.data(), rk.dup.data(), rk.dh.data(), rt.gate.data(), rt.up.data(), T * I, *rk.pool);
    column_backward(m, r, rt, rk.part.data(), 0.f, rk.dh.data(), tp.xn2.data(), l, kGate, rk.mlp, T);
    column_backward(m, r, rt, rk.part.data(), 1.f, rk.dup.data(), tp.xn2.data(), l, kUp, rk.mlp, T);
    ranks_.comm(r).all_reduce_sum(rk.part.data(), T * C, DType::F32);
  });
  float* dxn = rank_[0].part.data();
  cpu::rmsnorm_backward(dxn, m.trainable_.grad_for(w.mlp_norm.data()), dxn, tp.x_mid.data(), w.mlp_norm.data(), T,
                        C, s.eps, pool);
  for (int64_t i = 0; i < T * C; i++) dy[i] += dxn[i];  // dy is now dL/dx_mid
  // attention block: x_mid = x + o(attention(rope(norm(q)), rope(norm(k)), v))
  float* dqn = m.trainable_.grad_for(w.q_norm.data());
  float* dkn = m.trainable_.grad_for(w.k_norm.data());
  run_ranks([&](int r) {
    Rank& rk = rank_[r];
    const LayerTape& rt = tp.ranks[r];
    ThreadPool& rp = *rk.pool;
    const int64_t NH = rk.heads.size(), NKV = rk.kv_heads.size(), QD = NH * HD, KD = NKV * HD;
    const Slice qs{rk.heads.begin * HD, rk.heads.end * HD}, ks{rk.kv_heads.begin * HD, rk.kv_heads.end * HD};
    fit(rk.datt, T * QD), fit(rk.dq, T * QD), fit(rk.dk, T * KD), fit(rk.dv, T * KD), fit(rk.part, T * C);
    row_backward(m, r, rt, rk.datt.data(), dy, rt.att.data(), l, kO, qs, T);
    const std::vector<int32_t>& counts = m.tape_.counts;
    for (int64_t sq = 0, t0 = 0; sq < static_cast<int64_t>(counts.size()); t0 += counts[sq++])
      cpu::attention_backward(rk.dq.data() + t0 * QD, rk.dk.data() + t0 * KD, rk.dv.data() + t0 * KD,
                              rk.datt.data() + t0 * QD, rt.q.data() + t0 * QD, rt.k.data() + t0 * KD,
                              rt.v.data() + t0 * KD, rt.lse.data() + t0 * NH, counts[sq], NH, NKV, HD, s.window(l),
                              rp);
    cpu::rope_backward(rk.dq.data(), m.tape_.cos.data(), m.tape_.sin.data(), T, NH, HD, rp);
    cpu::rope_backward(rk.dk.data(), m.tape_.cos.data(), m.tape_.sin.data(), T, NKV, HD, rp);
    if (s.qk_norm) {  // the norms are replicated: each rank's share of their gradient is summed
      rk.dnorm.assign(static_cast<size_t>(2 * HD), 0.f);
      cpu::rmsnorm_backward(rk.dq.data(), dqn ? rk.dnorm.data() : nullptr, rk.dq.data(), rt.q_raw.data(),
                            w.q_norm.data(), T * NH, HD, s.eps, rp);
      cpu::rmsnorm_backward(rk.dk.data(), dkn ? rk.dnorm.data() + HD : nullptr, rk.dk.data(), rt.k_raw.data(),
                            w.k_norm.data(), T * NKV, HD, s.eps, rp);
      if (dqn || dkn) ranks_.comm(r).all_reduce_sum(rk.dnorm.data(), 2 * HD, DType::F32);
    }
    column_backward(m, r, rt, rk.part.data(), 0.f, rk.dq.data(), tp.xn1.data(), l, kQ, qs, T);
    column_backward(m, r, rt, rk.part.data(), 1.f, rk.dk.data(), tp.xn1.data(), l, kK, ks, T);
    column_backward(m, r, rt, rk.part.data(), 1.f, rk.dv.data(), tp.xn1.data(), l, kV, ks, T);
    ranks_.comm(r).all_reduce_sum(rk.part.data(), T * C, DType::F32);
  });
  if (s.qk_norm)
    for (int64_t i = 0; i < HD; i++) {
      if (dqn) dqn[i] += rank_[0].dnorm[i];
      if (dkn) dkn[i] += rank_[0].dnorm[HD + i];
    }
  cpu::rmsnorm_backward(dxn, m.trainable_.grad_for(w.attn_norm.data()), dxn, x, w.attn_norm.data(), T, C, s.eps,
                        pool);
  for (int64_t i = 0; i < T * C; i++) dy[i] += dxn[i];  // dL/dx
}

}  // namespace hc
