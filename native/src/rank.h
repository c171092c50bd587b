// Tensor parallelism (--tensor-parallel N) on in-process ranks, Megatron layout:
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
// The collectives go through the Communicator (dist/communicator.h).
// LoRA: each rank builds the step's batched table (Model::lora_plan) on its own Exec, every
// entry pointing at its shard — B's rows of a column-parallel linear, A's columns (a row
// stride) of a row-parallel one, whose partial products the all-reduce sums — and applies
// every row's adapter with one batched op per linear, as one rank does.
// Serving runs each rank on its own Exec (exec.h), one code path for both kinds of rank:
// on the CPU a thread with its own kernel pool over the host arrays (the shards are views,
// the KV pool shared), collectives through thread communicators; on CUDA (serve --device
// cuda --tensor-parallel N) rank r drives device r from its thread — its shard of every
// weight uploaded there once (o/down's column shards packed), its KV heads' own block pool,
// its replicated copy of the residual stream — and the all-reduces run through NCCL on the
// device buffers (dist/nccl_devices.h). Rank 0 shares the model's Exec on device 0, where
// the model's LM head then reads the residual stream; on the CPU the head reads rank 0's
// host array.
// Training (rank_train.cc) splits the same way and runs the same way, one code path for
// thread ranks and device ranks: each rank on its Exec and its TrainOps, its tape of the layer
// (LayerTape::ranks) in its memory, the frozen base read through the shards serving holds
// (column_shard/row_shard), the collectives through the same communicators (NCCL on
// devices). Like serving, each rank keeps its own copy of the residual stream: the layer's
// input (and in the backward the upstream gradient) is broadcast from rank 0, whose copies are
// the model's tape, and the norms and residual adds are replicated work; the embedding, final
// norm, head and value head run once, on rank 0 (the model's Exec).
// The trainable state. Every rank writes only its slice of a split tensor's gradient, and a
// replicated tensor's gradient is written by rank 0 alone (its partial sums all-reduced
// first), so "each rank's gradient buffer summed over the ranks" is the whole gradient, exactly
// (every other rank adds zeros). On the CPU the ranks share the one host copy of the
// parameters, gradients and optimizer state (ParamSet): the slices are disjoint, so nothing is
// summed. On devices rank 0's state is the model's ResidentParams (pinned data, gradients,
// AdamW moments on device 0) and every rank r > 0 keeps a mirror on device r: the whole of each
// trainable tensor pinned in its Exec (the copy its forward, LoRA serving included, reads) and
// a whole-tensor gradient buffer, zeroed. LoRA tensors are small, so whole copies cost little
// and keep every rank's offsets those of the CPU code. A step (step()) all-reduces each
// gradient over NCCL, runs rank 0's existing optimizer (the global norm over every gradient
// once, clipping, AdamW), zeroes the mirrors' gradients and broadcasts the updated tensors
// from device 0 — deterministic (one optimizer, identical bits on every device) and no host ⇄
// device traffic. A sharded optimizer would save the moments' memory of N − 1 devices, which
// for LoRA is not worth a second optimizer. A rank failing in the reductions leaves every
// parameter, moment and the step count as they were (AdamW runs only after all of them) and
// the step's gradients are dropped on every rank, as a data-parallel group does.
// Full-parameter training at N > 1 on devices is refused (set_trainable): the shards serving
// uploads are copies the optimizer would not update, and whole fp32 masters on every device
// would undo the split's memory saving; on the CPU the shards are views, so it trains there.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "dist/comm_threads.h"
#include "exec.h"
#include "kvcache.h"
#include "threadpool.h"
#include "train/params.h"

namespace hc {

class Model;
struct LoraRows;
struct LoraPlan;
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

  // Makes the serving ranks' Execs once the model has its KV cache and Exec: on the
  // CPU each rank's CpuExec over its KV heads of the shared host pool; on CUDA rank 0 is
  // the model's Exec (made with kv_geometry(0)) and rank r > 0 a CudaExec on device r, the
  // ranks joined by NCCL. Throws "backend_unavailable" / "nccl_unavailable" without them.
  void attach(Model& m, bool cuda);
  // Rank r's KV pool geometry on a device: its NKV / N heads in every block.
  KvGeometry kv_geometry(const KvGeometry& whole, int r) const;
  // Uploads every rank's shard of every weight the forward reads (devices; no-op on the CPU).
  void upload(Model& m);
  void weights_changed();
  // Model::forward's embedding and decoder layers over the packed batch (T tokens, nseq
  // sequences, the step's host indexing in m.pos_/seq_of_/npos_/tables_, maxb blocks per
  // table row), every rank on its Exec; returns rank 0's residual stream [T, C].
  float* forward(Model& m, const std::vector<int32_t>& tokens, const LoraRows& lora, int64_t T, int64_t nseq,
                 int64_t maxb);

