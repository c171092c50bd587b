// Backward of matmul through the same GEMM (gemm.cuh):
//   dx[M,K] = dout[M,N] · w[N,K]     (overwritten; w widened from its dtype)
//   dw[N,K] += dout[M,N]ᵀ · x[M,K]   (fp32)
//   dbias[N] += Σ_m dout[m,:]
// Any of dx, dw, dbias may be null. Every sum runs in a fixed order: deterministic.
#include "gemm.cuh"
#include "launch.cuh"

namespace hc::cuda {

__global__ void dbias_kernel(float* dbias, const float* dout, int64_t M, int64_t N) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (n >= N) return;
  float s = 0.0f;
  for (int64_t m = 0; m < M; m++) s += dout[m * N + n];
  dbias[n] += s;
}

void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const void* w, int dtype,
                     int64_t M, int64_t N, int64_t K, cudaStream_t stream) {
  if (dx) gemm(dx, dout, w, dtype, nullptr, M, K, N, N, K, K, false, false, 1.0f, 0.0f, stream);
  if (dw) gemm(dw, dout, x, HC_CUDA_F32, nullptr, N, K, M, N, K, K, true, false, 1.0f, 1.0f, stream);
  if (dbias && N > 0) {
    dbias_kernel<<<blocks_for(N, 256), 256, 0, stream>>>(dbias, dout, M, N);
    HC_CUDA_LAUNCHED("dbias_kernel");
  }
}

}  // namespace hc::cuda

extern "C" int hc_cuda_matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x,
                                       const void* w, int dtype, int64_t M, int64_t N, int64_t K) {
  using namespace hc::cuda;
  return entry([&] {
    check_weight_dtype(dtype, K);
    Buffer<float> d_dout(dout, M * N), d_x(dw ? M * K : 0), d_dx(dx ? M * K : 0), d_dw(dw ? N * K : 0),
        d_db(dbias ? N : 0);
    Buffer<char> d_w(dx ? weight_bytes(dtype, N * K) : 0);
    if (dw) {
      d_x.upload(x);
      d_dw.upload(dw);
    }
    if (dx) d_w.upload(static_cast<const char*>(w));
    if (dbias) d_db.upload(dbias);
    matmul_backward(dx ? d_dx.get() : nullptr, dw ? d_dw.get() : nullptr, dbias ? d_db.get() : nullptr, d_dout.get(),
                    d_x.get(), d_w.get(), dtype, M, N, K, 0);
    if (dx) d_dx.download(dx);
    if (dw) d_dw.download(dw);
    if (dbias) d_db.download(dbias);
  });
}
