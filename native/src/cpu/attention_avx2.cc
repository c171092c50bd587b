#include <immintrin.h>

#include <cmath>

#include "kv_elem.h"
#include "math_avx2.h"
#include "simd_avx2.h"

namespace hc::cpu::avx2 {

// Same online softmax as the portable attention_row, eight keys at a time: their
// scores form one vector (hsum8), so the running max is updated and exp() evaluated
// once per eight keys instead of once per key. NV = HD/8 is a template parameter for
// the common head sizes so the output accumulator stays in registers (two of them,
// for even and odd keys, to halve the FMA dependency chain). E: the pool's element type,
// widened to fp32 as each row is loaded (load8, kv_elem.h).
template <int NV, class E>
static void row_fixed(float* out, const float* q, const E* k, const E* v, const int32_t* blocks,
                      int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
                      float scale) {
  __m256 qv[NV], acc0[NV], acc1[NV];
  for (int d = 0; d < NV; d++) {
    qv[d] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * d), _mm256_set1_ps(scale));  // fold the scale into q
    acc0[d] = acc1[d] = _mm256_setzero_ps();
  }
  alignas(32) float p[8];
  const E* kp[8];
  const E* vp[8];
  float m = -INFINITY, l = 0.0f;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t j0 = first - first % block_size; j0 < npos; j0 += block_size) {
    const int64_t off = static_cast<int64_t>(blocks[j0 / block_size]) * block_stride;
    const int64_t nb = npos - j0 < block_size ? npos - j0 : block_size;
    for (int64_t j = first > j0 ? first - j0 : 0; j < nb; j += 8) {
      const int64_t n = nb - j < 8 ? nb - j : 8;
      for (int64_t i = 0; i < 8; i++) {
        const int64_t o = off + (j + (i < n ? i : 0)) * token_stride;  // padding lanes reread a valid key
        kp[i] = k + o;
        vp[i] = v + o;
      }
      __m256 prod[8];
      for (int i = 0; i < 8; i++) {
        __m256 s = _mm256_mul_ps(qv[0], load8(kp[i]));
        for (int c = 1; c < NV; c++) s = _mm256_fmadd_ps(qv[c], load8(kp[i] + 8 * c), s);
        prod[i] = s;
      }
      __m256 s = hsum8(prod);
      __m256 valid = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      if (n < 8) {
        valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane));
        s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, valid);
      }
      const float cm = hmax(s);
      if (cm > m) {
        const float c = std::exp(m - cm);
        const __m256 vc = _mm256_set1_ps(c);
        l *= c;
        for (int d = 0; d < NV; d++) {
          acc0[d] = _mm256_mul_ps(acc0[d], vc);
          acc1[d] = _mm256_mul_ps(acc1[d], vc);
        }
        m = cm;
      }
      const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(s, _mm256_set1_ps(m))), valid);
      l += hsum(e);
      _mm256_store_ps(p, e);
      int64_t i = 0;
      for (; i + 2 <= n; i += 2) {
        const __m256 w0 = _mm256_set1_ps(p[i]), w1 = _mm256_set1_ps(p[i + 1]);
        for (int d = 0; d < NV; d++) {
          acc0[d] = _mm256_fmadd_ps(w0, load8(vp[i] + 8 * d), acc0[d]);
          acc1[d] = _mm256_fmadd_ps(w1, load8(vp[i + 1] + 8 * d), acc1[d]);
        }
      }
      if (i < n) {
        const __m256 w0 = _mm256_set1_ps(p[i]);
        for (int d = 0; d < NV; d++) acc0[d] = _mm256_fmadd_ps(w0, load8(vp[i] + 8 * d), acc0[d]);
      }
    }
  }
  const __m256 inv = _mm256_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
  for (int d = 0; d < NV; d++) _mm256_storeu_ps(out + 8 * d, _mm256_mul_ps(_mm256_add_ps(acc0[d], acc1[d]), inv));
}