  // ---- training (rank_train.cc) ----
  // Each rank's copy of the forward's RoPE tables (m.tape_.cos/sin, [T, HD/2]).
  void train_begin(Model& m, int64_t T);
  // Model::layer_forward / layer_backward (training) split over the ranks: x [T,C] in,
  // x_out [T,C] out (rank 0's memory: the model's tape); dy [T,C] is dL/dx_out on entry and
  // dL/dx on return.
  void train_layer_forward(Model& m, int64_t l, const float* x, float* x_out, LayerTape& tp);
  void train_layer_backward(Model& m, int64_t l, float* dy, const float* x, const LayerTape& tp);
  // The model's trainable set was chosen (after its ResidentParams attached) / is being dropped:
  // the device ranks' mirrors made / unpinned and freed. No-ops on the CPU.
  void attach_trainable(Model& m);
  void detach_trainable(Model& m);
  // true when device ranks hold mirrors: the model's step is step() then
  bool mirrors() const { return rank_.size() > 1 && !rank_[1].mirror.empty(); }
  // The devices' step (above): gradients all-reduced, rank 0's optimizer, the tensors broadcast.
  StepResult step(Model& m, const OptimizerStep& o);
  void zero_grads(Model& m);
  // A trainable tensor's host array was rewritten (writeParameter): every mirror uploads it.
  void push(Model& m, const float* host, int64_t n);
  // weight bytes the rank Execs the model does not own moved between host and device
  int64_t weight_bytes_moved() const;

 private:
  // one trainable tensor on a device rank r > 0 (above): its pinned whole copy and gradient
  struct Mirror {
    float* host;  // the ParamSet's host array: the tensor's name in every Exec
    int64_t n;
    float* data;  // pinned in the rank's Exec
    Buf grad;
  };
  struct Rank {
    std::unique_ptr<ThreadPool> pool;
    // training scratch, in the rank's memory: the row-parallel sums [T, C], the layer's input
    // and upstream gradient (rank r > 0's copies), the backward's buffers
    Buf part, x, dy;
    Buf dq, dk, dv, datt, dh, dup, du, dropped, dxd, dnorm;
    std::vector<Mirror> mirror;                      // devices, r > 0: the trainable set
    std::unordered_map<const void*, size_t> mirror_of;  // host array → its mirror
    Slice heads, kv_heads, mlp;
    Exec* exec = nullptr;  // the rank's ops and memory (serving and training)
    KvGeometry kv{};       // ... and its KV heads' geometry there
    struct {
      const int32_t *pos, *seq_of, *npos, *tables;
    } step{};  // this step's indexing in the rank's memory
    std::vector<cpu::LoraEntry> lora_entries;  // the host copy of the step's LoRA table (its shards)
  };
  // One serving step on rank r (its thread, its device bound).
  void rank_forward(Model& m, int r, const std::vector<int32_t>& tokens, const LoraRows& lora, int64_t T,
                    int64_t nseq, int64_t maxb);
  // the step's attention / MLP half on rank r from xn, leaving its partial sums [T, C] in `part`
  void attention(Model& m, int r, int64_t l, const LoraPlan& lp, int64_t T, int64_t nseq, int64_t maxb, float* part);
  void mlp(Model& m, int r, int64_t l, const LoraPlan& lp, int64_t T, float* part);
  // out[T, shard] = in · W[shard rows]ᵀ (+ bias slice) + each row's LoRA's slice
  static void column(Exec& ex, float* out, const float* in, const Linear& w, Slice sh, int64_t l, int t,
                     const LoraPlan& lp, int64_t T);
  // part[T, out] = in[T, shard] · W[:, shard]ᵀ (+ bias on rank 0) + each row's LoRA's partial sum (all-reduced later)
  static void row(Exec& ex, bool first, float* part, const float* in, const Linear& w, Slice sh, int64_t l, int t,
                  const LoraPlan& lp, int64_t T);
  // a rank's shards of w as its Exec reads them
  static const void* column_shard(Exec& ex, const Linear& w, Slice sh);
  static Exec::View row_shard(Exec& ex, const Linear& w, Slice sh);
  static const float* vec(Exec& ex, const std::vector<float>& v, int64_t begin = 0, int64_t n = -1);
  // the group's launcher and rank r's communicator: device ranks and NCCL, or thread ranks
  dist::RankLauncher& launcher() { return device_ranks_ ? *device_ranks_ : ranks_; }
  dist::Communicator& comm(int r) { return launcher().comm(r); }

  // Runs fn(rank) on every rank at once, each on its thread (its device bound by fn); a rank
  // that throws aborts the group's collectives (so none waits forever) and the first error is
  // rethrown here.
  void run_ranks(const std::function<void(int)>& fn) { launcher().run(fn); }
  // fn(rank, its Exec) for every device rank r > 0 in turn on the calling thread, its device
  // bound; the model's device bound again after
  void each_device_rank(Model& m, const std::function<void(int, Exec&)>& fn);

  // training halves (rank_train.cc); `rt` is the rank's own tape of the layer
  void train_attention(Model& m, int r, LayerTape& rt, int64_t l, int64_t T);
  void train_mlp(Model& m, int r, LayerTape& rt, int64_t l, int64_t T);
  // the gradient of the trainable tensor whose host array is `host` in rank r's memory; null: frozen
  float* grad(Model& m, int r, const void* host) const;
  // rank r's copy of the forward's RoPE tables
  const float* rope_cos(Model& m, int r) const;
  const float* rope_sin(Model& m, int r) const;
  // a trained (fp32, host-owned) tensor as rank r's Exec reads it
  static const float* trained(Exec& ex, const std::vector<float>& v);
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
  // this rank's LoRA input [T, K]: in, or in·its mask (rt.mask[t], the rank's columns)
  const float* dropped(Model& m, int r, const LayerTape& rt, const float* in, int t, int64_t K, int64_t T);

  int n_;
  dist::RankLauncher ranks_;  // one thread and communicator per rank; each rank drives its own kernel pool
  // CUDA: one thread per device and NCCL communicators (serving and training)
  std::unique_ptr<dist::RankLauncher> device_ranks_;
  std::vector<std::unique_ptr<Exec>> owned_;  // the rank Execs the model does not own
  std::vector<Rank> rank_;
};

}  // namespace hc
