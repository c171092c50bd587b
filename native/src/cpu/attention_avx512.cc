// AVX-512 prompt attention (attention_avx512.h): a tile of up to 16 query rows of one
// head, flash-style over steps of 16 keys. Lanes are query rows: q is held transposed
// (d-major), so one key's scores for all rows are one vector, the online softmax's max,
// rescale and sum are lane-wise (no horizontal reductions, unlike the one-row AVX2
// kernel's hsum8 per eight keys), and P·V is one broadcast FMA per (key, d) into
// transposed output accumulators. Each step's keys and values are copied (widened to
// fp32 from a 16-bit pool) into a contiguous [16][HD] buffer once for all rows, so the
// inner loops address them at compile-time offsets whatever the cache's token stride
// and element type.
#include "attention_avx512.h"

// GCC 12's AVX-512 headers trip its own -Wuninitialized on the _mm*_undefined_*()
// placeholders inside intrinsics (a false positive; as matmul_avx512.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__)
#include <cmath>
#include <cstring>

#include "kv_elem.h"
#include "math_avx512.h"

namespace hc::cpu::avx512 {
namespace {

constexpr int R = kTileRows;
constexpr int KB = 16;  // keys a step

// n = HD elements of a cache row as fp32 (HD is a multiple of 8 in every instance)
template <int HD, class E>
inline void widen_row(float* dst, const E* src) {
#pragma GCC unroll 32
  for (int d = 0; d < HD; d += 8) _mm256_store_ps(dst + d, load8(src + d));
}

template <int HD, class E>
void tile_hd(float* out, int64_t out_stride, const float* q, int64_t q_stride, int rows, const E* k,
             const E* v, const int32_t* blocks, int64_t block_stride, int64_t token_stride, int64_t block_size,
             const int64_t* first, const int64_t* npos, float scale) {
  alignas(64) float qt[HD * R];   // qt[d·R + r] = scale · q_r[d] (the scale folded into q, as the AVX2 kernel)
  alignas(64) float ot[HD * R];   // ot[d·R + r]: row r's unnormalised output
  alignas(64) float kc[KB * HD];  // this step's keys, then values, contiguous
  alignas(64) float vc[KB * HD];
  alignas(64) int32_t fr[R], nr[R];
  int64_t kmin = INT64_MAX, kmax = 0;
  for (int r = 0; r < R; r++) {
    // lanes past `rows` see no key: every score masked, their p stays 0
    fr[r] = r < rows ? static_cast<int32_t>(first[r]) : 0;
    nr[r] = r < rows ? static_cast<int32_t>(npos[r]) : 0;
    if (r < rows) {
      kmin = first[r] < kmin ? first[r] : kmin;
      kmax = npos[r] > kmax ? npos[r] : kmax;
    }
  }
  for (int d = 0; d < HD; d++)
    for (int r = 0; r < R; r++) qt[d * R + r] = r < rows ? q[r * q_stride + d] * scale : 0.0f;
  std::memset(ot, 0, sizeof ot);
  const __m512i vfirst = _mm512_load_si512(fr), vnpos = _mm512_load_si512(nr);
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  __m512 m = neg_inf, l = _mm512_setzero_ps();
  for (int64_t j = kmin; j < kmax;) {
    // a step never crosses a page of the cache
    const int64_t in = j % block_size;
    int64_t n = block_size - in;
    n = n < KB ? n : KB;
    n = kmax - j < n ? kmax - j : n;
    const int64_t off = static_cast<int64_t>(blocks[j / block_size]) * block_stride + in * token_stride;
    for (int64_t i = 0; i < n; i++) {
      widen_row<HD>(kc + i * HD, k + off + i * token_stride);
      widen_row<HD>(vc + i * HD, v + off + i * token_stride);
    }
    if (n < KB) {  // zeros, not garbage: their p is 0, and 0 · NaN would not be
      std::memset(kc + n * HD, 0, (KB - n) * HD * sizeof(float));
      std::memset(vc + n * HD, 0, (KB - n) * HD * sizeof(float));
    }
    __m512 s[KB];
#pragma GCC unroll 16
    for (int i = 0; i < KB; i++) s[i] = _mm512_setzero_ps();
    for (int d = 0; d < HD; d++) {
      const __m512 qd = _mm512_load_ps(qt + d * R);
#pragma GCC unroll 16
      for (int i = 0; i < KB; i++) s[i] = _mm512_fmadd_ps(qd, _mm512_set1_ps(kc[i * HD + d]), s[i]);
    }
    // key j+i is visible to row r iff first[r] <= j+i < npos[r]
    __mmask16 valid[KB];
    __m512 cm = m;
#pragma GCC unroll 16
    for (int i = 0; i < KB; i++) {
      const __m512i ji = _mm512_set1_epi32(static_cast<int32_t>(j + i));
      valid[i] = i < n ? __mmask16(_mm512_cmpge_epi32_mask(ji, vfirst) & _mm512_cmplt_epi32_mask(ji, vnpos)) : __mmask16(0);
      cm = _mm512_mask_max_ps(cm, valid[i], cm, s[i]);
    }
    // a row that has seen no key yet keeps max −inf: shift by 0 there, so no −inf − −inf
    const __m512 shift = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(cm, neg_inf, _CMP_NEQ_OQ), cm);
    const __m512 alpha = exp512(_mm512_sub_ps(m, shift));  // rescales what was accumulated under the old max
    m = cm;
    __m512 p[KB];
    __m512 psum = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < KB; i++) {
      p[i] = _mm512_maskz_mov_ps(valid[i], exp512(_mm512_sub_ps(s[i], shift)));
      psum = _mm512_add_ps(psum, p[i]);
    }
    l = _mm512_fmadd_ps(l, alpha, psum);
    // eight output columns at a time: eight independent FMA chains over the step's keys
    for (int d = 0; d < HD; d += 8) {
      __m512 a[8];
#pragma GCC unroll 8
      for (int e = 0; e < 8; e++) a[e] = _mm512_mul_ps(_mm512_load_ps(ot + (d + e) * R), alpha);
#pragma GCC unroll 16
      for (int i = 0; i < KB; i++)
#pragma GCC unroll 8
        for (int e = 0; e < 8; e++) a[e] = _mm512_fmadd_ps(p[i], _mm512_set1_ps(vc[i * HD + d + e]), a[e]);
#pragma GCC unroll 8
      for (int e = 0; e < 8; e++) _mm512_store_ps(ot + (d + e) * R, a[e]);
    }
    j += n;
  }
  alignas(64) float inv[R];
  _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(l, _mm512_set1_ps(1e-30f))));
  for (int r = 0; r < rows; r++)
    for (int d = 0; d < HD; d++) out[r * out_stride + d] = ot[d * R + r] * inv[r];
}

}  // namespace

