// A Llama-family decoder (Llama 2/3, Mistral, Qwen2 biases, Qwen3 q/k norms) over
// memory-mapped weights, with a paged KV cache and continuous batching: one forward
// step takes several sequences with any number of new tokens each, and all new tokens
// go through every linear layer as one [total_tokens, C] matmul.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "kvcache.h"
#include "threadpool.h"
#include "weights.h"

namespace hc {

struct ModelSpec {
  int64_t C = 0, I = 0, L = 0, NH = 0, NKV = 0, HD = 0, V = 0;
  int64_t max_positions = 0;
  float eps = 1e-5f;
  std::vector<float> inv_freq;  // [HD/2]
  float rope_scaling = 1.0f;
  bool attention_bias = false, qk_norm = false, tie_embeddings = false;
};

struct ModelOptions {
  int threads = 1;
  int64_t kv_block_size = 16;
  int64_t kv_blocks = 256;
};

struct ForwardBatch {
  std::vector<int32_t> seq_ids, tokens, counts;
  bool all_logits = false;
};

struct Linear {
  const void* w = nullptr;  // [out, in], in the checkpoint's dtype, inside the mapping
  DType dtype = DType::F32;
  std::vector<float> bias;  // empty when the layer has none
  int64_t out = 0, in = 0;
};

struct LayerWeights {
  std::vector<float> attn_norm, mlp_norm, q_norm, k_norm;
  Linear q, k, v, o, gate, up, down;
};

class Model {
 public:
  Model(const ModelSpec& spec, const std::vector<TensorDesc>& tensors, const ModelOptions& opts);
  // Logits [rows, V]: one row per sequence ("last") or per input token ("all").
  // Throws hc::Error ("invalid_batch", "context_full", "kv_full").
  void forward(const ForwardBatch& batch, std::vector<float>& logits);
  KVCache& kv() { return *kv_; }
  const ModelSpec& spec() const { return spec_; }

 private:
  void validate(const ForwardBatch& b) const;
  void linear(float* out, const float* in, const Linear& w, int64_t M);

  ModelSpec spec_;
  WeightStore store_;
  std::vector<LayerWeights> layers_;
  std::vector<float> final_norm_;
  const void* embed_ = nullptr;
  DType embed_dtype_ = DType::F32;
  Linear lm_head_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<KVCache> kv_;

  // activations, reused across steps (grown when a step is larger than any before)
  std::vector<float> x_, xn_, q_, k_, v_, att_, tmp_, gate_, up_, cos_, sin_, sel_;
  std::vector<int32_t> pos_, seq_of_, npos_;
  std::vector<cpu::KVSpan> spans_;
};

}  // namespace hc
