// A Llama-family decoder (Llama 2/3, Mistral, Qwen2 biases, Qwen3 q/k norms) over
// memory-mapped weights, with a paged KV cache and continuous batching: one forward
// step takes several sequences with any number of new tokens each, and all new tokens
// go through every linear layer as one [total_tokens, C] matmul.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cpu/matmul_kernels.h"
#include "cpu/ops.h"
#include "cpu/quant_repack.h"
#include "errors.h"
#include "exec.h"
#include "kvcache.h"
#include "rank.h"
#include "threadpool.h"
#include "train/adapter.h"
#include "train/params.h"
#include "train/resident_params.h"
#include "train/tape.h"
#include "weights.h"

namespace hc {

struct ModelSpec {
  int64_t C = 0, I = 0, L = 0, NH = 0, NKV = 0, HD = 0, V = 0;
  int64_t max_positions = 0;
  float eps = 1e-5f;
  std::vector<float> inv_freq;  // [HD/2]
  float rope_scaling = 1.0f;
  bool attention_bias = false, qk_norm = false, tie_embeddings = false;
  bool o_bias = false, mlp_bias = false;  // bias on o; on gate/up/down
  // per layer: 0 = full causal attention, W = each query sees its last W keys (itself
  // included); empty = all full
  std::vector<int32_t> windows;
  int32_t window(int64_t layer) const { return windows.empty() ? 0 : windows[static_cast<size_t>(layer)]; }
};

struct ModelOptions {
  int threads = 1;
  int64_t kv_block_size = 16;
  int64_t kv_blocks = 256;
  int tensor_parallel = 1;  // thread ranks splitting each layer (rank.h); 1 = off
  // where the serving forward runs (exec.h): "cpu", or "cuda" (weights, KV pool and
  // activations resident on CUDA device `device_index`)
  std::string device = "cpu";
  int device_index = 0;
  // how the serving forward's activations meet bf16 weights (cpu/matmul_kernels.h); training
  // always runs Highest. CPU and one rank only.
  cpu::MatmulPrecision matmul_precision = cpu::MatmulPrecision::Highest;
  // the KV pool's element type: "f32", "bf16" or "f16" (the CPU only)
  std::string kv_dtype = "f32";
  // cuda: decode steps replayed as CUDA graphs of their bucket (exec.h run_step); one rank only
  bool cuda_graphs = true;
};

struct ForwardBatch {
  std::vector<int32_t> seq_ids, tokens, counts;
  bool all_logits = false;
  std::vector<std::string> adapters;  // per sequence ("" = the base alone); empty = all base
};

struct TrainBatch {
  std::vector<int32_t> tokens, counts, targets;
  std::string adapter;  // "" = the base alone
  bool values = false, grad = false, checkpoint = false;
};

struct TrainResult {
  std::vector<float> logp, values;  // values empty unless asked for
};

// What a caller of setTrainable chose.
enum class TrainKind { None, Base, Adapter };

struct Linear {
  const void* w = nullptr;  // [out, in] as the forward reads it: `map` or owned.data()
  DType dtype = DType::F32;
  std::vector<float> bias;  // empty when the layer has none
  int64_t out = 0, in = 0;
  const void* map = nullptr;  // the checkpoint's tensor inside the mapping
  DType map_dtype = DType::F32;
  // fp32 copy the forward reads instead of `map`: full fine-tuning's master weight
  // (materialised) or a merged adapter's W + s·B·A (merged)
  std::vector<float> owned;
  bool materialised = false, merged = false;
  // map's copy repacked at load for the CPU's int8 GEMM (Model::repacked_ owns it), or null
  const cpu::RepackedWeight* packed = nullptr;
  // what the forward's product reads besides w: the repacked copy while w is still map
  const cpu::RepackedWeight* repacked() const { return w == map ? packed : nullptr; }
};

struct LayerWeights {
  std::vector<float> attn_norm, mlp_norm, q_norm, k_norm;
  Linear q, k, v, o, gate, up, down;
  // the linear of Target t (adapter.h's order)
  Linear& at(int t) {
    switch (t) {
      case kQ: return q;
      case kK: return k;
      case kV: return v;
      case kO: return o;
      case kGate: return gate;
      case kUp: return up;
      default: return down;
    }
  }
  const Linear& at(int t) const { return const_cast<LayerWeights*>(this)->at(t); }
};

// One base tensor by canonical name, wherever it lives.
struct BaseTensor {
  std::string name;
  std::vector<int64_t> shape;
  Linear* lin = nullptr;            // a linear's weight
  std::vector<float>* vec = nullptr;  // a norm or bias (always fp32, owned)
  bool embed = false;
};

// The step's LoRA rows (Model::lora_rows), host side: the adapters in slot order, each with
// its scale's sign (slot 0 the merged adapter, undone: −1), and whether some row has an own
// slot / an undo slot (the rows' slots themselves in Model::lora_own_ / lora_undo_).
struct LoraRows {
  std::vector<std::pair<const Adapter*, float>> slots;
  bool own = false, undo = false;
};

// Where a tensor-parallel rank's shard of each target linear starts in its LoRA: A's first
// column (row-parallel linears: o, down) and B's first row (column-parallel ones); 0 on one rank.
struct LoraShard {
  int64_t a_col[kTargets] = {};
  int64_t b_row[kTargets] = {};
};

// The batched LoRA of one serving step (Model::lora_plan), in the Exec's memory: the
// table [L·kTargets, slots] of every adapter's A/B on every linear, and per row its slot.
// The merged adapter (its delta already in the weights) is a slot of negative scale
// applied by a second pass (`undo`) to the rows not on it.
struct LoraPlan {
  const cpu::LoraEntry* table = nullptr;
  const int32_t* own = nullptr;   // row → its adapter's slot (−1: base, or the merged adapter); null: none
  const int32_t* undo = nullptr;  // row → the merged adapter's slot (−1: on it); null: none merged
  int64_t slots = 0, max_rank = 0;
  float* u = nullptr;    // [rows, max_rank] scratch of the shrink
  std::vector<char> on;  // [L·kTargets]: some slot has a LoRA on that linear
};

class Model {
 public:
  Model(const ModelSpec& spec, const std::vector<TensorDesc>& tensors, const ModelOptions& opts);
  // The tapes and the tensor-parallel ranks go first: their buffers live in the rank Execs'
  // memory, rank 0's being exec_'s.
  ~Model();
  // Logits [rows, V]: one row per sequence ("last") or per input token ("all").
  // Throws hc::Error ("invalid_batch", "context_full", "kv_full").
  void forward(const ForwardBatch& batch, std::vector<float>& logits);
  KVCache& kv() { return *kv_; }
  // the model's kernel threads (rank 0 the caller), free between forward steps: the serving
  // step samples its rows on them (addon.cc)
  ThreadPool& pool() { return *pool_; }
  const ModelSpec& spec() const { return spec_; }
  // "cpu" or "cuda", and the device's name
  const char* device() const { return exec_->device(); }
  std::string device_name() const { return exec_->device_name(); }
  int64_t repacked_bytes() const { return repacked_.bytes(); }  // quant_repack.h: the linears repacked at load
  // devices the serving forward runs on: 0 on the CPU, else the tensor-parallel ranks (1 without)
  int devices() const { return std::string(exec_->device()) == "cpu" ? 0 : tp_ ? tp_->size() : 1; }
  // the KV pool's element type: "f32" or "bf16"
  const char* kv_dtype() const { return dtype_name(kv_geo_.dtype); }
  // serving steps run as graph replays / captured / launched op by op (exec.h run_step)
  Exec::StepCounts step_counts() const { return exec_->step_counts(); }

