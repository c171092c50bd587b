#include "model.h"

#include <algorithm>
#include <set>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "errors.h"

namespace hc {

namespace {

// A decode step's rows padded to the graph bucket it replays (exec.h run_step): 1, 2, 4,
// ..., 64; 0 above (eager).
inline int64_t graph_bucket(int64_t T) {
  for (int64_t b = 1; b <= 64; b *= 2)
    if (T <= b) return b;
  return 0;
}

// [n, to): copies of element n − 1 (a padded row repeats the last real one: the same
// token at the same position of the same sequence computes and writes the same values)
template <typename V>
void pad_last(V& v, size_t n, size_t to) {
  v.resize(to);
  for (size_t i = n; i < to; i++) v[i] = v[n - 1];
}

size_t pow2_at_least(size_t n) {
  size_t p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

Model::~Model() {
  tape_ = Tape{};
  nograd_tape_ = Tape{};
  tp_.reset();
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
  // o and down are split along their input among the ranks: a quantized one only at whole
  // blocks, refused here rather than at the first forward (serving or training)
  for (size_t l = 0; opts.tensor_parallel > 1 && l < layers_.size(); l++)
    for (const auto& [name, w] : {std::pair<const char*, const Linear*>{"o", &layers_[l].o}, {"down", &layers_[l].down}})
      if (is_quantized(w->dtype) && (w->in / opts.tensor_parallel) % block_elems(w->dtype) != 0)
        throw Error("bad_tensor_parallel", "tensor parallel size " + std::to_string(opts.tensor_parallel) + " splits layer " +
                                               std::to_string(l) + "'s " + name + " weight (" + dtype_name(w->dtype) +
                                               ", rows of " + std::to_string(w->in) + ") inside its blocks of " +
                                               std::to_string(block_elems(w->dtype)) + "; use a size that leaves each rank whole blocks");
  if (opts.tensor_parallel > 1) tp_ = std::make_unique<TensorParallel>(s, opts.tensor_parallel, opts.threads);
  // blocks older than every layer's window are freed as sequences grow (none if a layer sees all)
  int64_t horizon = s.windows.empty() ? 0 : *std::max_element(s.windows.begin(), s.windows.end());
  if (std::find(s.windows.begin(), s.windows.end(), 0) != s.windows.end()) horizon = 0;
  const bool cuda = opts.device == "cuda";
  if (!cuda && opts.device != "cpu")
    throw Error("bad_options", "device must be \"cpu\" or \"cuda\", not \"" + opts.device + "\"");
  if (opts.matmul_precision != cpu::MatmulPrecision::Highest && (cuda || opts.tensor_parallel > 1))
    throw Error("unsupported", "--matmul-precision high|medium runs on the CPU with one rank only for now");
  // the pool may hold 16-bit elements (half the bytes a block; rounded on write, widened on
  // read): bf16 or f16 on the CPU, bf16 on a device (its kernels have no f16 twin yet)
  if (opts.kv_dtype != "f32" && opts.kv_dtype != "bf16" && opts.kv_dtype != "f16")
    throw Error("bad_options", "kvDtype must be \"f32\", \"bf16\" or \"f16\", not \"" + opts.kv_dtype + "\"");
  if (opts.kv_dtype == "f16" && cuda)
    throw Error("unsupported", "--kv-dtype f16 runs on the CPU only: a cuda KV pool is f32 or bf16");
  const DType kv_dt = parse_dtype(opts.kv_dtype);
  kv_ = std::make_unique<KVCache>(s.L, s.NKV, s.HD, opts.kv_block_size, opts.kv_blocks, horizon, !cuda,
                                  dtype_bytes(kv_dt, 1));
  kv_geo_ = KvGeometry{s.L, opts.kv_blocks, kv_->layer_stride(), kv_->block_stride(), kv_->head_stride(),
                       kv_->block_size(), kv_dt};
  if (cuda) {
    if (tp_ && opts.device_index != 0)
      throw Error("bad_options", "--tensor-parallel on cuda puts rank r on device r: device index must be 0");
    // under tensor parallelism this is rank 0's Exec: its KV heads, device 0
    exec_ = make_cuda_exec(opts.device_index, tp_ ? tp_->kv_geometry(kv_geo_, 0) : kv_geo_, opts.cuda_graphs && !tp_);
    device_index_ = opts.device_index;
    if (tp_) tp_->attach(*this, true);
    upload_weights();
  } else {
    exec_ = make_cpu_exec(*pool_, kv_->k(), kv_->v(), kv_geo_, opts.matmul_precision);
    if (tp_) tp_->attach(*this, false);
    else if (cpu::repack_enabled()) repack_linears();
  }
}

// Each block-format linear (not the tied head: the embedding reads its rows) repacked into
// quant_repack.h's groups of 16 rows, which the int8 GEMM reads instead of the checkpoint's
// blocks. The checkpoint's pages are dropped once copied: only what still reads that layout
// (training's dx, the portable kernels) brings them back from the file. Tensor-parallel ranks
// read shards of the original layout, so a sharded model keeps it alone.
void Model::repack_linears() {
  if (!cpu::reads_repacked_weights()) return;  // these kernels read the file's layout: nothing to gain
  auto one = [&](Linear& l) {
    if (l.w != l.map || !(l.packed = repacked_.add(l.w, l.dtype, l.out, l.in, *pool_))) return;
    if (store_.mapped(l.w)) drop_resident(l.w, dtype_bytes(l.dtype, l.out * l.in));
  };
  for (LayerWeights& w : layers_)
    for (int t = 0; t < kTargets; t++) one(w.at(t));
  if (!spec_.tie_embeddings) one(lm_head_);
}

const void* Model::resident(const Linear& l) {
  if (&l == &lm_head_ && spec_.tie_embeddings) return resident_embed();
  return exec_->weight(l.w, dtype_bytes(l.dtype, l.out * l.in), l.w != l.map);
}

const void* Model::resident_embed() {
  return exec_->weight(embed_, dtype_bytes(embed_dtype_, spec_.V * spec_.C), !embed_owned_.empty());
}

// Every weight the forward reads, uploaded now (once, in its checkpoint dtype) so that
// serving never copies a weight; on the CPU these are the host arrays themselves.
// Quantized linears (q8_0/q4_0/q4_k) go up as stored, their blocks dequantized by the
// device GEMM; what the device has no kernel for (q6_k, a GGUF's quantized embedding) is
// refused here, at load, by name.
void Model::upload_weights() {
  auto refuse = [](const std::string& what, DType t) {
    throw Error("unsupported_dtype", what + " is " + dtype_name(t) +
                                         ", which has no CUDA kernel: serve this checkpoint with --device cpu");
  };
  if (is_quantized(embed_dtype_)) refuse("the embedding table", embed_dtype_);
  if (!spec_.tie_embeddings && lm_head_.dtype == DType::Q6_K) refuse("the output head", lm_head_.dtype);
  for (size_t l = 0; l < layers_.size(); l++)
    for (int t = 0; t < kTargets; t++)
      if (layers_[l].at(t).dtype == DType::Q6_K) refuse("a linear weight of layer " + std::to_string(l), DType::Q6_K);
  exec_->bind();
  resident_embed();
  resident(final_norm_);
  if (!spec_.tie_embeddings) resident(lm_head_), resident(lm_head_.bias);
  if (tp_) return tp_->upload(*this);  // each rank its shards, on its device
  for (LayerWeights& w : layers_) {
    for (const std::vector<float>* v : {&w.attn_norm, &w.mlp_norm, &w.q_norm, &w.k_norm}) resident(*v);
    for (int t = 0; t < kTargets; t++) resident(w.at(t)), resident(w.at(t).bias);
  }
}

void Model::linear(float* out, const float* in, const Linear& w, int64_t M) {
  exec_->train().linear(out, in, resident(w), w.dtype, resident(w.bias), M, w.out, w.in, w.in);
}

void Model::exec_linear(float* out, const float* in, const Linear& w, int64_t M) {
  exec_->linear(out, in, resident(w), w.dtype, resident(w.bias), M, w.out, w.in, w.repacked());
}

// Linears of one input as one Exec call (one parallel region on the CPU, exec.h)
void Model::exec_linears(const float* in, std::initializer_list<std::pair<float*, const Linear*>> ls, int64_t M) {
  Exec::LinearOut outs[kTargets];
  int n = 0;
  for (const auto& [out, w] : ls) outs[n++] = {out, resident(*w), w->dtype, resident(w->bias), w->out, w->repacked()};
  exec_->linears(outs, n, in, M, ls.begin()->second->in);
}

void Model::lora_apply(Exec& ex, float* out, const float* in, int64_t layer, int t, const LoraPlan& p, int64_t T,
                       int64_t N, int64_t K) {
  if (p.slots == 0 || !p.on[static_cast<size_t>(layer * kTargets + t)]) return;
  const cpu::LoraEntry* e = p.table + (layer * kTargets + t) * p.slots;
  if (p.own) ex.lora(out, in, e, p.own, p.u, T, N, K, p.max_rank);
  if (p.undo) ex.lora(out, in, e, p.undo, p.u, T, N, K, p.max_rank);
}

LoraRows Model::lora_rows(const ForwardBatch& b, int64_t T0, int64_t T) {
  LoraRows rows;
  const Adapter* merged = merged_.empty() ? nullptr : &adapter(merged_);
  if (merged && !merged->spec.has_lora) merged = nullptr;
  // slot 0 the merged adapter (undone: scale −s) when there is one, then the batch's
  // adapters in order of first appearance
  std::vector<std::pair<const Adapter*, float>>& slots = rows.slots;
  if (merged) slots.push_back({merged, -1.0f});
  auto slot_of = [&](const Adapter* a) {
    for (size_t i = merged ? 1 : 0; i < slots.size(); i++)
      if (slots[i].first == a) return static_cast<int32_t>(i);
    slots.push_back({a, 1.0f});
    return static_cast<int32_t>(slots.size() - 1);
  };
  lora_own_.assign(static_cast<size_t>(T0), -1);
  lora_undo_.assign(static_cast<size_t>(T0), -1);
  for (size_t sq = 0, t = 0; sq < b.seq_ids.size(); t += static_cast<size_t>(b.counts[sq++])) {
    const Adapter* a = b.adapters.empty() || b.adapters[sq].empty() ? nullptr : &adapter(b.adapters[sq]);
    if (a == merged) continue;  // the merged weights already are this adapter
    const size_t r1 = t + static_cast<size_t>(b.counts[sq]);
    if (merged) std::fill(lora_undo_.begin() + t, lora_undo_.begin() + r1, 0), rows.undo = true;
    if (a && a->spec.has_lora) std::fill(lora_own_.begin() + t, lora_own_.begin() + r1, slot_of(a)), rows.own = true;
  }
  pad_last(lora_own_, static_cast<size_t>(T0), static_cast<size_t>(T));
  pad_last(lora_undo_, static_cast<size_t>(T0), static_cast<size_t>(T));
  return rows;
}

LoraPlan Model::lora_plan(Exec& ex, const LoraRows& rows, const LoraShard& sh, int64_t T,
                          std::vector<cpu::LoraEntry>& entries) const {
  LoraPlan p;
  if (!rows.own && !rows.undo) return p;
  auto resident = [&](const std::vector<float>& v) {
    return static_cast<const float*>(ex.weight(v.data(), static_cast<int64_t>(v.size()) * 4, true));
  };
  const int64_t S = static_cast<int64_t>(rows.slots.size());
  entries.assign(static_cast<size_t>(spec_.L * kTargets * S), cpu::LoraEntry{});
  p.on.assign(static_cast<size_t>(spec_.L * kTargets), 0);
  for (int64_t l = 0; l < spec_.L; l++)
    for (int t = 0; t < kTargets; t++)
      for (int64_t s = 0; s < S; s++) {
        const auto& [a, sign] = rows.slots[static_cast<size_t>(s)];
        const LoraMats& m = a->at(l, t);
        if (!m.on()) continue;
        cpu::LoraEntry& e = entries[static_cast<size_t>((l * kTargets + t) * S + s)];
        e.rank = static_cast<int32_t>(static_cast<int64_t>(m.A.size()) / m.in);
        // a shard reads its columns of the whole A (row stride: the linear's input width)
        // and its rows of B (contiguous)
        e.a = resident(m.A) + sh.a_col[t];
        e.lda = m.in;
        e.b = resident(m.B) + sh.b_row[t] * e.rank;
        e.scale = sign * a->scale;
        p.max_rank = std::max<int64_t>(p.max_rank, e.rank);
        p.on[static_cast<size_t>(l * kTargets + t)] = 1;
      }
  p.slots = S;
  p.u = ex.scratch(Slot::LoraU, T * p.max_rank);
  p.table = ex.lora_table(entries.data(), static_cast<int64_t>(entries.size()));
  if (rows.own) p.own = ex.ints(ISlot::LoraOwn, lora_own_.data(), T);
  if (rows.undo) p.undo = ex.ints(ISlot::LoraUndo, lora_undo_.data(), T);
  return p;
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
  const int64_t T0 = static_cast<int64_t>(b.tokens.size());
  // a decode step (one new token a sequence, last logits) on a device with graphs runs as the
  // graph of its bucket: T rows, the real T0 then copies of the last
  const bool decode = !tp_ && !b.all_logits && exec_->graphs() && T0 == nseq;
  const bool graph = decode && graph_bucket(T0) > 0;
  const int64_t T = graph ? graph_bucket(T0) : T0;

  const LoraRows lora = lora_rows(b, T0, T);
  KVCache::Reservation res;
  try {
    res = kv_->reserve(b.seq_ids.data(), b.counts.data(), nseq);
  } catch (...) {
    kv_->abort_step();
    throw;
  }
  try {
    Exec& ex = *exec_;
    ex.bind();
    // the layers' scratch (tensor parallel: each rank's own, in its Exec)
    auto layer_slot = [&](Slot sl, int64_t n) { return tp_ ? nullptr : ex.scratch(sl, n); };
    float* x = layer_slot(Slot::X, T * C);
    float* xn = ex.scratch(Slot::Xn, T * C);
    float *q = layer_slot(Slot::Q, T * QD), *k = layer_slot(Slot::K, T * KD), *v = layer_slot(Slot::V, T * KD);
    float *att = layer_slot(Slot::Att, T * QD), *tmp = layer_slot(Slot::Tmp, T * C);
    float *gate = layer_slot(Slot::Gate, T * I), *up = layer_slot(Slot::Up, T * I);
    float* cos_t = layer_slot(Slot::Cos, T * HD / 2);
    float* sin_t = layer_slot(Slot::Sin, T * HD / 2);
    pos_.resize(T0), seq_of_.resize(T0), npos_.resize(T0);
    for (int64_t sq = 0, t = 0; sq < nseq; sq++)
      for (int32_t i = 0; i < b.counts[sq]; i++, t++) {
        pos_[t] = static_cast<int32_t>(res.start[sq] + i);
        seq_of_[t] = static_cast<int32_t>(sq);
        npos_[t] = pos_[t] + 1;
      }
    tokens_.assign(b.tokens.begin(), b.tokens.end());
    for (auto* vec : {&pos_, &seq_of_, &npos_, &tokens_}) pad_last(*vec, static_cast<size_t>(T0), static_cast<size_t>(T));
    // the block tables as one [nseq, max_blocks] array (short tables padded, never read there);
    // a graph's width is a power of two, so that its shape stays put while sequences grow
    size_t maxb = 1;
    for (const auto& tb : res.tables) maxb = std::max(maxb, tb.size());
    if (graph) maxb = pow2_at_least(maxb);
    tables_.assign(static_cast<size_t>(graph ? T : nseq) * maxb, 0);
    for (int64_t sq = 0; sq < nseq; sq++) std::copy(res.tables[sq].begin(), res.tables[sq].end(), tables_.begin() + sq * maxb);
    // all that goes down per step: token ids, positions, block tables (and the LoRA table and
    // slots, the rows to keep): copied into the Exec's buffers before the step's ops run
    // tensor parallel: every rank embeds and runs the layers on its own Exec (rank.h);
    // rank 0's residual stream is in exec_'s memory (the same device, or the host)
    if (tp_) x = tp_->forward(*this, b.tokens, lora, T, nseq, static_cast<int64_t>(maxb));
    const int32_t* d_tokens = tp_ ? nullptr : ex.ints(ISlot::Tokens, tokens_.data(), T);
    const int32_t* d_pos = tp_ ? nullptr : ex.ints(ISlot::Pos, pos_.data(), T);
    const int32_t* d_seq_of = tp_ ? nullptr : ex.ints(ISlot::SeqOf, seq_of_.data(), T);
    const int32_t* d_npos = tp_ ? nullptr : ex.ints(ISlot::Npos, npos_.data(), T);
    const int32_t* d_tables = tp_ ? nullptr : ex.ints(ISlot::Tables, tables_.data(), static_cast<int64_t>(tables_.size()));
    const LoraPlan lp = tp_ ? LoraPlan{} : lora_plan(ex, lora, LoraShard{}, T, lora_entries_);
    // final norm and LM head only on the rows whose logits were asked for
    const int64_t R0 = b.all_logits ? T0 : nseq, R = graph ? T : R0;
    const int32_t* d_rows = nullptr;
    float* sel = nullptr;
    if (!b.all_logits) {
      rows_.resize(static_cast<size_t>(R0));
      for (int64_t sq = 0, t = 0; sq < nseq; sq++) rows_[sq] = static_cast<int32_t>((t += b.counts[sq]) - 1);
      pad_last(rows_, static_cast<size_t>(R0), static_cast<size_t>(R));
      sel = ex.scratch(Slot::Sel, R * C);
      d_rows = ex.ints(ISlot::Rows, rows_.data(), R);
    }
    float* out = ex.scratch(Slot::Logits, R * s.V);

    // the step's ops: every input above is in the Exec's buffers, every buffer allocated
    auto step = [&] {
      if (!tp_) {
        ex.rope_tables(cos_t, sin_t, d_pos, resident(s.inv_freq), T, HD / 2, s.rope_scaling);
        ex.embedding(x, d_tokens, resident_embed(), embed_dtype_, T, C);
      }
      // each sublayer's residual add is fused with the next pre-norm (residual_rmsnorm): the
      // first layer's attention norm stands alone, the last layer's add too
      if (!tp_) ex.rmsnorm(xn, x, resident(layers_[0].attn_norm), T, C, s.eps);
      for (int64_t l = 0; !tp_ && l < s.L; l++) {
        const LayerWeights& w = layers_[l];
        // attention block (xn: its pre-norm)
        exec_linears(xn, {{q, &w.q}, {k, &w.k}, {v, &w.v}}, T);
        lora_apply(ex, q, xn, l, kQ, lp, T, w.q.out, w.q.in);
        lora_apply(ex, k, xn, l, kK, lp, T, w.k.out, w.k.in);
        lora_apply(ex, v, xn, l, kV, lp, T, w.v.out, w.v.in);
        if (s.qk_norm) {  // Qwen3: RMSNorm over each head's HD values, before RoPE
          ex.rmsnorm(q, q, resident(w.q_norm), T * NH, HD, s.eps);
          ex.rmsnorm(k, k, resident(w.k_norm), T * NKV, HD, s.eps);
        }
        ex.rope_qk(q, k, cos_t, sin_t, T, NH, NKV, HD);
        void *kl = ex.kv_k(l), *vl = ex.kv_v(l);
        ex.kv_write(kl, vl, k, v, d_tables, static_cast<int64_t>(maxb), d_seq_of, d_pos, T, NKV, HD, kv_geo_);
        ex.paged_attention(att, q, kl, vl, d_tables, static_cast<int64_t>(maxb), nseq, d_seq_of, d_npos, T, NH, NKV,
                           HD, kv_geo_, s.window(l));
        exec_linear(tmp, att, w.o, T);
        lora_apply(ex, tmp, att, l, kO, lp, T, w.o.out, w.o.in);
        // MLP block
        ex.residual_rmsnorm(x, xn, tmp, resident(w.mlp_norm), T, C, s.eps);
        exec_linears(xn, {{gate, &w.gate}, {up, &w.up}}, T);
        lora_apply(ex, gate, xn, l, kGate, lp, T, w.gate.out, w.gate.in);
        lora_apply(ex, up, xn, l, kUp, lp, T, w.up.out, w.up.in);
        ex.swiglu(gate, gate, up, T * I);
        exec_linear(tmp, gate, w.down, T);
        lora_apply(ex, tmp, gate, l, kDown, lp, T, w.down.out, w.down.in);
        if (l + 1 < s.L) ex.residual_rmsnorm(x, xn, tmp, resident(layers_[l + 1].attn_norm), T, C, s.eps);
        else ex.residual(x, x, tmp, T * C);
      }
      const float* rows = x;
      if (sel) ex.gather_rows(sel, x, d_rows, R, C), rows = sel;
      ex.rmsnorm(xn, rows, resident(final_norm_), R, C, s.eps);
      exec_linear(out, xn, lm_head_, R);
    };
    // a graph per shape: rows, table width, and which LoRA ops run with what table layout
    std::string key;
    if (graph) {
      key = std::to_string(T) + "/" + std::to_string(maxb) + "/" + std::to_string(lp.slots) + "/" +
            std::to_string(lp.max_rank) + "/" + (lp.own ? "o" : "") + (lp.undo ? "u" : "") + "/";
      key.append(lp.on.begin(), lp.on.end());
    }
    ex.run_step(key, step);
    // all that comes back per step: the logits rows (the real ones)
    logits.resize(static_cast<size_t>(R0 * s.V));
    ex.read(logits.data(), out, R0 * s.V);
  } catch (...) {
    kv_->rollback(b.seq_ids.data(), nseq);
    throw;
  }
  kv_->commit(b.seq_ids.data(), b.counts.data(), nseq);
}

}  // namespace hc
