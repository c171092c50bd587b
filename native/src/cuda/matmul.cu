// matmul: out[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]), w in its stored dtype (see gemm.cuh).
#include "gemm.cuh"
#include "launch.cuh"

namespace hc::cuda {

void matmul(float* out, const float* x, const void* w, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
            cudaStream_t stream) {
  gemm(out, x, w, dtype, bias, M, N, K, K, K, N, false, true, 1.0f, 0.0f, stream);
}

void gemm_launch(float* C, const float* A, const void* B, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
                 int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb, float alpha, float beta, cudaStream_t stream) {
  check_weight_dtype(dtype, tb ? K : N);
  require(dtype <= HC_CUDA_F16 || tb, "invalid_argument", "quantized weights are B stored [N,K] (tb)");
  gemm(C, A, B, dtype, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta, stream);
}

}  // namespace hc::cuda

extern "C" int hc_cuda_matmul(float* out, const float* x, const void* w, int dtype, const float* bias, int64_t M,
                              int64_t N, int64_t K) {
  using namespace hc::cuda;
  return entry([&] {
    check_weight_dtype(dtype, K);
    Buffer<float> d_x(x, M * K), d_out(M * N), d_bias(bias ? N : 0);
    Buffer<char> d_w(static_cast<const char*>(w), weight_bytes(dtype, N * K));
    if (bias) d_bias.upload(bias);
    matmul(d_out.get(), d_x.get(), d_w.get(), dtype, bias ? d_bias.get() : nullptr, M, N, K, 0);
    d_out.download(out);
  });
}
