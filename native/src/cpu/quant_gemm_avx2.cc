// AVX2 variant of the int8 GEMM (quant_gemm.h): 8 columns a ymm, vpmaddubsw + vpmaddwd
// (Q8_0 through the sign trick: |w| × sign(x, w), so a pair of products stays below 2^15).
#include "quant_gemm.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "quant_gemm_x86.h"
#include "quant_gemm_repacked_x86.h"

// the register tile, overridable for bench-kernels' tuning runs
#ifndef QGEMM_AVX2_MR
#define QGEMM_AVX2_MR 2
#define QGEMM_AVX2_NRV 2
#endif

namespace hc::cpu {
namespace {

struct Avx2 : qgemm::YmmFloat, qgemm::YmmRepack {
  using V = __m256i;
  // 2 rows × 16 columns, within 16 ymm registers with the sign trick's temporaries (3×2, 4×1 and
  // 1×4 were within ±5 % of it on one Zen 5 core, 512×768×768: 3.8–4.2 ms)
  static constexpr int MR = QGEMM_AVX2_MR, NRV = QGEMM_AVX2_NRV;
  // the repacked layout's tiles (quant_gemm_repacked_x86.h): 2 rows × a group of 16 columns (2 ymm)
  template <DType>
  static constexpr int rmt() { return 2; }
  static constexpr int ng(int) { return 1; }
  static constexpr bool kUnsignedQ8 = false;
  // u8 × s8: |u·q| pairs of Q4_0 / Q4_K nibbles (<= 15) stay far below maddubs' int16 saturation
  static V dot(V acc, V w, V x) { return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))); }
  static V dot_signed(V acc, V w, V x) { return dot(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)); }
};

}  // namespace

bool quant_gemm_avx2(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return qgemm::run<Avx2>(g, m0, m1, n0, n1);
}
bool quant_gemm_repacked_avx2(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return qgemm::run_repacked<Avx2>(g, m0, m1, n0, n1);
}

}  // namespace hc::cpu

#else

namespace hc::cpu {
bool quant_gemm_avx2(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) { return false; }
bool quant_gemm_repacked_avx2(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) { return false; }
}  // namespace hc::cpu

#endif