  // ---- training (model_train.cc, model_params.cc) ----
  // Log-probs (and values) of a packed batch; with grad, keeps the tape for one backward.
  void train_forward(const TrainBatch& b, TrainResult& out);
  // Accumulates the trainable set's gradients from dL/dlogp (and dL/dvalue, may be null).
  void train_backward(const std::vector<float>& dlogp, const std::vector<float>* dvalues);
  StepResult step(const OptimizerStep& o);
  void zero_grad() {
    trainable_.zero_grad();
    if (resident_params_.active()) exec_->bind(), resident_params_.zero_grad(*exec_);
    if (tp_) tp_->zero_grads(*this);
  }

  void add_adapter(const std::string& name, const AdapterSpec& spec);
  void remove_adapter(const std::string& name);
  std::vector<std::string> adapter_names() const;
  void set_trainable(TrainKind kind, const std::string& adapter);
  std::vector<std::pair<std::string, std::vector<int64_t>>> parameters(const std::string* adapter);
  std::vector<float> read_parameter(const std::string* adapter, const std::string& name);
  void write_parameter(const std::string* adapter, const std::string& name, const std::vector<float>& data);
  const ParamSet& trainable() const { return trainable_; }
  // Data-parallel ranks (train/zero.h, model_dp.cc) drive its optimizer where the set trains:
  // the host arrays (the CPU: the weights may change, so the Exec is told) or, on a device,
  // the resident copies, gradients and moments (resident_params()) through exec().train().
  ParamSet& trainable() {
    if (!resident_params_.active()) weights_changed();
    return trainable_;
  }
  ResidentParams& resident_params() { return resident_params_; }
  Exec& exec() { return *exec_; }
  // the CUDA device it runs on (ModelOptions::device_index); -1 on the CPU
  int device_index() const { return device_index_; }
  // The trainable tensors' data and AdamW moments copied back into the host arrays
  // (trainable()'s, the adapters', the materialised weights) where a device holds them.
  void sync_to_host();
  // Weight bytes moved between host and device so far (exec.h weight_bytes_moved).
  // Every device's: the tensor-parallel ranks' too.
  int64_t weight_bytes_moved() const { return exec_->weight_bytes_moved() + (tp_ ? tp_->weight_bytes_moved() : 0); }
  // Replaces the moments and step count; every trainable tensor must be given, shapes checked.
  void load_optimizer_state(int64_t step, const std::vector<std::string>& names,
                            const std::vector<std::vector<float>>& exp_avg,
                            const std::vector<std::vector<float>>& exp_avg_sq);
  void merge_adapter(const std::string& name);
  void unmerge_adapter();

