// Int8 dot products for the block formats (Q8_0, Q4_0, Q4_K weights), llama.cpp's way: each
// call quantizes the M rows of x to int8 once (a scale per block of 32, quant_dot_x86.h),
// then every block of weights is multiplied as integers (AVX512-VNNI vpdpbusd, or AVX2
// vpmaddubsw + vpmaddwd) and the block's int32 sum is scaled once by d_w·d_x in fp32.
// Unpacking 4-bit weights to bytes is cheaper than to fp32, so decode is no longer bound
// by the unpacking. The cost: x carries int8 rounding, |x − d_x·q| <= d_x/2 = amax/254 per
// element (test/native-ops.test.ts bounds the result by it). The backward (dx = dout·W,
// gemm with !tb) and training (exact_x) keep the exact fp32 dequantizing path; from 8–24 rows
// of x the int8 GEMM (quant_gemm.h) takes over.
#pragma once
#include <cstdint>

#include "matmul_kernels.h"

namespace hc::cpu {

// C[:, n0:n1] of a streamed product (!ta, tb) through int8 dot products. Returns false,
// having written nothing, when the weights are not Q8_0/Q4_0/Q4_K or M is above the
// int8 path's limit for this variant (the caller then runs its fp32 dequantizing GEMV).
bool quant_dot_avx512vnni(const GemmArgs& g, int64_t n0, int64_t n1);  // AVX512-VNNI (the CPU must have it)
bool quant_dot_avx2(const GemmArgs& g, int64_t n0, int64_t n1);        // AVX2 maddubs
bool quant_dot_avxvnni(const GemmArgs& g, int64_t n0, int64_t n1);     // AVX-VNNI ymm vpdpbusd (dispatch.h's use_avx_vnni)

}  // namespace hc::cpu
