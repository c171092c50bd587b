#include "rank.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <string>

#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "dist/comm_threads.h"
#include "dist/communicator.h"
#include "dist/nccl_devices.h"
#include "errors.h"
#include "model.h"

namespace hc {

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

void TensorParallel::attach(Model& m, bool cuda) {
  if (!cuda) {
    // every rank's view of the shared host pool starts at its first KV head
    KVCache& kv = *m.kv_;
    for (int r = 0; r < n_; r++) {
      Rank& rk = rank_[r];
      const int64_t off = rk.kv_heads.begin * kv.head_stride();
      rk.kv = m.kv_geo_;
      owned_.push_back(make_cpu_exec(*rk.pool, kv.k(off), kv.v(off), rk.kv, cpu::MatmulPrecision::Highest));
      rk.exec = owned_.back().get();
    }
    return;
  }
  device_ranks_ = std::make_unique<dist::RankLauncher>(n_, dist::nccl_device_comms(n_));
  for (int r = 0; r < n_; r++) {
    Rank& rk = rank_[r];
    rk.kv = kv_geometry(m.kv_geo_, r);
    if (r == 0) {
      rk.exec = m.exec_.get();
    } else {
      owned_.push_back(make_cuda_exec(r, rk.kv));
      rk.exec = owned_.back().get();
    }
  }
}

KvGeometry TensorParallel::kv_geometry(const KvGeometry& whole, int r) const {
  KvGeometry g = whole;
  g.layer_stride = rank_[r].kv_heads.size() * whole.head_stride;
  g.block_stride = whole.layers * g.layer_stride;
  return g;
}

void TensorParallel::weights_changed() {
  for (auto& e : owned_) e->weights_changed();
}

const void* TensorParallel::column_shard(Exec& ex, const Linear& w, Slice sh) {
  return ex.weight(at(w, sh.begin * w.in), dtype_bytes(w.dtype, sh.size() * w.in), w.w != w.map);
}

Exec::View TensorParallel::row_shard(Exec& ex, const Linear& w, Slice sh) {
  at(w, sh.begin);  // refuses a quantized shard that would start inside a block
  return ex.weight_columns(w.w, w.dtype, w.out, w.in, sh.begin, sh.end, w.w != w.map);
}

const float* TensorParallel::vec(Exec& ex, const std::vector<float>& v, int64_t begin, int64_t n) {
  if (v.empty()) return nullptr;
  if (n < 0) n = static_cast<int64_t>(v.size()) - begin;
  return static_cast<const float*>(ex.weight(v.data() + begin, n * 4, true));
}

void TensorParallel::upload(Model& m) {
  if (!device_ranks_) return;
  const ModelSpec& s = m.spec_;
  device_ranks_->run([&](int r) {
    Rank& rk = rank_[r];
    Exec& ex = *rk.exec;
    ex.bind();
    ex.weight(m.embed_, dtype_bytes(m.embed_dtype_, s.V * s.C), !m.embed_owned_.empty());
    vec(ex, s.inv_freq);
    const Slice q{rk.heads.begin * s.HD, rk.heads.end * s.HD}, kv{rk.kv_heads.begin * s.HD, rk.kv_heads.end * s.HD};
    for (const LayerWeights& w : m.layers_) {
      for (const std::vector<float>* v : {&w.attn_norm, &w.mlp_norm, &w.q_norm, &w.k_norm}) vec(ex, *v);
      for (const auto& [lin, sh] : {std::pair<const Linear*, Slice>{&w.q, q}, {&w.k, kv}, {&w.v, kv}, {&w.gate, rk.mlp}, {&w.up, rk.mlp}}) {
        column_shard(ex, *lin, sh);
        vec(ex, lin->bias, sh.begin, sh.size());
      }
      row_shard(ex, w.o, q), vec(ex, w.o.bias);
      row_shard(ex, w.down, rk.mlp), vec(ex, w.down.bias);
    }
  });
}

void TensorParallel::column(Exec& ex, float* out, const float* in, const Linear& w, Slice sh, int64_t l, int t,
                            const LoraPlan& lp, int64_t T) {
  const int64_t O = sh.size();
  ex.linear_ld(out, in, column_shard(ex, w, sh), w.dtype, w.in, vec(ex, w.bias, sh.begin, O), T, O, w.in);
  Model::lora_apply(ex, out, in, l, t, lp, T, O, w.in);  // x·Aᵀ whole (A replicated), then B's row slice
}

void TensorParallel::row(Exec& ex, bool first, float* part, const float* in, const Linear& w, Slice sh, int64_t l,
                         int t, const LoraPlan& lp, int64_t T) {
  const int64_t K = sh.size(), N = w.out;
  const Exec::View v = row_shard(ex, w, sh);
  // the bias is added once, by rank 0, to the partial sums the all-reduce adds up
  ex.linear_ld(part, in, v.w, w.dtype, v.ld, first ? vec(ex, w.bias) : nullptr, T, N, K);
  // u_r = x_r·A[:, shard]ᵀ (the entry's A strided); Σ_r u_r·Bᵀ is summed by the all-reduce
  Model::lora_apply(ex, part, in, l, t, lp, T, N, K);
}

void TensorParallel::attention(Model& m, int r, int64_t l, const LoraPlan& lp, int64_t T, int64_t nseq, int64_t maxb,
                               float* part) {
  const ModelSpec& s = m.spec_;
  const LayerWeights& w = m.layers_[l];
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  const int64_t HD = s.HD, NH = rk.heads.size(), NKV = rk.kv_heads.size(), QD = NH * HD, KD = NKV * HD;
  const float* xn = ex.scratch(Slot::Xn, T * s.C);
  float *q = ex.scratch(Slot::Q, T * QD), *k = ex.scratch(Slot::K, T * KD), *v = ex.scratch(Slot::V, T * KD);
  float* att = ex.scratch(Slot::Att, T * QD);
  column(ex, q, xn, w.q, {rk.heads.begin * HD, rk.heads.end * HD}, l, kQ, lp, T);
  column(ex, k, xn, w.k, {rk.kv_heads.begin * HD, rk.kv_heads.end * HD}, l, kK, lp, T);
  column(ex, v, xn, w.v, {rk.kv_heads.begin * HD, rk.kv_heads.end * HD}, l, kV, lp, T);
  if (s.qk_norm) {
    ex.rmsnorm(q, q, vec(ex, w.q_norm), T * NH, HD, s.eps);
    ex.rmsnorm(k, k, vec(ex, w.k_norm), T * NKV, HD, s.eps);
  }
  const float *cos_t = ex.scratch(Slot::Cos, T * HD / 2), *sin_t = ex.scratch(Slot::Sin, T * HD / 2);
  ex.rope_qk(q, k, cos_t, sin_t, T, NH, NKV, HD);
  // this rank's KV heads: its slice of the shared host pool, or its device's own pool
  void *kl = ex.kv_k(l), *vl = ex.kv_v(l);
  ex.kv_write(kl, vl, k, v, rk.step.tables, maxb, rk.step.seq_of, rk.step.pos, T, NKV, HD, rk.kv);
  ex.paged_attention(att, q, kl, vl, rk.step.tables, maxb, nseq, rk.step.seq_of, rk.step.npos, T, NH, NKV, HD, rk.kv,
                     s.window(l));
  row(ex, r == 0, part, att, w.o, {rk.heads.begin * HD, rk.heads.end * HD}, l, kO, lp, T);
}

void TensorParallel::mlp(Model& m, int r, int64_t l, const LoraPlan& lp, int64_t T, float* part) {
  const LayerWeights& w = m.layers_[l];
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  const int64_t I = rk.mlp.size();
  const float* xn = ex.scratch(Slot::Xn, T * m.spec_.C);
  float *gate = ex.scratch(Slot::Gate, T * I), *up = ex.scratch(Slot::Up, T * I);
  column(ex, gate, xn, w.gate, rk.mlp, l, kGate, lp, T);
  column(ex, up, xn, w.up, rk.mlp, l, kUp, lp, T);
  ex.swiglu(gate, gate, up, T * I);
  row(ex, r == 0, part, gate, w.down, rk.mlp, l, kDown, lp, T);
}

// A failure point for tests of a group that loses a rank mid-step: with
// HYBRIDCHAT_TEST_FAIL_TP_RANK=r, serving rank r throws before its half-way layer's first
// all-reduce, while the other ranks wait in it. -1: none.
static int64_t injected_failure_layer(int rank, int64_t layers) {
  const char* e = std::getenv("HYBRIDCHAT_TEST_FAIL_TP_RANK");
  return e != nullptr && *e != '\0' && std::atoi(e) == rank ? layers / 2 : -1;
}

void TensorParallel::rank_forward(Model& m, int r, const std::vector<int32_t>& tokens, const LoraRows& lora,
                                  int64_t T, int64_t nseq, int64_t maxb) {
  const ModelSpec& s = m.spec_;
  Rank& rk = rank_[r];
  Exec& ex = *rk.exec;
  ex.bind();
  const int64_t C = s.C, HD = s.HD;
  // the step's indexing into this rank's memory (a device copy each; the host arrays on the CPU)
  rk.step.pos = ex.ints(ISlot::Pos, m.pos_.data(), T);
  rk.step.seq_of = ex.ints(ISlot::SeqOf, m.seq_of_.data(), T);
  rk.step.npos = ex.ints(ISlot::Npos, m.npos_.data(), T);
  rk.step.tables = ex.ints(ISlot::Tables, m.tables_.data(), static_cast<int64_t>(m.tables_.size()));
  // the step's LoRA table on this rank: its shard of every adapter's B (column-parallel
  // linears) or A (row-parallel ones)
  LoraShard sh;
  sh.b_row[kQ] = rk.heads.begin * HD;
  sh.b_row[kK] = sh.b_row[kV] = rk.kv_heads.begin * HD;
  sh.b_row[kGate] = sh.b_row[kUp] = rk.mlp.begin;
  sh.a_col[kO] = rk.heads.begin * HD;
  sh.a_col[kDown] = rk.mlp.begin;
  const LoraPlan lp = m.lora_plan(ex, lora, sh, T, rk.lora_entries);
  // every rank keeps its own copy of the residual stream: the norms, residual adds and the
  // embedding are replicated work, so the only traffic is the two all-reduces per layer
  float *x = ex.scratch(Slot::X, T * C), *xn = ex.scratch(Slot::Xn, T * C), *part = ex.scratch(Slot::Tmp, T * C);
  ex.rope_tables(ex.scratch(Slot::Cos, T * HD / 2), ex.scratch(Slot::Sin, T * HD / 2), rk.step.pos, vec(ex, s.inv_freq),
                 T, HD / 2, s.rope_scaling);
  ex.embedding(x, ex.ints(ISlot::Tokens, tokens.data(), T),
               ex.weight(m.embed_, dtype_bytes(m.embed_dtype_, s.V * C), !m.embed_owned_.empty()), m.embed_dtype_, T, C);
  dist::Communicator& comm = TensorParallel::comm(r);
  const int64_t fail_at = injected_failure_layer(r, s.L);
  // each residual add fused with the next pre-norm, as Model::forward does
  ex.rmsnorm(xn, x, vec(ex, m.layers_[0].attn_norm), T, C, s.eps);
  for (int64_t l = 0; l < s.L; l++) {
    const LayerWeights& w = m.layers_[l];
    attention(m, r, l, lp, T, nseq, maxb, part);
    if (l == fail_at)
      throw Error("injected_failure", "rank " + std::to_string(r) + " failed mid-step (HYBRIDCHAT_TEST_FAIL_TP_RANK)");
    comm.all_reduce_sum(part, T * C, DType::F32);
    ex.residual_rmsnorm(x, xn, part, vec(ex, w.mlp_norm), T, C, s.eps);
    mlp(m, r, l, lp, T, part);
    comm.all_reduce_sum(part, T * C, DType::F32);
    if (l + 1 < s.L) ex.residual_rmsnorm(x, xn, part, vec(ex, m.layers_[l + 1].attn_norm), T, C, s.eps);
    else ex.residual(x, x, part, T * C);
  }
}

float* TensorParallel::forward(Model& m, const std::vector<int32_t>& tokens, const LoraRows& lora, int64_t T,
                               int64_t nseq, int64_t maxb) {
  run_ranks([&](int r) { rank_forward(m, r, tokens, lora, T, nseq, maxb); });
  return rank_[0].exec->scratch(Slot::X, T * m.spec_.C);
}

}  // namespace hc
