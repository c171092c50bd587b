#include <immintrin.h>

#include <cmath>

#include "math_avx2.h"
#include "simd_avx2.h"

namespace hc::cpu::avx2 {

float logsumexp(const float* x, int64_t V) {
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= V; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  float m = hmax(vm);
  for (; i < V; i++) m = m > x[i] ? m : x[i];
  const __m256 bm = _mm256_set1_ps(m);
  // exp256 clamps at -87: a lane far below the max adds ~1e-38, not 0, which a sum of >= 1 ignores
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (i = 0; i + 16 <= V; i += 16) {
    a0 = _mm256_add_ps(a0, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm)));
    a1 = _mm256_add_ps(a1, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), bm)));
  }
  for (; i + 8 <= V; i += 8) a0 = _mm256_add_ps(a0, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bm)));
  double s = hsum(_mm256_add_ps(a0, a1));
  for (; i < V; i++) s += std::exp(x[i] - m);
  return m + static_cast<float>(std::log(s));
}

void scaled_softmax(float* out, const float* x, int64_t V, float lse, float scale) {
  const __m256 bl = _mm256_set1_ps(lse), bs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= V; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(bs, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), bl))));
  for (; i < V; i++) out[i] = scale * std::exp(x[i] - lse);
}

}  // namespace hc::cpu::avx2