// Any HD % 8 == 0: accumulator on the stack.
template <class E>
static void row_generic(float* out, const float* q, const E* k, const E* v, const int32_t* blocks,
                        int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
                        int64_t HD, float scale) {
  alignas(32) float acc[1024];
  alignas(32) float p[8];
  const E* kp[8];
  const E* vp[8];
  const int64_t nv = HD / 8;
  for (int64_t d = 0; d < HD; d++) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t j0 = first - first % block_size; j0 < npos; j0 += block_size) {
    const int64_t off = static_cast<int64_t>(blocks[j0 / block_size]) * block_stride;
    const int64_t nb = npos - j0 < block_size ? npos - j0 : block_size;
    for (int64_t j = first > j0 ? first - j0 : 0; j < nb; j += 8) {
      const int64_t n = nb - j < 8 ? nb - j : 8;
      for (int64_t i = 0; i < 8; i++) {
        const int64_t o = off + (j + (i < n ? i : 0)) * token_stride;
        kp[i] = k + o;
        vp[i] = v + o;
      }
      __m256 prod[8];
      for (int i = 0; i < 8; i++) {
        __m256 s = _mm256_mul_ps(_mm256_loadu_ps(q), load8(kp[i]));
        for (int64_t c = 1; c < nv; c++) s = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * c), load8(kp[i] + 8 * c), s);
        prod[i] = s;
      }
      __m256 s = _mm256_mul_ps(hsum8(prod), vscale);
      __m256 valid = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      if (n < 8) {
        valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane));
        s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, valid);
      }
      const float cm = hmax(s);
      if (cm > m) {
        const __m256 c = _mm256_set1_ps(std::exp(m - cm));
        l *= _mm256_cvtss_f32(c);
        for (int64_t d = 0; d < nv; d++) _mm256_store_ps(acc + 8 * d, _mm256_mul_ps(_mm256_load_ps(acc + 8 * d), c));
        m = cm;
      }
      const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(s, _mm256_set1_ps(m))), valid);
      l += hsum(e);
      _mm256_store_ps(p, e);
      for (int64_t i = 0; i < n; i++) {
        const __m256 w = _mm256_set1_ps(p[i]);
        for (int64_t d = 0; d < nv; d++)
          _mm256_store_ps(acc + 8 * d, _mm256_fmadd_ps(w, load8(vp[i] + 8 * d), _mm256_load_ps(acc + 8 * d)));
      }
    }
  }
  const __m256 inv = _mm256_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
  for (int64_t d = 0; d < nv; d++) _mm256_storeu_ps(out + 8 * d, _mm256_mul_ps(_mm256_load_ps(acc + 8 * d), inv));
}

template <class E>
void attention_row(float* out, const float* q, const E* k, const E* v, const int32_t* blocks,
                   int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
                   int64_t HD, float scale) {
  switch (HD) {
    case 8: return row_fixed<1>(out, q, k, v, blocks, block_stride, token_stride, block_size, first, npos, scale);
    case 16: return row_fixed<2>(out, q, k, v, blocks, block_stride, token_stride, block_size, first, npos, scale);
    case 32: return row_fixed<4>(out, q, k, v, blocks, block_stride, token_stride, block_size, first, npos, scale);
    case 64: return row_fixed<8>(out, q, k, v, blocks, block_stride, token_stride, block_size, first, npos, scale);
    case 128: return row_fixed<16>(out, q, k, v, blocks, block_stride, token_stride, block_size, first, npos, scale);
    default: return row_generic(out, q, k, v, blocks, block_stride, token_stride, block_size, first, npos, HD, scale);
  }
}

template void attention_row<float>(float*, const float*, const float*, const float*, const int32_t*, int64_t,
                                   int64_t, int64_t, int64_t, int64_t, int64_t, float);
template void attention_row<Bf16>(float*, const float*, const Bf16*, const Bf16*, const int32_t*, int64_t, int64_t,
                                  int64_t, int64_t, int64_t, int64_t, float);
template void attention_row<F16>(float*, const float*, const F16*, const F16*, const int32_t*, int64_t, int64_t,
                                 int64_t, int64_t, int64_t, int64_t, float);

}  // namespace hc::cpu::avx2
