// AVX-VNNI variant of the int8 GEMM (quant_gemm.h), the AVX2 level's where the CPU has
// avx_vnni (Alder Lake and later, Zen 5): 8 columns a ymm, VEX vpdpbusd. Compiled with
// -mavxvnni in its own target (binding.gyp); called only when dispatch.h's use_avx_vnni().
#include "quant_gemm.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVXVNNI__)
#include "quant_gemm_x86.h"
#include "quant_gemm_repacked_x86.h"

// the register tile, overridable for bench-kernels' tuning runs
#ifndef QGEMM_AVXVNNI_MR
#define QGEMM_AVXVNNI_MR 3
#define QGEMM_AVXVNNI_NRV 2
#endif

namespace hc::cpu {
namespace {

struct AvxVnni : qgemm::YmmFloat, qgemm::YmmRepack {
  using V = __m256i;
  // 3 rows × 16 columns: 15 of the 16 ymm registers. One Zen 5 core, 512×768×768 q4_0 / q8_0 /
  // q4_k, ms: 3×2 1.86 / 1.88 / 2.06, 4×2 2.21 / 2.17 / 2.37, 2×2 1.90 / 1.98 / 2.80, 6×1 2.26 / 2.21 / 2.22
  static constexpr int MR = QGEMM_AVXVNNI_MR, NRV = QGEMM_AVXVNNI_NRV;
  // the repacked layout's tiles (quant_gemm_repacked_x86.h): 2 rows × a group of 16 columns (2 ymm)
  template <DType>
  static constexpr int rmt() { return 2; }
  static constexpr int ng(int) { return 1; }
  static constexpr bool kUnsignedQ8 = true;
  static V dot(V acc, V w, V x) { return _mm256_dpbusd_avx_epi32(acc, w, x); }
};

}  // namespace

bool quant_gemm_avxvnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return qgemm::run<AvxVnni>(g, m0, m1, n0, n1);
}
bool quant_gemm_repacked_avxvnni(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return qgemm::run_repacked<AvxVnni>(g, m0, m1, n0, n1);
}

}  // namespace hc::cpu

#else

namespace hc::cpu {
bool quant_gemm_avxvnni(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) { return false; }
bool quant_gemm_repacked_avxvnni(const GemmArgs&, int64_t, int64_t, int64_t, int64_t) { return false; }
}  // namespace hc::cpu

#endif
