// The CUDA half of exec_train.h: device memory and the library's hc_cuda_dev_* training
// entry points (cuda/train_resident.cu), queued on the current device's stream; only
// download() (and sum_squares' one scalar) waits.

#include <limits>

#include "cuda_library.h"
#include "errors.h"
#include "exec_train.h"
#include "train/adapter.h"
#include "train/params.h"

namespace hc {

namespace {

const CudaLibrary& lib() { return cuda_library(); }

class CudaTrainOps final : public TrainOps {
 public:
  ~CudaTrainOps() override {
    for (void* p : {rinv_, delta_, partials_})
      if (p) lib().hc_cuda_free(p);
  }
  void* alloc(int64_t bytes) override {
    void* p = nullptr;
    cuda_call(lib().hc_cuda_malloc(&p, static_cast<size_t>(bytes)));
    cuda_call(lib().hc_cuda_dev_zero(p, static_cast<size_t>(bytes)));
    return p;
  }
  void release(void* p) override { lib().hc_cuda_free(p); }
  bool host() const override { return false; }
  void upload(void* dst, const void* src, int64_t bytes) override {
    cuda_call(lib().hc_cuda_upload(dst, src, static_cast<size_t>(bytes)));
  }
  void download(void* dst, const void* src, int64_t bytes) override {
    cuda_call(lib().hc_cuda_download(dst, src, static_cast<size_t>(bytes)));
  }
  void copy(float* dst, const float* src, int64_t n) override {
    if (dst != src) cuda_call(lib().hc_cuda_dev_copy(dst, src, static_cast<size_t>(n) * 4));
  }
  void zero(float* p, int64_t n) override { cuda_call(lib().hc_cuda_dev_zero(p, static_cast<size_t>(n) * 4)); }

  void linear(float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M, int64_t N, int64_t K,
              int64_t ldw) override {
    cuda_call(lib().hc_cuda_dev_gemm(out, x, w, static_cast<int>(dt), bias, M, N, K, K, ldw, N, 0, 1, 1.0f, 0.0f));
  }
  void linear_backward(float* dx, float beta, float* dw, float* db, const float* dy, const float* x, const void* w,
                       DType dt, int64_t M, int64_t N, int64_t K, int64_t ldw) override {
    // a device's row-parallel shards are packed copies (Exec::weight_columns): never strided here
    if (ldw != K) throw Error("unsupported", "a strided weight in the device's linear backward");
    cuda_call(lib().hc_cuda_dev_linear_backward(dx, beta, dw, db, dy, x, w, static_cast<int>(dt), M, N, K));
  }
  void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* w, int64_t M,
                        int64_t C, float eps) override {
    cuda_call(lib().hc_cuda_dev_rmsnorm_backward(dx, dweight, grow(rinv_, rinv_n_, M), dy, x, w, M, C, eps));
  }
  void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) override {
    cuda_call(lib().hc_cuda_dev_rope_backward(dx, cos_t, sin_t, T, H, HD));
  }
  void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T,
                               int64_t NH, int64_t NKV, int64_t HD, int64_t window) override {
    cuda_call(lib().hc_cuda_dev_attention_train_forward(out, lse, q, k, v, T, NH, NKV, HD, window));
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                          const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                          int64_t window) override {
    cuda_call(lib().hc_cuda_dev_attention_backward(dq, dk, dv, grow(delta_, delta_n_, T * NH), dout, q, k, v, lse, T,
                                                   NH, NKV, HD, window));
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t N) override {
    cuda_call(lib().hc_cuda_dev_swiglu_backward(dgate, dup, dout, gate, up, N));
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C) override {
    cuda_call(lib().hc_cuda_dev_embedding_backward(dtable, dout, tokens, T, C));
  }
  void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) override {
    cuda_call(lib().hc_cuda_dev_logprob(logp, logits, targets, T, V));
  }
  void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets, int64_t T,
                        int64_t V) override {
    cuda_call(lib().hc_cuda_dev_logprob_backward(dlogits, dlogp, logits, targets, T, V));
  }
  void dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p, uint64_t seed,
                    uint64_t counter, int64_t layer, int t) override {
    cuda_call(lib().hc_cuda_dev_dropout_mask(mask, rows, cols, ld, c0, p, dropout_key(seed, counter, layer, t),
                                             static_cast<float>(1.0 / (1.0 - p))));
  }
  void mul(float* out, const float* a, const float* b, int64_t n, bool accumulate) override {
    cuda_call(lib().hc_cuda_dev_mul(out, a, b, n, accumulate ? 1 : 0));
  }
  void value_head(float* values, const float* xf, const float* vh, int64_t T, int64_t C) override {
    cuda_call(lib().hc_cuda_dev_value_head(values, xf, vh, T, C));
  }
  void value_head_backward(float* dxf, float* dvh, const float* g, const float* xf, const float* vh, int64_t T,
                           int64_t C) override {
    cuda_call(lib().hc_cuda_dev_value_head_backward(dxf, dvh, g, xf, vh, T, C));
  }
  double sum_squares(const std::vector<std::pair<const float*, int64_t>>& tensors) override {
    // [0] the accumulator, [1..256] one launch's partial sums
    double* acc = reinterpret_cast<double*>(grow(partials_, partials_n_, 2 * 257));
    cuda_call(lib().hc_cuda_dev_zero(acc, sizeof(double)));
    for (const auto& [g, n] : tensors) cuda_call(lib().hc_cuda_dev_sum_squares(acc, acc + 1, g, n));
    double sq = 0;
    download(&sq, acc, sizeof sq);
    return sq;
  }
  void adamw(float* data, float* grad, float* m, float* v, int64_t n, const AdamW& a, float clip) override {
    cuda_call(lib().hc_cuda_dev_adamw(data, grad, m, v, n, clip, a.decay, a.b1, a.b2, a.step_size, a.bc2_sqrt, a.eps));
  }
  // the allocation stays: it is the Exec's pinned copy, which the model's forward reads
  void discard(float* p, int64_t n) override { cuda_call(lib().hc_cuda_dev_fill(p, n, std::numeric_limits<float>::quiet_NaN())); }

 private:
  // device scratch of at least n floats
  float* grow(void*& p, int64_t& have, int64_t n) {
    if (have < n) {
      if (p) lib().hc_cuda_free(p);
      p = nullptr;
      have = 0;
      cuda_call(lib().hc_cuda_malloc(&p, static_cast<size_t>(n) * 4));
      have = n;
    }
    return static_cast<float*>(p);
  }
  void *rinv_ = nullptr, *delta_ = nullptr, *partials_ = nullptr;
  int64_t rinv_n_ = 0, delta_n_ = 0, partials_n_ = 0;
};

}  // namespace

std::unique_ptr<TrainOps> make_cuda_train_ops() { return std::make_unique<CudaTrainOps>(); }

}  // namespace hc
