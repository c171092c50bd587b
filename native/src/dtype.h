// Storage types of weights and their conversions to the fp32 the kernels compute in.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace hc {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2 };

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
DType parse_dtype(const std::string& s);  // "f32" | "bf16" | "f16", throws otherwise

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
