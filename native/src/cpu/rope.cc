// RoPE with HF rotate_half semantics: for i < HD/2 the pair (x[i], x[i+HD/2]) turns by
// the angle pos * invFreq[i]; cos and sin are multiplied by attention_scaling as HF does.
#include <algorithm>
#include <cmath>

#include "ops.h"

namespace hc::cpu {

void rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq, int64_t T,
                 int64_t half, float scaling) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < half; i++) {
      // the angle in double: at position 10^4+ fp32 would lose the low bits of the phase
      const double a = static_cast<double>(pos[t]) * static_cast<double>(inv_freq[i]);
      cos_out[t * half + i] = static_cast<float>(std::cos(a)) * scaling;
      sin_out[t * half + i] = static_cast<float>(std::sin(a)) * scaling;
    }
}

void rope_forward(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                  ThreadPool& pool) {
  const int64_t half = HD / 2;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(H * HD, 1));
  pool.parallel_for(T, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const float* c = cos_t + t * half;
      const float* s = sin_t + t * half;
      for (int64_t h = 0; h < H; h++) {
        float* v = x + (t * H + h) * HD;
        for (int64_t i = 0; i < half; i++) {
          const float x1 = v[i], x2 = v[i + half];
          v[i] = x1 * c[i] - x2 * s[i];
          v[i + half] = x2 * c[i] + x1 * s[i];
        }
      }
    }
  });
}

// The forward turns each pair by [[c, −s], [s, c]]; the gradient goes back through the
// transpose [[c, s], [−s, c]] (the inverse rotation, up to the scaling²).
void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                   ThreadPool& pool) {
  const int64_t half = HD / 2;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(H * HD, 1));
  pool.parallel_for(T, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const float* c = cos_t + t * half;
      const float* s = sin_t + t * half;
      for (int64_t h = 0; h < H; h++) {
        float* g = dx + (t * H + h) * HD;
        for (int64_t i = 0; i < half; i++) {
          const float g1 = g[i], g2 = g[i + half];
          g[i] = g1 * c[i] + g2 * s[i];
          g[i + half] = g2 * c[i] - g1 * s[i];
        }
      }
    }
  });
}

}  // namespace hc::cpu
