// The CPU half of exec_train.h: host memory and the CPU kernels on the model's pool,
// exactly what model_train.cc called directly before it ran over an Exec.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "exec_train.h"
#include "train/adapter.h"
#include "train/params.h"

namespace hc {

namespace {

class HostMemory : public ExecMemory {
 public:
  void* alloc(int64_t bytes) override { return new char[static_cast<size_t>(bytes)](); }
  void release(void* p) override { delete[] static_cast<char*>(p); }
};

class CpuTrainOps final : public TrainOps {
 public:
  explicit CpuTrainOps(ThreadPool& pool) : pool_(pool) {}
  void* alloc(int64_t bytes) override { return host_memory().alloc(bytes); }
  void release(void* p) override { host_memory().release(p); }
  bool host() const override { return true; }
  void upload(void* dst, const void* src, int64_t bytes) override {
    if (dst != src) std::memcpy(dst, src, static_cast<size_t>(bytes));
  }
  void download(void* dst, const void* src, int64_t bytes) override { upload(dst, src, bytes); }
  void copy(float* dst, const float* src, int64_t n) override { upload(dst, src, n * 4); }
  void zero(float* p, int64_t n) override { std::memset(p, 0, static_cast<size_t>(n) * 4); }

  void linear(float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M, int64_t N, int64_t K,
              int64_t ldw) override {
    cpu::gemm(false, true, M, N, K, 1.f, x, K, w, dt, ldw, 0.f, out, N, bias, pool_, cpu::MatmulPrecision::Highest,
              true);
  }
  void linear_backward(float* dx, float beta, float* dw, float* db, const float* dy, const float* x, const void* w,
                       DType dt, int64_t M, int64_t N, int64_t K, int64_t ldw) override {
    if (ldw == K) {
      if (dw || db) cpu::matmul_backward(nullptr, dw, db, dy, x, w, dt, M, N, K, pool_);
    } else {  // a row-parallel rank's columns of w and dw
      if (dw) cpu::gemm(true, false, N, K, M, 1.f, dy, N, x, DType::F32, K, 1.f, dw, ldw, nullptr, pool_);
      if (db) cpu::matmul_backward(nullptr, nullptr, db, dy, x, w, dt, M, N, K, pool_);
    }
    if (dx) cpu::gemm(false, false, M, K, N, 1.0f, dy, N, w, dt, ldw, beta, dx, K, nullptr, pool_);
  }
  void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* w, int64_t M,
                        int64_t C, float eps) override {
    cpu::rmsnorm_backward(dx, dweight, dy, x, w, M, C, eps, pool_);
  }
  void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) override {
    cpu::rope_backward(dx, cos_t, sin_t, T, H, HD, pool_);
  }
  void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T,
                               int64_t NH, int64_t NKV, int64_t HD, int64_t window) override {
    cpu::attention_train_forward(out, lse, q, k, v, T, NH, NKV, HD, window, pool_);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                          const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                          int64_t window) override {
    cpu::attention_backward(dq, dk, dv, dout, q, k, v, lse, T, NH, NKV, HD, window, pool_);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t N) override {
    cpu::swiglu_backward(dgate, dup, dout, gate, up, N, pool_);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C) override {
    cpu::embedding_backward(dtable, dout, tokens, T, C);
  }
  void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) override {
    cpu::logprob_forward(logp, logits, targets, T, V, pool_);
  }
  void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets, int64_t T,
                        int64_t V) override {
    cpu::logprob_backward(dlogits, dlogp, logits, targets, T, V, pool_);
  }
  void dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p, uint64_t seed,
                    uint64_t counter, int64_t layer, int t) override {
    hc::dropout_mask(mask, rows, cols, ld, c0, p, seed, counter, layer, t);
  }
  void mul(float* out, const float* a, const float* b, int64_t n, bool accumulate) override {
    if (accumulate)
      for (int64_t i = 0; i < n; i++) out[i] += a[i] * b[i];
    else
      for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
  }
  void value_head(float* values, const float* xf, const float* vh, int64_t T, int64_t C) override {
    for (int64_t t = 0; t < T; t++) {
      double acc = 0;
      for (int64_t i = 0; i < C; i++) acc += static_cast<double>(vh[i]) * xf[t * C + i];
      values[t] = static_cast<float>(acc);
    }
  }
  void value_head_backward(float* dxf, float* dvh, const float* g, const float* xf, const float* vh, int64_t T,
                           int64_t C) override {
    for (int64_t t = 0; t < T; t++)
      for (int64_t i = 0; i < C; i++) {
        dxf[t * C + i] += g[t] * vh[i];
        if (dvh) dvh[i] += g[t] * xf[t * C + i];
      }
  }
  double sum_squares(const std::vector<std::pair<const float*, int64_t>>& tensors) override {
    double sq = 0;
    for (const auto& [g, n] : tensors) sq += hc::sum_squares(g, n);
    return sq;
  }
  void adamw(float* data, float* grad, float* m, float* v, int64_t n, const AdamW& a, float clip) override {
    pool_.parallel_for(n, 4096, [&](int64_t b, int64_t e) {
      a.update(data + b, grad + b, m + b, v + b, e - b, clip);
    });
  }
  void discard(float* p, int64_t n) override {
    std::fill(p, p + n, std::numeric_limits<float>::quiet_NaN());
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
    const uintptr_t e = reinterpret_cast<uintptr_t>(p + n) & ~(page - 1);
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
  }

 private:
  ThreadPool& pool_;
};

}  // namespace

ExecMemory& host_memory() {
  static HostMemory m;
  return m;
}

std::unique_ptr<TrainOps> make_cpu_train_ops(ThreadPool& pool) { return std::make_unique<CpuTrainOps>(pool); }

}  // namespace hc
