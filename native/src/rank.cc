#include "rank.h"

#include <algorithm>
#include <exception>
#include <string>

#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "dist/comm_threads.h"
#include "dist/communicator.h"
#include "errors.h"
#include "model.h"

namespace hc {

static void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

static Slice slice(int64_t n, int r, int ranks) { return {n / ranks * r, n / ranks * (r + 1)}; }

const void* TensorParallel::at(const Linear& w, int64_t elements) {
  // a quantized weight splits only at whole blocks (32 weights; q4_k 256)
  if (elements % block_elems(w.dtype) != 0)
    throw Error("bad_tensor_parallel", "a rank's slice of a quantized weight starts inside a block of " + std::to_string(block_elems(w.dtype)) + " (element " +
                                           std::to_string(elements) + "); use a tensor parallel size that keeps slices whole blocks");
  return static_cast<const char*>(w.w) + dtype_bytes(w.dtype, elements);
}

void TensorParallel::check(const ModelSpec& s, int ranks) {
  if (ranks < 1) throw Error("bad_tensor_parallel", "tensor parallel size must be at least 1");
  if (s.NKV % ranks != 0 || s.NH % ranks != 0 || s.I % ranks != 0)
    throw Error("bad_tensor_parallel", "tensor parallel size " + std::to_string(ranks) +
                                           " must divide the key/value heads (" + std::to_string(s.NKV) +
                                           "), the attention heads (" + std::to_string(s.NH) +
                                           ") and the MLP width (" + std::to_string(s.I) + ")");
}

TensorParallel::TensorParallel(const ModelSpec& s, int ranks, int threads) : n_(ranks), ranks_(ranks) {
  check(s, ranks);
  // the cores are shared out: ranks × per-rank threads ≈ threads
  const int per = std::max(1, threads / ranks);
  rank_.resize(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; r++) {
    Rank& rk = rank_[r];
    rk.pool = std::make_unique<ThreadPool>(per);
    rk.heads = slice(s.NH, r, ranks);
    rk.kv_heads = slice(s.NKV, r, ranks);
    rk.mlp = slice(s.I, r, ranks);
  }
}

TensorParallel::~TensorParallel() = default;

void TensorParallel::run_ranks(const std::function<void(int)>& fn) { ranks_.run(fn); }

void TensorParallel::column(Rank& rk, float* out, const float* in, const Linear& w, Slice sh, int64_t l, int t,
                            const std::vector<LoraApp>& apps, int64_t T) {
  const int64_t O = sh.size();
  cpu::gemm(false, true, T, O, w.in, 1.f, in, w.in, at(w, sh.begin * w.in), w.dtype, w.in, 0.f, out, O,
            w.bias.empty() ? nullptr : w.bias.data() + sh.begin, *rk.pool);
  for (const LoraApp& ap : apps) {  // u = x·Aᵀ whole (A is replicated), then B's row slice
    const LoraMats& lm = ap.a->at(l, t);
    if (!lm.on()) continue;
    const int64_t r = ap.a->spec.lora.rank, R = ap.r1 - ap.r0;
    grow(rk.u, R * r);
    cpu::sgemm(false, true, R, r, lm.in, 1.f, in + ap.r0 * lm.in, lm.in, lm.A.data(), lm.in, 0.f, rk.u.data(), r,
               *rk.pool);
    cpu::sgemm(false, true, R, O, r, ap.sign * ap.a->scale, rk.u.data(), r, lm.B.data() + sh.begin * r, r, 1.f,
               out + ap.r0 * O, O, *rk.pool);
  }
}

void TensorParallel::row(Rank& rk, const float* in, const Linear& w, Slice sh, int64_t l, int t,
                         const std::vector<LoraApp>& apps, int64_t T) {
  const int64_t K = sh.size(), N = w.out;
  grow(rk.part, T * N);
  // the bias is added once, by rank 0, to the partial sums the all-reduce adds up
  const float* bias = &rk == &rank_[0] && !w.bias.empty() ? w.bias.data() : nullptr;
  cpu::gemm(false, true, T, N, K, 1.f, in, K, at(w, sh.begin), w.dtype, w.in, 0.f, rk.part.data(), N, bias,
            *rk.pool);
  for (const LoraApp& ap : apps) {  // u_r = x_r·A[:, shard]ᵀ; Σ_r u_r·Bᵀ is summed by the all-reduce
    const LoraMats& lm = ap.a->at(l, t);
    if (!lm.on()) continue;
    const int64_t r = ap.a->spec.lora.rank, R = ap.r1 - ap.r0;
    grow(rk.u, R * r);
    cpu::sgemm(false, true, R, r, K, 1.f, in + ap.r0 * K, K, lm.A.data() + sh.begin, lm.in, 0.f, rk.u.data(), r,
               *rk.pool);
    cpu::sgemm(false, true, R, N, r, ap.sign * ap.a->scale, rk.u.data(), r, lm.B.data(), r, 1.f,
               rk.part.data() + ap.r0 * N, N, *rk.pool);
  }
}

void TensorParallel::attention(Model& m, Rank& rk, int64_t l, const KVCache::Reservation& res,
                               const std::vector<LoraApp>& apps, int64_t T) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  const int64_t HD = s.HD, NH = rk.heads.size(), NKV = rk.kv_heads.size(), QD = NH * HD, KD = NKV * HD;
  const float* xn = m.act_xn_;
  ThreadPool& pool = *rk.pool;
  grow(rk.q, T * QD), grow(rk.k, T * KD), grow(rk.v, T * KD), grow(rk.att, T * QD);
  column(rk, rk.q.data(), xn, w.q, {rk.heads.begin * HD, rk.heads.end * HD}, l, kQ, apps, T);
  column(rk, rk.k.data(), xn, w.k, {rk.kv_heads.begin * HD, rk.kv_heads.end * HD}, l, kK, apps, T);
  column(rk, rk.v.data(), xn, w.v, {rk.kv_heads.begin * HD, rk.kv_heads.end * HD}, l, kV, apps, T);
  if (s.qk_norm) {
    cpu::rmsnorm_forward(rk.q.data(), rk.q.data(), w.q_norm.data(), T * NH, HD, s.eps, pool);
    cpu::rmsnorm_forward(rk.k.data(), rk.k.data(), w.k_norm.data(), T * NKV, HD, s.eps, pool);
  }
  cpu::rope_forward(rk.q.data(), m.act_cos_, m.act_sin_, T, NH, HD, pool);
  cpu::rope_forward(rk.k.data(), m.act_cos_, m.act_sin_, T, NKV, HD, pool);
  KVCache& kv = *m.kv_;
  const int64_t bstride = kv.block_stride(), hstride = kv.head_stride(), bs = kv.block_size();
  // this rank's KV heads inside every block of the shared pool
  float* kl = kv.k() + l * kv.layer_stride() + rk.kv_heads.begin * hstride;
  float* vl = kv.v() + l * kv.layer_stride() + rk.kv_heads.begin * hstride;
  for (int64_t t = 0; t < T; t++) {
    const auto& table = res.tables[m.seq_of_[t]];
    const int64_t p = m.pos_[t];
    const int64_t off = static_cast<int64_t>(table[p / bs]) * bstride + (p % bs) * HD;
    for (int64_t g = 0; g < NKV; g++) {
      std::copy_n(rk.k.data() + t * KD + g * HD, HD, kl + off + g * hstride);
      std::copy_n(rk.v.data() + t * KD + g * HD, HD, vl + off + g * hstride);
    }
  }
  std::vector<cpu::KVSpan> spans(res.tables.size());
  for (size_t sq = 0; sq < spans.size(); sq++)
    spans[sq] = cpu::KVSpan{kl, vl, res.tables[sq].data(), bstride, hstride, HD, bs};
  cpu::attention_forward(rk.att.data(), rk.q.data(), spans.data(), m.seq_of_.data(), m.npos_.data(), T, NH, NKV, HD,
                         s.window(l), pool);
  row(rk, rk.att.data(), w.o, {rk.heads.begin * HD, rk.heads.end * HD}, l, kO, apps, T);
}

