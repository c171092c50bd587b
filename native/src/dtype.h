// Storage types of weights and their conversions to the fp32 the kernels compute in.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace hc {

// Q8_0, Q4_0 and Q4_K are llama.cpp's block formats (quant.h): weights only, in blocks
// of 32 (Q4_K: super-blocks of 256) along a row, so a row is a whole number of blocks.
// Q6_K is read only (GGUF files: llama.cpp keeps output.weight and some layers in it).
enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3, Q4_0 = 4, Q4_K = 5, Q6_K = 6 };

constexpr bool is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K; }
// Weights a block holds (1 for the element types): a row's length must be a multiple.
constexpr int64_t block_elems(DType t) { return t == DType::Q4_K || t == DType::Q6_K ? 256 : is_quantized(t) ? 32 : 1; }
// Bytes of one element: element types only (a block type has none; see dtype_bytes).
constexpr size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
// Bytes of n elements stored as t; for a block type n is a multiple of block_elems(t).
constexpr int64_t dtype_bytes(DType t, int64_t n) {
  switch (t) {
    case DType::Q8_0: return n / 32 * 34;
    case DType::Q4_0: return n / 32 * 18;
    case DType::Q4_K: return n / 256 * 144;
    case DType::Q6_K: return n / 256 * 210;
    default: return n * static_cast<int64_t>(dtype_size(t));
  }
}
DType parse_dtype(const std::string& s);  // "f32" | "bf16" | "f16" | "q8_0" | "q4_0" | "q4_k" | "q6_k", throws otherwise

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_K: return "q4_k";
    case DType::Q6_K: return "q6_k";
  }
  return "?";
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// round to nearest even; NaN stays NaN
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace hc
