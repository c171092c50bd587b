// Tensor parallelism (--tensor-parallel N) on in-process thread ranks, Megatron layout:
// q/k/v/gate/up are split by output features (column-parallel), o/down by input
// features (row-parallel) with one all-reduce after each, so a layer costs two
// collectives. Each rank reads its shard of the weights in place: a column split of a
// row-major [out, in] weight is a contiguous row range, a row split a strided column
// range (the GEMM takes a leading dimension) — nothing is copied, merged or
// materialised fp32 weights included. Attention and the KV cache are split by KV heads:
// one block pool, each rank writing and reading only its heads' slices.
// The embedding and the LM head stay replicated: vocabularies here are small, and a
// vocab split would need an all-gather of the logits every step.
// The collectives go through the Communicator (dist/communicator.h), the interface NCCL
// fills on GPUs.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kvcache.h"
#include "threadpool.h"

namespace hc {

class Model;
struct LoraApp;
struct Linear;
struct ModelSpec;
namespace dist {
class Communicator;
}

// [begin, end) of rank r's equal share of n features (n divisible by the rank count).
struct Slice {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};

class TensorParallel {
 public:
  // Throws "bad_tensor_parallel" unless ranks divides the KV heads (so the query heads
  // too) and the MLP width.
  TensorParallel(const ModelSpec& s, int ranks, int threads);
  ~TensorParallel();
  static void check(const ModelSpec& s, int ranks);
  int size() const { return n_; }

  // Model::forward's decoder layer l over the packed batch (T tokens), split over the
  // ranks; the model's residual stream x_ is updated in place.
  void layer_forward(Model& m, int64_t l, const KVCache::Reservation& res, const std::vector<LoraApp>& apps,
                     int64_t T);

 private:
  struct Rank {
    std::unique_ptr<ThreadPool> pool;
    std::vector<float> q, k, v, att, gate, up, part, u;
    Slice heads, kv_heads, mlp;
  };
  void attention(Model& m, Rank& rk, int64_t l, const KVCache::Reservation& res, const std::vector<LoraApp>& apps,
                 int64_t T);
  void mlp(Model& m, Rank& rk, int64_t l, const std::vector<LoraApp>& apps, int64_t T);
  // out[T, shard] = in · W[shard rows]ᵀ (+ bias slice) + the LoRAs' slices
  void column(Rank& rk, float* out, const float* in, const Linear& w, Slice sh, int64_t l, int t,
              const std::vector<LoraApp>& apps, int64_t T);
  // rk.part[T, out] = in[T, shard] · W[:, shard]ᵀ + the LoRAs' partial sums (all-reduced later)
  void row(Rank& rk, const float* in, const Linear& w, Slice sh, int64_t l, int t, const std::vector<LoraApp>& apps,
           int64_t T);

  int n_;
  ThreadPool ranks_;  // one thread per rank; each drives its own kernel pool
  std::vector<Rank> rank_;
  std::vector<std::unique_ptr<dist::Communicator>> comm_;  // comm_[r] is rank r's
};

}  // namespace hc
