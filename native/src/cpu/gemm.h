// Internal general matrix product for the CPU kernels (forward and backward).
// Not part of the addon surface: matmul.h's forward and the training kernels
// (dX = dY·W with tb = false, dW += dYᵀ·X with ta = true, beta = 1) call it.
#pragma once
#include <cstdint>

#include "../dtype.h"
#include "../threadpool.h"
#include "matmul_kernels.h"

namespace hc::cpu {

// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C (+ bias[N] on every row)
//   op(A)[m,k] = ta ? A[k*lda + m] : A[m*lda + k]            (A is fp32)
//   op(B)[k,n] = tb ? B[n*ldb + k] : B[k*ldb + n]            (B stored as btype)
// beta == 0 never reads C (so C may hold garbage or NaN). bias may be null.
// precision: how x meets bf16 weights (matmul_kernels.h); only !ta, tb products with BF16
// weights on an AVX512-BF16 CPU run below Highest. exact_x: never round A to int8 for
// block-format B (matmul.h).
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const void* B, DType btype, int64_t ldb, float beta, float* C, int64_t ldc,
          const float* bias, ThreadPool& pool, MatmulPrecision precision = MatmulPrecision::Highest,
          bool exact_x = false);

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                  ThreadPool& pool) {
  gemm(ta, tb, M, N, K, alpha, A, lda, B, DType::F32, ldb, beta, C, ldc, nullptr, pool);
}

}  // namespace hc::cpu