 private:
  friend class TensorParallel;
  void validate(const ForwardBatch& b) const;
  // the training forward's product, through exec_->train() (exact activations: TrainOps::linear)
  void linear(float* out, const float* in, const Linear& w, int64_t M);
  // the serving forward's, through exec_
  void exec_linear(float* out, const float* in, const Linear& w, int64_t M);
  // several of one input (q/k/v, gate/up): one Exec::linears call
  void exec_linears(const float* in, std::initializer_list<std::pair<float*, const Linear*>> ls, int64_t M);
  // A weight as the forward reads it: exec_'s resident copy of host[n floats or bytes].
  const float* resident(const std::vector<float>& v) { return static_cast<const float*>(exec_->weight(v.data(), static_cast<int64_t>(v.size()) * 4, true)); }
  const void* resident(const Linear& l);
  const void* resident_embed();
  void upload_weights();
  // Some weight the forward reads was rewritten (step, merge, write, materialise):
  // a device Exec uploads the mutable ones again before the next step.
  void weights_changed() {
    if (exec_) exec_->weights_changed();
    if (tp_) tp_->weights_changed();
  }
  // the step's LoRA slots: each row its adapter's slot in lora_own_ and, when an adapter is
  // merged, the undo slot in lora_undo_ (T0 real rows, padded to T by repeating the last)
  LoraRows lora_rows(const ForwardBatch& b, int64_t T0, int64_t T);
  // the step's table of every slot's A/B on every linear in ex's memory (`entries` its host
  // copy, kept for the step), `sh` the rank's shard (one rank: none) and the rows' slots
  // uploaded; every tensor-parallel rank builds its own on its Exec (rank.cc)
  LoraPlan lora_plan(Exec& ex, const LoraRows& rows, const LoraShard& sh, int64_t T,
                     std::vector<cpu::LoraEntry>& entries) const;
  // out[T, N] += each row's own adapter's LoRA of linear t of `layer` over in[T, K] (no
  // dropout: serving path), then the merged adapter's undone on the rows not on it: one
  // batched op each
  static void lora_apply(Exec& ex, float* out, const float* in, int64_t layer, int t, const LoraPlan& p, int64_t T,
                         int64_t N, int64_t K);

  // training internals (model_train.cc)
  // the gradient of the trainable tensor whose host data is `host` (device or host memory); null when frozen
  float* grad_for(const void* host) const;
  void train_linear(float* out, const float* in, int64_t layer, int t, int64_t T, LayerTape& tp);
  void train_linear_backward(float* dx, float beta, const float* dy, const float* x, int64_t layer, int t,
                             int64_t T, const LayerTape& tp);
  void layer_forward(int64_t l, const float* x_in, float* x_out, LayerTape& tp);
  void layer_backward(int64_t l, float* dx, const float* x_in, const LayerTape& tp);
  void head_logits(float* logits, const float* xf, int64_t r0, int64_t R);

  // parameters (model_params.cc)
  std::vector<BaseTensor> base_tensors();
  BaseTensor base_tensor(const std::string& name);
  Adapter& adapter(const std::string& name);
  void repack_linears();
  void materialise(Linear& l);
  void materialise_embed();
  void drop_tape() { tape_.valid = false; }
  bool any_merged() const { return !merged_.empty(); }

  ModelSpec spec_;
  WeightStore store_;
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
  const void* embed_ = nullptr;
  DType embed_dtype_ = DType::F32;
  Linear lm_head_;
  std::unique_ptr<ThreadPool> pool_;
  // the block-format linears repacked at load for the CPU's int8 GEMM (one rank on the CPU)
  cpu::RepackSet repacked_;
  std::unique_ptr<KVCache> kv_;
  std::unique_ptr<TensorParallel> tp_;  // null at --tensor-parallel 1
  std::unique_ptr<Exec> exec_;          // the serving forward's ops and memory
  int device_index_ = -1;               // device_index()
  KvGeometry kv_geo_{};

  // the step's host-side indexing (uploaded through exec_), reused across steps
  std::vector<int32_t> tokens_, pos_, seq_of_, npos_, tables_, rows_, lora_own_, lora_undo_;
  std::vector<cpu::LoraEntry> lora_entries_;

  std::vector<float> embed_owned_;  // fp32 master of the embedding once materialised
  std::vector<std::unique_ptr<Adapter>> adapters_;
  std::string merged_;  // the merged adapter's name, "" when none
  TrainKind train_kind_ = TrainKind::None;
  std::string train_adapter_;
  ParamSet trainable_;
  ResidentParams resident_params_;  // the trainable set's device half (a device Exec only)
  Tape tape_;
  Tape nograd_tape_;  // a no-grad forward's buffers, kept apart so a pending grad tape survives it
  TrainScratch scratch_;
};

}  // namespace hc
