// AVX-512 decode attention (attention_avx512.h): one query token's heads that share one
// kv head (a GQA group; one head under MHA) against keys [first, npos) of the paged cache,
// 16 keys a step with the keys along the lanes. A step's 16 dot products are accumulated
// over the head dim as 16 vectors of partial sums (one FMA per 16 dims, q held in
// registers) and folded into one vector of 16 scores by a transpose-and-add tree (15 adds,
// 30 shuffles for the 16 keys; the AVX2 row kernel pays a horizontal sum per 8 keys and a
// scalar max per step). The online softmax's max, exp and sum are then lane-wise over
// the keys, and P·V is one broadcast weight times each value row. Every head of the group
// reads the same step's key and value rows, fetched from memory (L2) once for the group.
// A 16-bit pool's rows are widened in registers as they are loaded (load16, kv_elem.h):
// the same instructions otherwise, half the bytes streamed.
#include "attention_avx512.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__)
#include <cmath>

#include "kv_elem.h"
#include "math_avx512.h"

namespace hc::cpu::avx512 {
namespace {

constexpr int KB = 16;     // keys a step, one per lane
constexpr int kMaxG = 8;   // heads a pass holds state for; larger groups run in passes

// r[i] = Σ lanes of a[i], i < 16: pairs of vectors interleaved and added, four times over.
inline __m512 sum16(__m512 a[KB]) {
  __m512 b[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)  // each 128-bit lane: [a2i 0+2, a2i+1 0+2, a2i 1+3, a2i+1 1+3]
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  __m512 c[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {  // each 128-bit lane: that lane's sums of keys 4i..4i+3
    const __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
    c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // the four 128-bit lanes of each c[i] summed, c[i]'s keys landing in lane i
  const __m512 e01 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x44), _mm512_shuffle_f32x4(c[0], c[1], 0xEE));
  const __m512 e23 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x44), _mm512_shuffle_f32x4(c[2], c[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e01, e23, 0x88), _mm512_shuffle_f32x4(e01, e23, 0xDD));
}

template <int HD, class E>
void decode_hd(float* out, const float* q, int G, const E* k, const E* v, const int32_t* blocks,
               int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
               float scale, float* m_out, float* l_out) {
  constexpr int NC = HD / 16;       // vectors a row
  constexpr int CH = NC <= 8 ? 2 : 1;  // P·V chains per column vector: at least 8 independent FMA chains
  for (int h0 = 0; h0 < G; h0 += kMaxG) {
    const int g = G - h0 < kMaxG ? G - h0 : kMaxG;
    alignas(64) float acc[kMaxG][HD];  // unnormalised outputs
    alignas(64) float qs[kMaxG][HD];   // scale · q (the scale folded in, as the other kernels)
    alignas(64) float p[KB];
    float m[kMaxG];
    __m512 lsum[kMaxG];  // lane-wise running sums of p
    for (int h = 0; h < g; h++) {
      for (int c = 0; c < NC; c++) {
        _mm512_store_ps(qs[h] + 16 * c, _mm512_mul_ps(_mm512_loadu_ps(q + (h0 + h) * HD + 16 * c), _mm512_set1_ps(scale)));
        _mm512_store_ps(acc[h] + 16 * c, _mm512_setzero_ps());
      }
      m[h] = -INFINITY;
      lsum[h] = _mm512_setzero_ps();
    }
    const E* kr[KB];
    const E* vr[KB];
    for (int64_t j0 = first - first % block_size; j0 < npos; j0 += block_size) {
      const int64_t off = static_cast<int64_t>(blocks[j0 / block_size]) * block_stride;
      const int64_t nb = npos - j0 < block_size ? npos - j0 : block_size;
      if (j0 + block_size < npos) {
        // the next block's rows: blocks sit anywhere in the pool, so the hardware
        // prefetcher cannot guess them, and a decode step streams the whole cache (one
        // prefetch a 64-byte line: 16 elements of f32, 32 of a 16-bit pool)
        constexpr int kLine = 64 / static_cast<int>(sizeof(E));
        const int64_t noff = static_cast<int64_t>(blocks[j0 / block_size + 1]) * block_stride;
        const int64_t nn = npos - j0 - block_size < block_size ? npos - j0 - block_size : block_size;
        for (int64_t i = 0; i < nn; i++)
          for (int c = 0; c < HD; c += kLine) {
            _mm_prefetch(reinterpret_cast<const char*>(k + noff + i * token_stride + c), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(v + noff + i * token_stride + c), _MM_HINT_T0);
          }
      }
      for (int64_t j = first > j0 ? first - j0 : 0; j < nb; j += KB) {
        const int n = static_cast<int>(nb - j < KB ? nb - j : KB);
        for (int i = 0; i < KB; i++) {  // lanes past n reread the step's last key: finite, masked out below
          const int64_t o = off + (j + (i < n ? i : n - 1)) * token_stride;
          kr[i] = k + o;
          vr[i] = v + o;
        }
        const __mmask16 valid = static_cast<__mmask16>((1u << n) - 1u);
        for (int h = 0; h < g; h++) {
          __m512 qv[NC];
#pragma GCC unroll 16
          for (int c = 0; c < NC; c++) qv[c] = _mm512_load_ps(qs[h] + 16 * c);
          __m512 part[KB];
#pragma GCC unroll 16
          for (int i = 0; i < KB; i++) {
            part[i] = _mm512_mul_ps(qv[0], load16(kr[i]));
#pragma GCC unroll 16
            for (int c = 1; c < NC; c++) part[i] = _mm512_fmadd_ps(qv[c], load16(kr[i] + 16 * c), part[i]);
          }
          const __m512 s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, sum16(part));
          const float cm = std::fmax(m[h], _mm512_reduce_max_ps(s));
          // rescales what was accumulated under the old max (m = −inf before the first key: 0)
          const float alpha = cm > m[h] ? std::exp(m[h] - cm) : 1.0f;
          m[h] = cm;
          const __m512 e = _mm512_maskz_mov_ps(valid, exp512(_mm512_sub_ps(s, _mm512_set1_ps(cm))));
          const __m512 va = _mm512_set1_ps(alpha);
          lsum[h] = _mm512_fmadd_ps(lsum[h], va, e);
          _mm512_store_ps(p, e);
          __m512 a[CH][NC];
#pragma GCC unroll 16
          for (int c = 0; c < NC; c++) {
            a[0][c] = _mm512_mul_ps(_mm512_load_ps(acc[h] + 16 * c), va);
            if (CH > 1) a[CH - 1][c] = _mm512_setzero_ps();
          }
          int i = 0;
          for (; i + CH <= n; i += CH) {
#pragma GCC unroll 2
            for (int x = 0; x < CH; x++) {
              const __m512 w = _mm512_set1_ps(p[i + x]);
#pragma GCC unroll 16
              for (int c = 0; c < NC; c++) a[x][c] = _mm512_fmadd_ps(w, load16(vr[i + x] + 16 * c), a[x][c]);
            }
          }
          if (i < n) {
            const __m512 w = _mm512_set1_ps(p[i]);
#pragma GCC unroll 16
            for (int c = 0; c < NC; c++) a[0][c] = _mm512_fmadd_ps(w, load16(vr[i] + 16 * c), a[0][c]);
          }
#pragma GCC unroll 16
          for (int c = 0; c < NC; c++)
            _mm512_store_ps(acc[h] + 16 * c, CH > 1 ? _mm512_add_ps(a[0][c], a[CH - 1][c]) : a[0][c]);
        }
      }
    }
    for (int h = 0; h < g; h++) {
      const float l = _mm512_reduce_add_ps(lsum[h]);
      float* o = out + (h0 + h) * HD;
      if (m_out) {  // a part of a split context: unnormalised, with its max and sum
        m_out[h0 + h] = m[h];
        l_out[h0 + h] = l;
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(o + 16 * c, _mm512_load_ps(acc[h] + 16 * c));
      } else {
        const __m512 inv = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(o + 16 * c, _mm512_mul_ps(_mm512_load_ps(acc[h] + 16 * c), inv));
      }
    }
  }
}

}  // namespace

