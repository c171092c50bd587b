// Where a model's serving forward runs. Model::forward (model.cc) is one code path that
// calls these ops; an Exec picks each op's implementation and owns the memory the
// pointers live in: CpuExec (exec_cpu.cc) the CPU kernels on host memory, CudaExec
// (exec_cuda.cc) the CUDA library's hc_cuda_dev_* ops on device memory, with the weights
// uploaded once at load in their checkpoint dtype, the paged KV pool on the device and
// the activations there too. Per step only token ids, positions and block tables go
// down (ints) and the logits rows come back (read).
//
// Every float*/int32_t* an op takes is the Exec's memory: a scratch slot, a resident
// weight (weight()) or the KV pool. Shapes and aliasing as the CPU kernels (cpu/ops.h).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cpu/matmul_kernels.h"
#include "cpu/ops.h"
#include "dtype.h"
#include "exec_train.h"
#include "threadpool.h"

namespace hc {

// Scratch buffers of a forward step, each grown to the largest step so far.
// AttnPart: a split decode attention's partial rows (CudaExec)
enum class Slot { X, Xn, Q, K, V, Att, Tmp, Gate, Up, Cos, Sin, Sel, LoraU, Logits, AttnPart, Count };
// Small integer arrays copied from the host each step.
// LoraOwn/LoraUndo: each row's LoRA slot and the merged adapter's undo slot (−1: none).
enum class ISlot { Tokens, Pos, SeqOf, Npos, Tables, Rows, LoraOwn, LoraUndo, Count };

// Strides in elements of `dtype`: f32, bf16 or f16 (--kv-dtype; a device pool: f32 or bf16).
struct KvGeometry {
  int64_t layers, blocks, layer_stride, block_stride, head_stride, block_size;
  DType dtype = DType::F32;
};

class Exec {
 public:
  virtual ~Exec() = default;
  // "cpu" or "cuda"
  virtual const char* device() const = 0;
  // "cpu", or the device's name
  virtual std::string device_name() const = 0;

  // Makes this Exec's device current on the calling thread (steps run on worker threads).
  virtual void bind() {}
  virtual float* scratch(Slot s, int64_t n) = 0;
  // host ints in this Exec's memory (a device copy, or the host array itself on the CPU)
  virtual const int32_t* ints(ISlot s, const int32_t* host, int64_t n) = 0;
  // The resident copy of a weight the model reads, by host address: mapped checkpoint
  // tensors are uploaded once; `mutable_` ones (norms, biases, LoRA, merged or trained
  // weights: host vectors the model rewrites) are dropped by weights_changed() and
  // uploaded again when next read. Identity on the CPU.
  virtual const void* weight(const void* host, int64_t bytes, bool mutable_) = 0;
  // The model rewrote some mutable weight (training step, merge, a parameter written).
  virtual void weights_changed() = 0;
  // The KV pool's K and V of layer l (the KVCache's host pool on the CPU), elements of
  // KvGeometry::dtype.
  virtual void* kv_k(int64_t l) = 0;
  virtual void* kv_v(int64_t l) = 0;