template <class E>
using TileFn = void (*)(float*, int64_t, const float*, int64_t, int, const E*, const E*, const int32_t*, int64_t,
                        int64_t, int64_t, const int64_t*, const int64_t*, float);

template <class E>
static TileFn<E> tile_for(int64_t HD) {
  return for_head_dim(
      HD, [](auto hd) -> TileFn<E> { return &tile_hd<decltype(hd)::value, E>; },
      [](int64_t other) -> TileFn<E> { return other == 8 ? &tile_hd<8, E> : nullptr; });
}

bool attention_tile_supports(int64_t HD) { return tile_for<float>(HD) != nullptr; }

template <class E>
void attention_tile(float* out, int64_t out_stride, const float* q, int64_t q_stride, int rows, const E* k,
                    const E* v, const int32_t* blocks, int64_t block_stride, int64_t token_stride,
                    int64_t block_size, const int64_t* first, const int64_t* npos, int64_t HD, float scale) {
  tile_for<E>(HD)(out, out_stride, q, q_stride, rows, k, v, blocks, block_stride, token_stride, block_size, first,
                  npos, scale);
}

}  // namespace hc::cpu::avx512

#else

namespace hc::cpu::avx512 {
bool attention_tile_supports(int64_t) { return false; }
template <class E>
void attention_tile(float*, int64_t, const float*, int64_t, int, const E*, const E*, const int32_t*, int64_t, int64_t,
                    int64_t, const int64_t*, const int64_t*, int64_t, float) {}
}  // namespace hc::cpu::avx512

#endif

namespace hc::cpu::avx512 {
#define HC_TILE_INSTANCE(E)                                                                                        \
  template void attention_tile<E>(float*, int64_t, const float*, int64_t, int, const E*, const E*, const int32_t*, \
                                  int64_t, int64_t, int64_t, const int64_t*, const int64_t*, int64_t, float);
HC_TILE_INSTANCE(float)
HC_TILE_INSTANCE(Bf16)
HC_TILE_INSTANCE(F16)
#undef HC_TILE_INSTANCE
}  // namespace hc::cpu::avx512
