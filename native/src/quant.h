// llama.cpp's Q8_0 and Q4_0 block formats, byte for byte (ggml-common.h), so weights
// move between its files and ours unchanged. A row of K weights (K % 32 == 0) is K/32
// blocks; a block is 32 consecutive weights of one row and its fp16 scale d:
//   Q8_0 (34 bytes): d, then int8 q[32];                       w[j] = d·q[j]
//   Q4_0 (18 bytes): d, then 16 bytes of nibbles: byte j holds  w[j] = d·((b & 15) − 8)
//                    and w[j + 16] = d·((b >> 4) − 8)
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
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18, "llama.cpp's block sizes");

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

// llama.cpp's reference quantizers (quantize_row_q8_0_ref / _q4_0_ref): n % 32 == 0.
void quantize_row_q8_0(const float* x, void* out, int64_t n);
void quantize_row_q4_0(const float* x, void* out, int64_t n);
// out[0..n) = the n weights stored from the start of src (n % 32 == 0).
void dequantize_row_q8_0(const void* src, float* out, int64_t n);
void dequantize_row_q4_0(const void* src, float* out, int64_t n);

}  // namespace hc