  // ---- forward ops ----
  // out[M,N] = x[M,K]·wᵀ (+ bias), w [N,K] stored as dt. packed: the CPU's copy of w repacked at
  // load (cpu/quant_repack.h), or null; other devices read w.
  virtual void linear(float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M, int64_t N,
                      int64_t K, const cpu::RepackedWeight* packed) = 0;
  // Several linears of the same x[M,K] (q/k/v, gate/up), each as linear() computes it; a
  // backend may run them as one launch or one parallel region (the CPU: cpu::matmul_group)
  struct LinearOut {
    float* out;
    const void* w;
    DType dt;
    const float* bias;
    int64_t N;
    const cpu::RepackedWeight* packed;  // as linear()'s
  };
  virtual void linears(const LinearOut* outs, int count, const float* x, int64_t M, int64_t K) {
    for (int i = 0; i < count; i++)
      linear(outs[i].out, x, outs[i].w, outs[i].dt, outs[i].bias, M, outs[i].N, K, outs[i].packed);
  }
  // C = alpha·op(A)·op(B) + beta·C, all fp32 (the LoRA products)
  virtual void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                     const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;
  virtual void rmsnorm(float* out, const float* x, const float* w, int64_t M, int64_t C, float eps) = 0;
  virtual void rope_tables(float* cos_t, float* sin_t, const int32_t* pos, const float* inv_freq, int64_t T,
                           int64_t half, float scaling) = 0;
  virtual void rope(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) = 0;
  // rope on q[T,NH,HD] and k[T,NKV,HD] in one pass (one launch on a device)
  virtual void rope_qk(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD) = 0;
  // x[M,C] += b, then out = rmsnorm(x)·w: a sublayer's residual add fused with the next
  // pre-norm, so the residual stream is read once for both (out aliases neither)
  virtual void residual_rmsnorm(float* x, float* out, const float* b, const float* w, int64_t M, int64_t C,
                                float eps) = 0;
  virtual void embedding(float* out, const int32_t* tokens, const void* table, DType dt, int64_t T, int64_t C) = 0;
  virtual void residual(float* out, const float* a, const float* b, int64_t N) = 0;
  virtual void swiglu(float* out, const float* gate, const float* up, int64_t N) = 0;
  // k,v[T,NKV,HD] into layer l of the pool (rounded to its dtype); tables[nseq, max_blocks]
  virtual void kv_write(void* k_pool, void* v_pool, const float* k, const float* v, const int32_t* tables,
                        int64_t max_blocks, const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV,
                        int64_t HD, const KvGeometry& g) = 0;
  virtual void paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool,
                               const int32_t* tables, int64_t max_blocks, int64_t nseq, const int32_t* seq_of,
                               const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                               const KvGeometry& g, int64_t window) = 0;
  virtual void gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C) = 0;
  // ---- batched multi-adapter LoRA (cpu/lora.cc, cuda/lora.cu) ----
  // The step's adapter table (cpu::LoraEntry: a/b are weight() pointers) in this Exec's memory.
  virtual const cpu::LoraEntry* lora_table(const cpu::LoraEntry* host, int64_t n) = 0;
  // out[t,:] += e.scale·(x[t,:]·e.aᵀ)·e.bᵀ, e = entries[slot[t]], every row t with slot[t] >= 0,
  // whatever the mix of adapters: one op per linear. u [T, max_rank] scratch.
  virtual void lora(float* out, const float* x, const cpu::LoraEntry* entries, const int32_t* slot, float* u,
                    int64_t T, int64_t N, int64_t K, int64_t max_rank) = 0;
  // ---- CUDA graphs of decode steps (exec_cuda.cc) ----
  // Runs `step`, the ops of one forward whose inputs all sit in this Exec's buffers already
  // (ints(), lora_table(), scratch() called before it). A non-empty `key` names the step's
  // shape: a device with graphs captures the key's second step as a graph and replays that
  // graph for every later one, until a buffer it holds is freed or reallocated (weights_changed,
  // a larger scratch) and it is captured again. Eager on the CPU, with graphs off, or key "".
  virtual void run_step(const std::string& key, const std::function<void()>& step) {
    (void)key;
    counts_.eager_steps++;
    step();
  }
  // whether run_step may replay graphs (the forward then pads decode steps to bucket sizes)
  virtual bool graphs() const { return false; }
  struct StepCounts {
    int64_t graph_replays = 0;  // steps run as one graph launch (the capturing step included)
    int64_t graph_captures = 0;
    int64_t eager_steps = 0;    // steps whose ops were launched one by one
  };
  StepCounts step_counts() const { return counts_; }
  // host[n] = buf[n]; waits for the queued work
  virtual void read(float* host, const float* buf, int64_t n) = 0;

  // ---- tensor-parallel shards (rank.cc) ----
  // A weight as a GEMM reads it: its first row and the distance between rows (elements).
  struct View {
    const void* w;
    int64_t ld;
  };
  // Columns [c0, c1) of every row of a row-major [rows, cols] weight stored as dt (a
  // row-parallel rank's shard): the host array in place, rows `cols` apart, on the CPU; a
  // packed [rows, c1 − c0] copy uploaded once (again after weights_changed() if `mut`) on a
  // device, so each device holds only its shard.
  virtual View weight_columns(const void* host, DType dt, int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                              bool mut) = 0;
  // out[M,N] = x[M,K]·wᵀ (+ bias), w's rows ldw elements apart
  virtual void linear_ld(float* out, const float* x, const void* w, DType dt, int64_t ldw, const float* bias, int64_t M,
                         int64_t N, int64_t K) = 0;

  // ---- training (exec_train.h; model_train.cc) ----
  virtual TrainOps& train() = 0;
  // A trainable fp32 tensor, resident and updated in place by the optimizer where this
  // Exec's memory is: the copy weight() returns for `host`, uploaded if absent, kept across
  // weights_changed() until unpin(). The host array goes stale while pinned: pull() it.
  virtual float* pin(float* host, int64_t n) = 0;
  virtual void unpin(const float* host) = 0;
  // host[n] = the resident copy / the resident copy = host[n] (identity on the CPU)
  virtual void pull(float* host, int64_t n) = 0;
  virtual void push(const float* host, int64_t n) = 0;
  // Bytes of weights moved between host and device so far (uploads by weight()/pin()/push(),
  // downloads by pull()): what a serving ⇄ training switch costs; 0 on the CPU.
  virtual int64_t weight_bytes_moved() const = 0;

 protected:
  StepCounts counts_;
};

// k_pool, v_pool: the KVCache's host storage
// precision: how its linears' activations meet bf16 weights (cpu/matmul_kernels.h)
std::unique_ptr<Exec> make_cpu_exec(ThreadPool& pool, void* k_pool, void* v_pool, const KvGeometry& kv,
                                    cpu::MatmulPrecision precision);
// Throws "backend_unavailable" (naming the library paths searched) without a usable device.
// The pool is kv.blocks blocks of kv.dtype (f32 or bf16).
// graphs: decode steps as CUDA graphs (run_step)
std::unique_ptr<Exec> make_cuda_exec(int device, const KvGeometry& kv, bool graphs = false);

}  // namespace hc
