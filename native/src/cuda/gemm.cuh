// The one GEMM of the CUDA backend, used by matmul and matmul_backward:
//   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] (+ beta · C) (+ bias[N])
// A fp32, B stored as Dt (fp32, bf16 or f16 widened, or llama.cpp's q8_0/q4_0/q4_k blocks
// dequantized, while loading the tile: the weights stay 4.5-8.5 bits on the device), row-major
// with leading dimensions; op(X) = Xᵀ when its flag is set. 64×64 output tiles, 16-deep
// K slices in shared memory, 16×16 threads each owning a strided 4×4 patch. Plain fp32
// FMA, no tensor cores: the same rounding model as the CPU kernels it is tested against.
#pragma once
#include "common.cuh"

namespace hc::cuda {

constexpr int kGemmTile = 64, kGemmDepth = 16, kGemmThreads = 256;

template <int Dt>
__global__ void __launch_bounds__(kGemmThreads)
gemm_kernel(float* C, const float* A, const void* B, const float* bias, int64_t M, int64_t N, int64_t K, int64_t lda,
            int64_t ldb, int64_t ldc, bool ta, bool tb, float alpha, float beta) {
  __shared__ float As[kGemmDepth][kGemmTile + 1];
  __shared__ float Bs[kGemmDepth][kGemmTile + 1];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kGemmTile, j0 = static_cast<int64_t>(blockIdx.x) * kGemmTile;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kGemmDepth) {
    for (int l = threadIdx.x; l < kGemmTile * kGemmDepth; l += kGemmThreads) {
      // the fast index follows memory order of the source, for coalescing
      const int r = ta ? l % kGemmTile : l / kGemmDepth, kk = ta ? l / kGemmTile : l % kGemmDepth;
      const int64_t i = i0 + r, k = k0 + kk;
      As[kk][r] = i < M && k < K ? (ta ? A[k * lda + i] : A[i * lda + k]) : 0.0f;
    }
    for (int l = threadIdx.x; l < kGemmTile * kGemmDepth; l += kGemmThreads) {
      const int c = tb ? l / kGemmDepth : l % kGemmTile, kk = tb ? l % kGemmDepth : l / kGemmTile;
      const int64_t j = j0 + c, k = k0 + kk;
      Bs[kk][c] = j < N && k < K ? load_weight<Dt>(B, tb ? j * ldb + k : k * ldb + j) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kGemmDepth; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; r++) a[r] = As[kk][ty + 16 * r];
#pragma unroll
      for (int c = 0; c < 4; c++) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
      for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; r++)
#pragma unroll
    for (int c = 0; c < 4; c++) {
      const int64_t i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
      if (i >= M || j >= N) continue;
      float v = alpha * acc[r][c];
      if (beta != 0.0f) v += beta * C[i * ldc + j];
      if (bias) v += bias[j];
      C[i * ldc + j] = v;
    }
}

// Launcher: device pointers, any dtype.
inline void gemm(float* C, const float* A, const void* B, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
                 int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb, float alpha, float beta,
                 cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid(blocks_for(N, kGemmTile), blocks_for(M, kGemmTile));
  require(grid.y <= 65535, "unsupported", "gemm: M too large for one launch");
  switch (dtype) {
    case HC_CUDA_F32:
      gemm_kernel<HC_CUDA_F32><<<grid, kGemmThreads, 0, stream>>>(C, A, B, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta);
      break;
    case HC_CUDA_BF16:
      gemm_kernel<HC_CUDA_BF16><<<grid, kGemmThreads, 0, stream>>>(C, A, B, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta);
      break;
    case HC_CUDA_Q8_0:
      gemm_kernel<HC_CUDA_Q8_0><<<grid, kGemmThreads, 0, stream>>>(C, A, B, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta);
      break;
    case HC_CUDA_Q4_0:
      gemm_kernel<HC_CUDA_Q4_0><<<grid, kGemmThreads, 0, stream>>>(C, A, B, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta);
      break;
    case HC_CUDA_Q4_K:
      gemm_kernel<HC_CUDA_Q4_K><<<grid, kGemmThreads, 0, stream>>>(C, A, B, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta);
      break;
    default:
      gemm_kernel<HC_CUDA_F16><<<grid, kGemmThreads, 0, stream>>>(C, A, B, bias, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta);
  }
  HC_CUDA_LAUNCHED("gemm_kernel");
}

}  // namespace hc::cuda
