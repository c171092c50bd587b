// AVX512-VNNI variant of the int8 GEMM (quant_gemm.h): 16 columns a zmm, vpdpbusd.
#include "quant_gemm.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#include "quant_gemm_x86.h"
#include "quant_gemm_repacked_x86.h"

// the register tiles, overridable for bench-kernels' tuning runs
#ifndef QGEMM_REP_RMT
#define QGEMM_REP_RMT 4
#endif
#ifndef QGEMM_AVX512_MR
#define QGEMM_AVX512_MR 4
#define QGEMM_AVX512_NRV 2
#endif

namespace hc::cpu {
namespace {

struct Avx512Vnni {
  using V = __m512i;
  using F = __m512;
  static constexpr int VN = 16;
  // 4 rows × 32 columns: 8 fp32 + 8 int32 accumulators, 2 weight vectors and x's broadcast.
  // One Zen 5 core, 512×768×768 q4_0 / q8_0 / q4_k, ms: 4×2 1.05 / 1.01 / 1.11, 6×2 1.13 / 1.09 /
  // 1.14, 8×1 1.21 / 1.25 / 1.19, 3×4 1.31 / 1.32 / 1.37 (bench-kernels qgemm)
  static constexpr int MR = QGEMM_AVX512_MR, NRV = QGEMM_AVX512_NRV;
  static constexpr bool kUnsignedQ8 = true;
  static V load(const uint8_t* p) { return _mm512_load_si512(p); }
  static V bcast(const int8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static V set1(int32_t v) { return _mm512_set1_epi32(v); }
  static V dot(V acc, V w, V x) { return _mm512_dpbusd_epi32(acc, w, x); }
  static F zero() { return _mm512_setzero_ps(); }
  static F fset1(float v) { return _mm512_set1_ps(v); }
  static F fload(const float* p) { return _mm512_load_ps(p); }
  static F floadu(const float* p) { return _mm512_loadu_ps(p); }
  static void fstore(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void fstoreu(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F cvt(V v) { return _mm512_cvtepi32_ps(v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  // the repacked layout's tiles (quant_gemm_repacked_x86.h): up to 8 rows of x, 16 columns a
  // group; below 3 rows 4 groups (so 4+ independent vpdpbusd chains), 2 below 5
  template <DType DT>
  static constexpr int rmt() { return QGEMM_REP_RMT; }
  static constexpr int ng(int mt) { return mt <= 2 ? 4 : mt <= 4 ? 2 : 1; }
  static V loadu(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static V nib_lo(V v) { return _mm512_and_si512(v, _mm512_set1_epi8(15)); }
  static V nib_hi(V v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(15)); }
  static V flip(V v) { return _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80))); }
  static F cvtph(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static F u8f(const uint8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))); }
};

}  // namespace

bool quant_gemm_avx512vnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return qgemm::run<Avx512Vnni>(g, m0, m1, n0, n1);
}
bool quant_gemm_repacked_avx512vnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return qgemm::run_repacked<Avx512Vnni>(g, m0, m1, n0, n1);
}

}  // namespace hc::cpu

#else

namespace hc::cpu {
bool quant_gemm_avx512vnni(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) { return false; }
bool quant_gemm_repacked_avx512vnni(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) { return false; }
}  // namespace hc::cpu

#endif