template <class E>
using DecodeFn = void (*)(float*, const float*, int, const E*, const E*, const int32_t*, int64_t, int64_t, int64_t,
                          int64_t, int64_t, float, float*, float*);

template <class E>
static DecodeFn<E> decode_for(int64_t HD) {
  return for_head_dim(
      HD, [](auto hd) -> DecodeFn<E> { return &decode_hd<decltype(hd)::value, E>; },
      [](int64_t) -> DecodeFn<E> { return nullptr; });
}

bool attention_decode_supports(int64_t HD) { return decode_for<float>(HD) != nullptr; }

template <class E>
void attention_decode(float* out, const float* q, int G, const E* k, const E* v, const int32_t* blocks,
                      int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
                      int64_t HD, float scale, float* m_out, float* l_out) {
  decode_for<E>(HD)(out, q, G, k, v, blocks, block_stride, token_stride, block_size, first, npos, scale, m_out, l_out);
}

}  // namespace hc::cpu::avx512

#else

namespace hc::cpu::avx512 {
bool attention_decode_supports(int64_t) { return false; }
template <class E>
void attention_decode(float*, const float*, int, const E*, const E*, const int32_t*, int64_t, int64_t, int64_t,
                      int64_t, int64_t, int64_t, float, float*, float*) {}
}  // namespace hc::cpu::avx512

#endif

namespace hc::cpu::avx512 {
#define HC_DECODE_INSTANCE(E)                                                                                        \
  template void attention_decode<E>(float*, const float*, int, const E*, const E*, const int32_t*, int64_t, int64_t, \
                                    int64_t, int64_t, int64_t, int64_t, float, float*, float*);
HC_DECODE_INSTANCE(float)
HC_DECODE_INSTANCE(Bf16)
HC_DECODE_INSTANCE(F16)
#undef HC_DECODE_INSTANCE
}  // namespace hc::cpu::avx512
