// out[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) with w stored as F32, BF16 or F16.
// Row-major everywhere; w rows are output features (HF/PyTorch Linear layout).
// Small M (decode) is bandwidth-bound: stream w once, converting on the fly.
// Large M (prefill, training) is compute-bound: packed, cache-blocked GEMM.
// Both split the work over the pool's ranks; the dispatcher picks the AVX2/FMA
// variant when the CPU has it and the portable one otherwise.
#pragma once
#include <cstdint>
#include <string>

#include "../dtype.h"
#include "../threadpool.h"
#include "matmul_kernels.h"

namespace hc::cpu {

// precision: how x meets BF16 weights (matmul_kernels.h); the other weight types ignore it.
// exact_x: block weights never meet int8-rounded activations (cpu/quant_dot.h), for training's
// forward, whose backward differentiates the exact product.
// packed: w's copy repacked at load (quant_repack.h), read instead of w where the kernels can;
// null where w has none.
void matmul(float* out, const float* x, const void* w, DType wtype, const float* bias, int64_t M,
            int64_t N, int64_t K, ThreadPool& pool, MatmulPrecision precision = MatmulPrecision::Highest,
            bool exact_x = false, const RepackedWeight* packed = nullptr);

// Several products of the same x (q/k/v, gate/up): out_i[M,N_i] = x[M,K]·w_iᵀ (+ bias_i).
// Each result is bit-for-bit what matmul() gives it; where all of them stream (decode) they
// run as one parallel region over their concatenated rows, one wake-up and one barrier
// instead of one per product (matmul_group.cc).
struct MatmulOut {
  float* out;
  const void* w;
  DType wtype;
  const float* bias;
  int64_t N;
  const RepackedWeight* packed = nullptr;  // w's repacked copy, as matmul()'s
};
void matmul_group(const MatmulOut* outs, int count, const float* x, int64_t M, int64_t K, ThreadPool& pool,
                  MatmulPrecision precision = MatmulPrecision::Highest);

// "highest" | "high" | "medium" (--matmul-precision); anything else throws invalid_argument naming it.
MatmulPrecision matmul_precision_of(const std::string& name);

// Backward of matmul (training):
//   dx[M,K] = dout[M,N] · w[N,K]          (overwritten; w stored as wtype)
//   dw[N,K] += dout[M,N]ᵀ · x[M,K]        (fp32, accumulates over micro-batches)
//   dbias[N] += Σ_m dout[m,:]              (accumulates)
// Any of dx, dw, dbias may be null (frozen weights, no bias, first layer).
void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const void* w,
                     DType wtype, int64_t M, int64_t N, int64_t K, ThreadPool& pool);

// Whether the active kernels read weights repacked at load (GemmArgs::packed): a holder
// repacks nothing where they do not (the portable and the plain AVX-512 variants).
bool reads_repacked_weights();

// Machine probes for the benchmarks' roofline.
double triad_gbps(int64_t megabytes, int reps, ThreadPool& pool);  // a[i] = b[i] + s*c[i], 3 arrays of `megabytes` MiB each, best of reps
double gemm_peak_gflops(int64_t n, int reps, ThreadPool& pool);    // square fp32 matmul above
// The instruction ceiling: vdpbf16ps (bf16) or vfmadd231ps zmm back to back on every rank, GFLOP/s summed
// over ranks from each rank's best CPU time; 0 where the CPU lacks the instruction.
double instr_peak_gflops(bool bf16, int reps, ThreadPool& pool);

// Which kernel variant runs here: dispatch.h's level name ("portable", "avx2", "avx512", "avx512vnni", "avx512bf16").
const char* cpu_features();

}  // namespace hc::cpu
