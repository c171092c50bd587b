// llama.cpp's reference quantizers, with its rounding: roundf (ties away from zero)
// of x/d for Q8_0, truncation of x/d + 8.5 for Q4_0, and d stored as fp16.
#include "quant.h"

#include <algorithm>
#include <cmath>

namespace hc {

void quantize_row_q8_0(const float* x, void* out, int64_t n) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(out);
  for (int64_t i = 0; i < n / kQK; i++, x += kQK) {
    float amax = 0.f;
    for (int j = 0; j < kQK; j++) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK; j++) y[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void quantize_row_q4_0(const float* x, void* out, int64_t n) {
  BlockQ4_0* y = static_cast<BlockQ4_0*>(out);
  for (int64_t i = 0; i < n / kQK; i++, x += kQK) {
    float amax = 0.f, max = 0.f;  // the value of largest magnitude, with its sign
    for (int j = 0; j < kQK; j++)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; j++) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_row_q8_0(const void* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = q8_0_at(src, i);
}

void dequantize_row_q4_0(const void* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = q4_0_at(src, i);
}

}  // namespace hc
