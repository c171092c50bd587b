// fdlibm's exp (sample.cc's fdlibm_exp) on 8 doubles a vector, bit for bit: every lane takes
// the branch the scalar code would take and does the same IEEE operations in the same order.
// Contraction into FMAs would change roundings, so it is off for this file whatever the flags.
#pragma GCC optimize("fp-contract=off")
#include <immintrin.h>

#include <cstdint>

#include "sample.h"

namespace hc::cpu {

void exp_inplace_avx512(double* x, int64_t n) {
  const __m512d one = _mm512_set1_pd(1.0), two = _mm512_set1_pd(2.0), half = _mm512_set1_pd(0.5),
                invln2 = _mm512_set1_pd(1.44269504088896338700e+00), ln2HI = _mm512_set1_pd(6.93147180369123816490e-01),
                ln2LO = _mm512_set1_pd(1.90821492927058770002e-10), P1 = _mm512_set1_pd(1.66666666666666019037e-01),
                P2 = _mm512_set1_pd(-2.77777777770155933842e-03), P3 = _mm512_set1_pd(6.61375632143793436117e-05),
                P4 = _mm512_set1_pd(-1.65339022054652515390e-06), P5 = _mm512_set1_pd(4.13813679705723846039e-08),
                E = _mm512_set1_pd(2.718281828459045);
  const __m512i sign = _mm512_set1_epi64(static_cast<int64_t>(0x8000000000000000ull));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d v = _mm512_loadu_pd(x + i);
    const __m512i bits = _mm512_castpd_si512(v);
    const __m512i hx = _mm512_and_si512(_mm512_srli_epi64(bits, 32), _mm512_set1_epi64(0x7FFFFFFF));
    const __mmask8 neg = _mm512_test_epi64_mask(bits, sign);
    // fdlibm's regions by |x|'s high word; |x| >= 704 (overflow, underflow, k < -1021, inf, NaN) goes scalar
    const __mmask8 rare = _mm512_cmpge_epi64_mask(hx, _mm512_set1_epi64(0x40860000));
    const __mmask8 big = _mm512_cmpge_epi64_mask(hx, _mm512_set1_epi64(0x3FF0A2B2));      // |x| >= 1.5 ln2: k from x
    const __mmask8 mid = _mm512_cmpgt_epi64_mask(hx, _mm512_set1_epi64(0x3FD62E42)) & ~big;  // 0.5 ln2 < |x| < 1.5 ln2: k = ±1
    const __mmask8 tiny = _mm512_cmplt_epi64_mask(hx, _mm512_set1_epi64(0x3E300000));      // |x| < 2^-28: 1 + x
    // big: k = (int)(invln2 * x + ±0.5), hi = x - k·ln2HI, lo = k·ln2LO
    const __m512d halF = _mm512_mask_blend_pd(neg, half, _mm512_sub_pd(_mm512_setzero_pd(), half));
    const __m256i kb = _mm512_cvttpd_epi32(_mm512_add_pd(_mm512_mul_pd(invln2, v), halF));
    const __m512d tb = _mm512_cvtepi32_pd(kb);
    __m512d hi = _mm512_sub_pd(v, _mm512_mul_pd(tb, ln2HI));
    __m512d lo = _mm512_mul_pd(tb, ln2LO);
    // mid: hi = x ∓ ln2HI, lo = ±ln2LO, k = ±1
    const __m512d sHI = _mm512_mask_blend_pd(neg, ln2HI, _mm512_sub_pd(_mm512_setzero_pd(), ln2HI));
    const __m512d sLO = _mm512_mask_blend_pd(neg, ln2LO, _mm512_sub_pd(_mm512_setzero_pd(), ln2LO));
    hi = _mm512_mask_blend_pd(mid, hi, _mm512_sub_pd(v, sHI));
    lo = _mm512_mask_blend_pd(mid, lo, sLO);
    const __m256i km = _mm256_mask_blend_epi32(neg, _mm256_set1_epi32(1), _mm256_set1_epi32(-1));
    const __m256i k = _mm256_mask_blend_epi32(mid, kb, km);
    const __mmask8 reduced = big | mid;
    // the primary-range argument: hi - lo where reduced, else x itself (k = 0)
    const __m512d xr = _mm512_mask_blend_pd(reduced, v, _mm512_sub_pd(hi, lo));
    const __m512d t = _mm512_mul_pd(xr, xr);
    __m512d p = _mm512_mul_pd(t, P5);
    p = _mm512_mul_pd(t, _mm512_add_pd(P4, p));
    p = _mm512_mul_pd(t, _mm512_add_pd(P3, p));
    p = _mm512_mul_pd(t, _mm512_add_pd(P2, p));
    p = _mm512_mul_pd(t, _mm512_add_pd(P1, p));
    const __m512d c = _mm512_sub_pd(xr, p);
    // (x·c)/(2−c); the k = 0 form's (x·c)/(c−2) is its exact negation (round-to-nearest is symmetric)
    const __m512d q = _mm512_div_pd(_mm512_mul_pd(xr, c), _mm512_sub_pd(two, c));
    const __m512d r0 = _mm512_sub_pd(one, _mm512_sub_pd(_mm512_xor_pd(q, _mm512_castsi512_pd(sign)), xr));
    const __m512d y = _mm512_sub_pd(one, _mm512_sub_pd(_mm512_sub_pd(lo, q), hi));
    const __m512i e = _mm512_slli_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(k), _mm512_set1_epi64(1023)), 52);
    __m512d r = _mm512_mask_blend_pd(reduced, r0, _mm512_mul_pd(y, _mm512_castsi512_pd(e)));
    r = _mm512_mask_blend_pd(tiny, r, _mm512_add_pd(one, v));
    r = _mm512_mask_blend_pd(_mm512_cmpeq_pd_mask(v, one), r, E);
    _mm512_storeu_pd(x + i, r);
    if (rare) {
      alignas(64) double in[8];
      _mm512_store_pd(in, v);
      for (unsigned m = rare; m; m &= m - 1) {
        const int j = __builtin_ctz(m);
        x[i + j] = fdlibm_exp(in[j]);
      }
    }
  }
  for (; i < n; i++) x[i] = fdlibm_exp(x[i]);
}

}  // namespace hc::cpu
