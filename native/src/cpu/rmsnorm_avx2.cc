#include <immintrin.h>

#include <cmath>

#include "math_avx2.h"
#include "simd_avx2.h"

namespace hc::cpu::avx2 {

void rmsnorm_rows(float* out, const float* inp, const float* weight, int64_t rows, int64_t C, float eps) {
  for (int64_t m = 0; m < rows; m++) {
    const float* x = inp + m * C;
    float* o = out + m * C;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= C; i += 16) {
      __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
      a0 = _mm256_fmadd_ps(x0, x0, a0);
      a1 = _mm256_fmadd_ps(x1, x1, a1);
    }
    for (; i + 8 <= C; i += 8) {
      __m256 x0 = _mm256_loadu_ps(x + i);
      a0 = _mm256_fmadd_ps(x0, x0, a0);
    }
    float ss = hsum(_mm256_add_ps(a0, a1));
    for (; i < C; i++) ss += x[i] * x[i];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
    const __m256 vr = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= C; i += 8)
      _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vr), _mm256_loadu_ps(weight + i)));
    for (; i < C; i++) o[i] = x[i] * r * weight[i];
  }
}

}  // namespace hc::cpu::avx2
