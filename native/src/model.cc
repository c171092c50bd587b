#include "model.h"

#include <algorithm>
#include <set>

#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "errors.h"

namespace hc {

static void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

Model::Model(const ModelSpec& s, const std::vector<TensorDesc>& tensors, const ModelOptions& opts)
    : spec_(s), store_(tensors) {
  if (s.C <= 0 || s.I <= 0 || s.L <= 0 || s.NH <= 0 || s.NKV <= 0 || s.HD <= 0 || s.V <= 0)
    throw Error("bad_spec", "model dimensions must be positive");
  if (s.HD % 2 != 0) throw Error("bad_spec", "head_dim must be even for RoPE");
  if (s.NH % s.NKV != 0) throw Error("bad_spec", "num_heads must be a multiple of num_kv_heads");
  if (!s.windows.empty() && static_cast<int64_t>(s.windows.size()) != s.L)
    throw Error("bad_spec", "layerWindows must hold one entry per layer (" + std::to_string(s.L) + ")");
  for (int32_t w : s.windows)
    if (w < 0) throw Error("bad_spec", "layerWindows entries must be >= 0 (0 = full attention)");
  if (static_cast<int64_t>(s.inv_freq.size()) != s.HD / 2)
    throw Error("bad_spec", "ropeInvFreq must hold head_dim/2 = " + std::to_string(s.HD / 2) + " values");
  const int64_t C = s.C, I = s.I, QD = s.NH * s.HD, KD = s.NKV * s.HD;
  std::set<std::string> used;
  auto lin = [&](const std::string& name, int64_t out, int64_t in, const std::string& bias) {
    const Tensor& t = store_.get(name, {out, in});
    used.insert(name);
    Linear l;
    l.w = l.map = t.data;
    l.dtype = l.map_dtype = t.dtype;
    l.out = out;
    l.in = in;
    if (!bias.empty()) {
      l.bias = store_.f32(bias, {out});
      used.insert(bias);
    }
    return l;
  };
  auto vec = [&](const std::string& name, int64_t n) {
    used.insert(name);
    return store_.f32(name, {n});
  };
  const Tensor& emb = store_.get("embed", {s.V, C});
  used.insert("embed");
  embed_ = emb.data;
  embed_dtype_ = emb.dtype;
  final_norm_ = vec("final_norm", C);
  if (s.tie_embeddings) {
    lm_head_.w = embed_;
    lm_head_.dtype = embed_dtype_;
    lm_head_.out = s.V;
    lm_head_.in = C;
  } else {
    lm_head_ = lin("lm_head", s.V, C, "");
  }
  for (int64_t i = 0; i < s.L; i++) {
    const std::string p = "L" + std::to_string(i) + ".";
    LayerWeights w;
    w.attn_norm = vec(p + "attn_norm", C);
    w.mlp_norm = vec(p + "mlp_norm", C);
    const bool b = s.attention_bias;
    w.q = lin(p + "q", QD, C, b ? p + "q_bias" : "");
    w.k = lin(p + "k", KD, C, b ? p + "k_bias" : "");
    w.v = lin(p + "v", KD, C, b ? p + "v_bias" : "");
    w.o = lin(p + "o", C, QD, s.o_bias ? p + "o_bias" : "");
    if (s.qk_norm) {
      w.q_norm = vec(p + "q_norm", s.HD);
      w.k_norm = vec(p + "k_norm", s.HD);
    }
    const bool mb = s.mlp_bias;
    w.gate = lin(p + "gate", I, C, mb ? p + "gate_bias" : "");
    w.up = lin(p + "up", I, C, mb ? p + "up_bias" : "");
    w.down = lin(p + "down", C, I, mb ? p + "down_bias" : "");
    layers_.push_back(std::move(w));
  }
  for (const std::string& n : store_.names())
    if (!used.count(n)) throw Error("tensor_unexpected", "tensor " + n + " is not used by this model spec");
  pool_ = std::make_unique<ThreadPool>(std::max(1, opts.threads));
  TensorParallel::check(s, opts.tensor_parallel);
  if (opts.tensor_parallel > 1) tp_ = std::make_unique<TensorParallel>(s, opts.tensor_parallel, opts.threads);
  // blocks older than every layer's window are freed as sequences grow (none if a layer sees all)
  int64_t horizon = s.windows.empty() ? 0 : *std::max_element(s.windows.begin(), s.windows.end());
  if (std::find(s.windows.begin(), s.windows.end(), 0) != s.windows.end()) horizon = 0;
  kv_ = std::make_unique<KVCache>(s.L, s.NKV, s.HD, opts.kv_block_size, opts.kv_blocks, horizon);
}

void Model::linear(float* out, const float* in, const Linear& w, int64_t M) {
  cpu::matmul(out, in, w.w, w.dtype, w.bias.empty() ? nullptr : w.bias.data(), M, w.out, w.in, *pool_);
}

void Model::lora_apply(float* out, const float* in, int64_t layer, int t, const std::vector<LoraApp>& apps) {
  for (const LoraApp& ap : apps) {
    const LoraMats& m = ap.a->at(layer, t);
    if (!m.on()) continue;
    const int64_t r = ap.a->spec.lora.rank, R = ap.r1 - ap.r0;
    grow(lora_u_, R * r);
    cpu::sgemm(false, true, R, r, m.in, 1.0f, in + ap.r0 * m.in, m.in, m.A.data(), m.in, 0.0f, lora_u_.data(), r,
               *pool_);
    cpu::sgemm(false, true, R, m.out, r, ap.sign * ap.a->scale, lora_u_.data(), r, m.B.data(), r, 1.0f,
               out + ap.r0 * m.out, m.out, *pool_);
  }
}

// Row ranges of each adapter's LoRA in a packed serving batch (runs of sequences on the
// same adapter coalesced). Rows not on the merged adapter undo its merged delta.
std::vector<LoraApp> Model::lora_apps(const ForwardBatch& b) {
  std::vector<LoraApp> apps;
  const Adapter* merged = merged_.empty() ? nullptr : &adapter(merged_);
  auto push = [&](const Adapter* a, float sign, int64_t r0, int64_t r1) {
    if (!a || !a->spec.has_lora) return;
    if (!apps.empty() && apps.back().a == a && apps.back().sign == sign && apps.back().r1 == r0) apps.back().r1 = r1;
    else apps.push_back({a, sign, r0, r1});
  };
  for (size_t sq = 0, t = 0; sq < b.seq_ids.size(); t += static_cast<size_t>(b.counts[sq++])) {
    const Adapter* a = b.adapters.empty() || b.adapters[sq].empty() ? nullptr : &adapter(b.adapters[sq]);
    const int64_t r0 = static_cast<int64_t>(t), r1 = r0 + b.counts[sq];
    if (a == merged) continue;  // the merged weights already are this adapter
    push(merged, -1.0f, r0, r1);
    push(a, 1.0f, r0, r1);
  }
  return apps;
}

void Model::validate(const ForwardBatch& b) const {
  const size_t n = b.seq_ids.size();
  if (n == 0) throw Error("invalid_batch", "forward: empty batch");
  if (b.counts.size() != n) throw Error("invalid_batch", "forward: seqIds and counts differ in length");
  int64_t total = 0;
  std::set<int32_t> seen;
  for (size_t s = 0; s < n; s++) {
    if (b.counts[s] < 1) throw Error("invalid_batch", "forward: every count must be >= 1");
    if (!seen.insert(b.seq_ids[s]).second)
      throw Error("invalid_batch", "forward: sequence " + std::to_string(b.seq_ids[s]) + " appears twice");
    total += b.counts[s];
    const int64_t end = kv_->length(b.seq_ids[s]) + b.counts[s];
    if (end > spec_.max_positions)
      throw Error("context_full", "sequence " + std::to_string(b.seq_ids[s]) + " would hold " + std::to_string(end) +
                                      " tokens, more than the model's " + std::to_string(spec_.max_positions) +
                                      " positions");
  }
  if (!b.adapters.empty() && b.adapters.size() != n)
    throw Error("invalid_batch", "forward: adapters must hold one entry per sequence");
  for (const std::string& a : b.adapters)
    if (!a.empty() && std::none_of(adapters_.begin(), adapters_.end(), [&](auto& p) { return p->name == a; }))
      throw Error("adapter_unknown", "forward: no adapter named '" + a + "'");
  if (total != static_cast<int64_t>(b.tokens.size()))
    throw Error("invalid_batch", "forward: counts sum to " + std::to_string(total) + " but " +
                                     std::to_string(b.tokens.size()) + " tokens were given");
  for (int32_t t : b.tokens)
    if (t < 0 || t >= spec_.V)
      throw Error("invalid_batch", "forward: token id " + std::to_string(t) + " outside the vocabulary");
}

void Model::forward(const ForwardBatch& b, std::vector<float>& logits) {
  try {
    validate(b);
  } catch (...) {
    kv_->abort_step();
    throw;
  }
  const ModelSpec& s = spec_;
  const int64_t C = s.C, I = s.I, NH = s.NH, NKV = s.NKV, HD = s.HD, QD = NH * HD, KD = NKV * HD;
  const int64_t nseq = static_cast<int64_t>(b.seq_ids.size());
  const int64_t T = static_cast<int64_t>(b.tokens.size());
  ThreadPool& pool = *pool_;

  const std::vector<LoraApp> apps = lora_apps(b);
  KVCache::Reservation res;
  try {
    res = kv_->reserve(b.seq_ids.data(), b.counts.data(), nseq);
  } catch (...) {
    kv_->abort_step();
    throw;
  }
  try {
    grow(x_, T * C), grow(xn_, T * C), grow(q_, T * QD), grow(k_, T * KD), grow(v_, T * KD);
    grow(att_, T * QD), grow(tmp_, T * C), grow(gate_, T * I), grow(up_, T * I);
    grow(cos_, T * HD / 2), grow(sin_, T * HD / 2);
    pos_.resize(T), seq_of_.resize(T), npos_.resize(T);
    for (int64_t sq = 0, t = 0; sq < nseq; sq++)
      for (int32_t i = 0; i < b.counts[sq]; i++, t++) {
        pos_[t] = static_cast<int32_t>(res.start[sq] + i);
        seq_of_[t] = static_cast<int32_t>(sq);
        npos_[t] = pos_[t] + 1;
      }
    cpu::rope_tables(cos_.data(), sin_.data(), pos_.data(), s.inv_freq.data(), T, HD / 2, s.rope_scaling);

    float* x = x_.data();
    float* xn = xn_.data();
    cpu::embedding_forward(x, b.tokens.data(), embed_, embed_dtype_, T, C);

    const int64_t bstride = kv_->block_stride(), lstride = kv_->layer_stride(), hstride = kv_->head_stride();
    const int64_t bs = kv_->block_size();
    spans_.resize(static_cast<size_t>(nseq));

    for (int64_t l = 0; l < s.L; l++) {
      if (tp_) {
        tp_->layer_forward(*this, l, res, apps, T);
        continue;
      }
      const LayerWeights& w = layers_[l];
      // attention block
      cpu::rmsnorm_forward(xn, x, w.attn_norm.data(), T, C, s.eps, pool);
      linear(q_.data(), xn, w.q, T);
      linear(k_.data(), xn, w.k, T);
      linear(v_.data(), xn, w.v, T);
      lora_apply(q_.data(), xn, l, kQ, apps);
      lora_apply(k_.data(), xn, l, kK, apps);
      lora_apply(v_.data(), xn, l, kV, apps);
      if (s.qk_norm) {  // Qwen3: RMSNorm over each head's HD values, before RoPE
        cpu::rmsnorm_forward(q_.data(), q_.data(), w.q_norm.data(), T * NH, HD, s.eps, pool);
        cpu::rmsnorm_forward(k_.data(), k_.data(), w.k_norm.data(), T * NKV, HD, s.eps, pool);
      }
      cpu::rope_forward(q_.data(), cos_.data(), sin_.data(), T, NH, HD, pool);
      cpu::rope_forward(k_.data(), cos_.data(), sin_.data(), T, NKV, HD, pool);
      float* kl = kv_->k() + l * lstride;
      float* vl = kv_->v() + l * lstride;
      for (int64_t t = 0; t < T; t++) {  // write this step's keys/values into their blocks
        const auto& table = res.tables[seq_of_[t]];
        const int64_t p = pos_[t];
        const int64_t off = static_cast<int64_t>(table[p / bs]) * bstride + (p % bs) * HD;
        for (int64_t g = 0; g < NKV; g++) {
          std::copy_n(k_.data() + t * KD + g * HD, HD, kl + off + g * hstride);
          std::copy_n(v_.data() + t * KD + g * HD, HD, vl + off + g * hstride);
        }
      }
      for (int64_t sq = 0; sq < nseq; sq++)
        spans_[sq] = cpu::KVSpan{kl, vl, res.tables[sq].data(), bstride, hstride, HD, bs};
      cpu::attention_forward(att_.data(), q_.data(), spans_.data(), seq_of_.data(), npos_.data(), T, NH, NKV, HD,
                             s.window(l), pool);
      linear(tmp_.data(), att_.data(), w.o, T);
      lora_apply(tmp_.data(), att_.data(), l, kO, apps);
      cpu::residual_forward(x, x, tmp_.data(), T * C);
      // MLP block
      cpu::rmsnorm_forward(xn, x, w.mlp_norm.data(), T, C, s.eps, pool);
      linear(gate_.data(), xn, w.gate, T);
      linear(up_.data(), xn, w.up, T);
      lora_apply(gate_.data(), xn, l, kGate, apps);
      lora_apply(up_.data(), xn, l, kUp, apps);
      cpu::swiglu_forward(gate_.data(), gate_.data(), up_.data(), T * I, pool);
      linear(tmp_.data(), gate_.data(), w.down, T);
      lora_apply(tmp_.data(), gate_.data(), l, kDown, apps);
      cpu::residual_forward(x, x, tmp_.data(), T * C);
    }

    // final norm and LM head only on the rows whose logits were asked for
    int64_t R = T;
    const float* rows = x;
    if (!b.all_logits) {
      R = nseq;
      grow(sel_, R * C);
      for (int64_t sq = 0, t = 0; sq < nseq; sq++) {
        t += b.counts[sq];
        std::copy_n(x + (t - 1) * C, C, sel_.data() + sq * C);
      }
      rows = sel_.data();
    }
    cpu::rmsnorm_forward(xn, rows, final_norm_.data(), R, C, s.eps, pool);
    logits.resize(static_cast<size_t>(R * s.V));
    linear(logits.data(), xn, lm_head_, R);
  } catch (...) {
    kv_->rollback(b.seq_ids.data(), nseq);
    throw;
  }
  kv_->commit(b.seq_ids.data(), b.counts.data(), nseq);
}

}  // namespace hc