void TensorParallel::mlp(Model& m, Rank& rk, int64_t l, const std::vector<LoraApp>& apps, int64_t T) {
  const LayerWeights& w = m.layers_[l];
  const int64_t I = rk.mlp.size();
  grow(rk.gate, T * I), grow(rk.up, T * I);
  column(rk, rk.gate.data(), m.act_xn_, w.gate, rk.mlp, l, kGate, apps, T);
  column(rk, rk.up.data(), m.act_xn_, w.up, rk.mlp, l, kUp, apps, T);
  cpu::swiglu_forward(rk.gate.data(), rk.gate.data(), rk.up.data(), T * I, *rk.pool);
  row(rk, rk.gate.data(), w.down, rk.mlp, l, kDown, apps, T);
}

void TensorParallel::layer_forward(Model& m, int64_t l, const KVCache::Reservation& res,
                                   const std::vector<LoraApp>& apps, int64_t T) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  float* x = m.act_x_;
  float* xn = m.act_xn_;
  const int64_t C = s.C;
  // the norms and residuals are replicated work on the shared stream, done once
  cpu::rmsnorm_forward(xn, x, w.attn_norm.data(), T, C, s.eps, *m.pool_);
  run_ranks([&](int r) {
    attention(m, rank_[r], l, res, apps, T);
    ranks_.comm(r).all_reduce_sum(rank_[r].part.data(), T * C, DType::F32);
  });
  cpu::residual_forward(x, x, rank_[0].part.data(), T * C);
  cpu::rmsnorm_forward(xn, x, w.mlp_norm.data(), T, C, s.eps, *m.pool_);
  run_ranks([&](int r) {
    mlp(m, rank_[r], l, apps, T);
    ranks_.comm(r).all_reduce_sum(rank_[r].part.data(), T * C, DType::F32);
  });
  cpu::residual_forward(x, x, rank_[0].part.data(), T * C);
}

}  // namespace hc
