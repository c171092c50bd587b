// Tensor parallelism (--tensor-parallel N) on in-process thread ranks, Megatron layout:
// q/k/v/gate/up are split by output features (column-parallel), o/down by input
// features (row-parallel) with one all-reduce after each, so a layer costs two
// collectives (a row-split layer's bias is added by rank 0 alone, before the all-reduce).
// Each rank reads its shard of the weights in place: a column split of a
// row-major [out, in] weight is a contiguous row range, a row split a strided column
// range (the GEMM takes a leading dimension) — nothing is copied, merged or
// materialised fp32 weights included. Attention and the KV cache are split by KV heads:
// one block pool, each rank writing and reading only its heads' slices.
// The embedding and the LM head stay replicated: vocabularies here are small, and a
// vocab split would need an all-gather of the logits every step.
// The collectives go through the Communicator (dist/communicator.h), the interface NCCL
// fills on GPUs.
// Training (rank_train.cc) splits the same way: each rank keeps its shard of the layer's
// activations (LayerTape::ranks) and writes only its slice of each sharded weight's
// gradient; the norms, embedding and head are computed once on the shared stream.
// On CPU the ranks share one copy of the parameters, gradients and optimizer state;
// only the compute is split.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dist/comm_threads.h"
#include "kvcache.h"
#include "threadpool.h"

namespace hc {

class Model;
struct LoraApp;
struct Linear;
struct ModelSpec;
struct LayerTape;
struct LoraMats;
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

  // Model::layer_forward / layer_backward (training) split over the ranks: x [T,C] in,
  // x_out [T,C] out; dy [T,C] is dL/dx_out on entry and dL/dx on return.
  void train_layer_forward(Model& m, int64_t l, const float* x, float* x_out, LayerTape& tp);
  void train_layer_backward(Model& m, int64_t l, float* dy, const float* x, const LayerTape& tp);

 private:
  struct Rank {
    std::unique_ptr<ThreadPool> pool;
    std::vector<float> q, k, v, att, gate, up, part, u;
    std::vector<float> dq, dk, dv, datt, dh, dup, du, dropped, dxd, dnorm;  // training
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

  // Runs fn(rank) on every rank at once; a rank that throws aborts the group's
  // collectives (so none waits forever) and the first error is rethrown here.
  void run_ranks(const std::function<void(int)>& fn);

  // training halves (rank_train.cc); `rt` is the rank's own part of the layer's tape
  void train_attention(Model& m, int r, LayerTape& rt, const LayerTape& tp, int64_t l, int64_t T);
  void train_mlp(Model& m, int r, LayerTape& rt, const LayerTape& tp, int64_t l, int64_t T);
  // out[T, shard] = in·W[shard rows]ᵀ (+ bias) + s·(dropout(in)·Aᵀ)·B[shard rows]ᵀ
  void train_column(Model& m, int r, LayerTape& rt, float* out, const float* in, int64_t l, int t, Slice sh,
                    int64_t T);
  // rank_[r].part[T, out] = in[T, shard]·W[:, shard]ᵀ + LoRA, to be all-reduced
  void train_row(Model& m, int r, LayerTape& rt, const float* in, int64_t l, int t, Slice sh, int64_t T);
  // dx[T, in] = beta·dx + (this rank's share of) dy[T, shard]·W[shard rows]; gradients of the slice
  void column_backward(Model& m, int r, const LayerTape& rt, float* dx, float beta, const float* dy, const float* x,
                       int64_t l, int t, Slice sh, int64_t T);
  // dx[T, shard] = dy[T, out]·W[:, shard]; gradients of the slice
  void row_backward(Model& m, int r, const LayerTape& rt, float* dx, const float* dy, const float* x, int64_t l, int t,
                    Slice sh, int64_t T);
  // w's element `elements` as a byte pointer, whatever its storage type: a shard's view
  static const void* at(const Linear& w, int64_t elements);
  static const LoraMats* lora_of(const Model& m, int64_t l, int t);  // the tape adapter's, or null
  // this rank's LoRA input: in, or in·mask over the columns [c0, c0 + K) of a [T, ld] mask
  const float* dropped(Model& m, int r, const LayerTape& rt, const float* in, int t, int64_t c0, int64_t K,
                       int64_t ld, int64_t T);

  int n_;
  dist::RankLauncher ranks_;  // one thread and communicator per rank; each rank drives its own kernel pool
  std::vector<Rank> rank_;
};

}  // namespace hc
