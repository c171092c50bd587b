// Int8 GEMM for the block formats (Q8_0, Q4_0, Q4_K weights) at M >= 2: prefill and batched
// decode, where quant_dot.h's streamed tiles re-unpack every weight block for each tile of
// rows of x and the fp32 packed GEMM runs at fp32 speed. Per call and rank:
//   x's rows quantized to int8 once (llama.cpp's q8_0 rounding, as quant_dot.h: the same
//   bound, |x − d_x·q| <= amax/254 per element of a block of 32);
//   B's columns, a panel at a time (≈ 256 KiB, kept in L2), unpacked to bytes and interleaved
//   so that one vector load holds 4 consecutive k of VN columns (VN = 16 on zmm, 8 on ymm),
//   with the blocks' scales (and Q4_K's mins) as VN-wide fp32 vectors;
//   a register tile of MR rows × NRV·VN columns: per block of 32, 8 vpdpbusd (AVX512-VNNI,
//   AVX-VNNI ymm) or vpmaddubsw + vpmaddwd (AVX2) per accumulator against x's 4 bytes
//   broadcast, then one fp32 FMA by d_w (a vector over columns) · d_x (a broadcast), so no
//   horizontal sums and one scale step per 8 integer steps.
// The backward and training (exact_x) keep the exact fp32 paths (gemm.h).
#pragma once
#include <cstdint>

#include "matmul_kernels.h"

namespace hc::cpu {

// C[m0:m1, n0:n1] of a product (!ta, tb, !exact_x, B in Q8_0/Q4_0/Q4_K). Returns false, having
// written nothing, for any other product (the caller then runs its fp32 path).
bool quant_gemm_avx512vnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);  // AVX512-VNNI
bool quant_gemm_avxvnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);     // AVX2 + AVX-VNNI (ymm vpdpbusd; dispatch.h's use_avx_vnni)
bool quant_gemm_avx2(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);        // AVX2 maddubs

// The same product over weights repacked at load (quant_repack.h): false, having written
// nothing, when g reads no repacked copy (quant_repack.h's reads_repacked: g.packed null, or the
// product not !ta, tb, !exact_x over the copy's shape).
bool quant_gemm_repacked_avx512vnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
bool quant_gemm_repacked_avxvnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
bool quant_gemm_repacked_avx2(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

}  // namespace hc::cpu
