// llama.cpp's Q8_0 and Q4_0 block formats, byte for byte (ggml-common.h), so weights
// move between its files and ours unchanged. A row of K weights (K % 32 == 0) is K/32
// blocks; a block is 32 consecutive weights of one row and its fp16 scale d:
//   Q8_0 (34 bytes): d, then int8 q[32];                       w[j] = d·q[j]
//   Q4_0 (18 bytes): d, then 16 bytes of nibbles: byte j holds  w[j] = d·((b & 15) − 8)
//                    and w[j + 16] = d·((b >> 4) − 8)
//   Q4_K (144 bytes, a super-block of 256 weights = 8 sub-blocks of 32): fp16 d and dmin,
//        12 bytes of 6-bit sub-block scales sc[8] and mins m[8] (q4k_scale_min), then
//        128 bytes of nibbles: bytes [32p, 32p+32) hold sub-block 2p in their low nibbles and
//        2p+1 in their high ones;  w = d·sc[j]·q − dmin·m[j]
//   Q6_K (210 bytes, 256 weights; read only): ql[128] low 4 bits, qh[64] high 2 bits, int8
//        scales[16] (one a 16 weights), fp16 d;  w = d·scale·(q − 32), q in [0, 64)
#pragma once
#include <cstdint>

#include "dtype.h"

namespace hc {

constexpr int64_t kQK = 32;  // weights a block

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
constexpr int64_t kQKK = 256;  // weights a Q4_K super-block
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144, "llama.cpp's block sizes");

// Sub-block j's 6-bit scale and min: j < 4 in the low 6 bits of bytes j and j + 4; j >= 4
// split into a low nibble in byte j + 4 and the top two bits of bytes j − 4 (scale) and j (min).
// Static: the kernel variants' translation units (own instruction sets) each keep their own copy.
static inline void q4k_scale_min(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Element idx of a tensor stored as blocks (row starts at multiples of 32 elements).
inline float q8_0_at(const void* base, int64_t idx) {
  const BlockQ8_0& b = static_cast<const BlockQ8_0*>(base)[idx / kQK];
  return f16_to_f32(b.d) * static_cast<float>(b.qs[idx % kQK]);
}
inline float q4_0_at(const void* base, int64_t idx) {
  const BlockQ4_0& b = static_cast<const BlockQ4_0*>(base)[idx / kQK];
  const int j = static_cast<int>(idx % kQK);
  const int q = j < 16 ? (b.qs[j] & 15) : (b.qs[j - 16] >> 4);
  return f16_to_f32(b.d) * static_cast<float>(q - 8);
}

inline float q4_k_at(const void* base, int64_t idx) {
  const BlockQ4_K& b = static_cast<const BlockQ4_K*>(base)[idx / kQKK];
  const int i = static_cast<int>(idx % kQKK), j = i / 32, l = i % 32;
  int sc, m;
  q4k_scale_min(b.scales, j, sc, m);
  const uint8_t byte = b.qs[32 * (j / 2) + l];
  const int q = j % 2 ? byte >> 4 : byte & 15;
  return f16_to_f32(b.d) * static_cast<float>(sc) * static_cast<float>(q) - f16_to_f32(b.dmin) * static_cast<float>(m);
}

// llama.cpp's reference quantizers (quantize_row_q8_0_ref / _q4_0_ref): n % 32 == 0.
void quantize_row_q8_0(const float* x, void* out, int64_t n);
void quantize_row_q4_0(const float* x, void* out, int64_t n);
// Q4_K as llama.cpp's quantize_row_q4_K_ref does it (n % 256 == 0): each sub-block's scale
// and min by a weighted least-squares search over 21 candidate grids (make_qkx2), then the
// 16 scales and mins quantized to 6 bits against the super-block's largest.
void quantize_row_q4_k(const float* x, void* out, int64_t n);
// out[0..n) = the n weights stored from the start of src (n a multiple of the block).
void dequantize_row_q8_0(const void* src, float* out, int64_t n);
void dequantize_row_q4_0(const void* src, float* out, int64_t n);
void dequantize_row_q4_k(const void* src, float* out, int64_t n);
void dequantize_row_q6_k(const void* src, float* out, int64_t n);
// Element idx of Q6_K storage (the generic packing path of the GEMM).
float q6_k_at(const void* base, int64_t idx);

}  // namespace hc
