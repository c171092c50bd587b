// Where the training forward/backward runs: the ops model_train.cc calls besides the
// serving forward's (exec.h), on the same Exec's memory. TrainOps is one Exec's training
// half — CPU kernels on host arrays (exec_cpu_train.cc) or the CUDA library's
// hc_cuda_dev_* training entry points on device memory (exec_cuda_train.cc) — so that
// trainForward/trainBackward/step are one code path whatever the device. Arr<T> is an
// array in that memory: the tape and the trainable set's gradients and moments live in it.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "dtype.h"

namespace hc {

struct AdamW;
class ThreadPool;

// Raw memory of an Exec.
class ExecMemory {
 public:
  virtual ~ExecMemory() = default;
  // zero-filled
  virtual void* alloc(int64_t bytes) = 0;
  virtual void release(void* p) = 0;
};
// Host memory (new/delete): what Arr::resize uses, e.g. the CPU tensor-parallel tape.
ExecMemory& host_memory();

class TrainOps : public ExecMemory {
 public:
  // true when this memory is the host's (the CPU): pointers may be read directly
  virtual bool host() const = 0;
  virtual void upload(void* dst, const void* host, int64_t bytes) = 0;
  // waits for the queued work
  virtual void download(void* host, const void* src, int64_t bytes) = 0;
  virtual void copy(float* dst, const float* src, int64_t n) = 0;
  virtual void zero(float* p, int64_t n) = 0;

  // training's forward product out[M,N] = x[M,K]·wᵀ (+ bias), w [N,K] stored as dt. On the
  // CPU x stays exact (never rounded to int8 for block weights nor below --matmul-precision
  // highest), because the backward differentiates this exact product; on a device it is the
  // serving GEMM (cuBLASLt takes bf16/f16 weights with x rounded to their type, as mixed-
  // precision training does). w's rows are ldw elements apart (K, or a tensor-parallel rank's
  // column shard read in place on the CPU: the whole weight's width)
  virtual void linear(float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M, int64_t N,
                      int64_t K, int64_t ldw) = 0;
  // dx[M,K] = beta·dx + dy·w (dx null: skipped); dw[N,K] += dyᵀ·x, db[N] += Σ rows of dy (null: frozen);
  // w's and dw's rows ldw elements apart (a device takes ldw = K only: its shards are packed)
  virtual void linear_backward(float* dx, float beta, float* dw, float* db, const float* dy, const float* x,
                               const void* w, DType dt, int64_t M, int64_t N, int64_t K, int64_t ldw) = 0;
  // shapes and aliasing as cpu/ops.h's; dweight null: frozen
  virtual void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* w, int64_t M,
                                int64_t C, float eps) = 0;
  virtual void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H,
                             int64_t HD) = 0;
  virtual void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                       int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                  const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                  int64_t window) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                               int64_t N) = 0;
  virtual void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C) = 0;
  virtual void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) = 0;
  virtual void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets,
                                int64_t T, int64_t V) = 0;
  // train/adapter.h dropout_mask (mask[rows, cols]: columns [c0, c0 + cols) of a [rows, ld]
  // input's), drawn where the memory is
  virtual void dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p, uint64_t seed,
                            uint64_t counter, int64_t layer, int t) = 0;
  // out = a·b (accumulate: out += a·b), element-wise
  virtual void mul(float* out, const float* a, const float* b, int64_t n, bool accumulate) = 0;
  // values[T] = xf[T,C]·vh (double accumulation); backward: dxf += g⊗vh, dvh += gᵀ·xf (dvh null: frozen)
  virtual void value_head(float* values, const float* xf, const float* vh, int64_t T, int64_t C) = 0;
  virtual void value_head_backward(float* dxf, float* dvh, const float* g, const float* xf, const float* vh, int64_t T,
                                   int64_t C) = 0;
  // Σ over the tensors of Σ g², in double (the global gradient norm's square)
  virtual double sum_squares(const std::vector<std::pair<const float*, int64_t>>& tensors) = 0;
  // AdamW::update on [0, n); grad zeroed
  virtual void adamw(float* data, float* grad, float* m, float* v, int64_t n, const AdamW& a, float clip) = 0;
  // p[n]'s contents are not needed until rewritten (a ZeRO-3 rank's whole tensor between
  // steps, train/zero.h): NaN-filled so a read before the next all-gather shows; on the CPU
  // its whole pages go back to the OS as well (the buffer stays mapped: pointers stay valid)
  virtual void discard(float* p, int64_t n) = 0;
};

// An array of T in one Exec's memory, grown on demand and kept across steps (see
// train/tape.h TrainScratch for why). Move-only.
template <typename T>
class Arr {
 public:
  Arr() = default;
  Arr(const Arr&) = delete;
  Arr& operator=(const Arr&) = delete;
  Arr(Arr&& o) noexcept { swap(o); }
  Arr& operator=(Arr&& o) noexcept {
    Arr(std::move(o)).swap(*this);
    return *this;
  }
  ~Arr() {
    if (p_) mem_->release(p_);
  }
  // n elements in mem's memory; contents kept only while the capacity suffices
  void fit(ExecMemory& mem, int64_t n) {
    if (mem_ != &mem || cap_ < n) {
      Arr().swap(*this);
      mem_ = &mem;
      p_ = static_cast<T*>(mem.alloc(n * static_cast<int64_t>(sizeof(T))));
      cap_ = n;
    }
    n_ = n;
  }
  void resize(size_t n) { fit(host_memory(), static_cast<int64_t>(n)); }  // host memory
  T* data() { return p_; }
  const T* data() const { return p_; }
  int64_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  // host memory only
  T& operator[](size_t i) { return p_[i]; }
  const T& operator[](size_t i) const { return p_[i]; }
  void swap(Arr& o) noexcept {
    std::swap(mem_, o.mem_), std::swap(p_, o.p_), std::swap(n_, o.n_), std::swap(cap_, o.cap_);
  }

 private:
  ExecMemory* mem_ = nullptr;
  T* p_ = nullptr;
  int64_t n_ = 0, cap_ = 0;
};
using Buf = Arr<float>;

// Each Exec's training half (exec_cpu_train.cc, exec_cuda_train.cc); the CUDA one works on
// the current device (the Exec binds it).
std::unique_ptr<TrainOps> make_cpu_train_ops(ThreadPool& pool);
std::unique_ptr<TrainOps> make_cuda_train_ops();

}  // namespace hc
