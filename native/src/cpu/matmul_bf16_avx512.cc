// The packed GEMM of --matmul-precision medium for bf16 weights (matmul_kernels.h): x
// rounded to bf16 (llama.cpp's way) and both operands kept as bf16 pairs, so one
// vdpbf16ps does 32 multiply-adds where the fp32 kernel's vfmadd231ps does 16. Same
// BLIS loops and 12×32 register tile as matmul_avx512.cc's Avx512Micro, but the packed
// panels hold 32-bit words, each a pair (k even in the low half, k odd in the high):
// Ap[kp][MR] (x rounded, round-to-nearest-even) and Bp[kp][NR] (the weights' own bits).
#include "matmul_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)
#include <immintrin.h>

#include "matmul_x86.h"

namespace hc::cpu {
namespace {

// KC in k (pairs: KC / 2). One slice of K up to 2048 (every 110M prefill shape): C is then
// written once, where KC = 256 read and wrote it back K / 256 times (≈ 10 % of a [512, 2304]
// × 768 product, C being 4.7 MB). The tile's B micro-panel (≤ 128 KB) and A panel (≤ 48 KB)
// then stream from L2, which at one 176-byte step per 12 cycles costs nothing; NC = 256 keeps
// the packed B block (≤ 1 MB) in L2 (Zen 5: 1 MB) for the MC rows of A that sweep it.
constexpr int64_t MR = 12, NR = 32, KC = 2048, MC = 144, NC = 256;

// C[MR,NR] = alpha·Ap·Bp + beta·C (+ bias), kp pairs of k.
void tile(int64_t kp, const uint32_t* Ap, const uint32_t* Bp, float* C, int64_t ldc, float alpha, float beta,
          const float* bias) {
  __m512 c[MR][2];
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kp; k++, Ap += MR, Bp += NR) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(Bp), b1 = (__m512bh)_mm512_load_si512(Bp + 16);
    for (int i = 0; i < MR; i++) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(Ap[i]));
      c[i][0] = _mm512_dpbf16_ps(c[i][0], a, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], a, b1);
    }
  }
  store_tile32<MR>(c, C, ldc, alpha, beta, bias);
}

// In-register transpose of 16×16 32-bit words: r[i][j] → r[j][i].
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // now each 128-bit lane holds a 4×4 block transposed; the two lane shuffles put the blocks in place
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xDD);
  }
}

// Ap[panel][kp][MR]: rows m0.. of A, k0..k0+kc, rounded to bf16 pairs; zero past the ends.
// 32 x of each of the panel's 12 rows → 16 pairs each, turned into 16 steps of 12 pairs by one
// 16×16 word transpose (rows 12–15 zero) and 16 masked stores: scattering the pairs one word at
// a time cost ≈ 4× more (≈ 8 % of the 110M prefill GEMM, more at 2 threads: every rank packs A).
void pack_a(const GemmArgs& g, int64_t m0, int64_t mc, int64_t k0, int64_t kc, uint32_t* Ap) {
  static_assert(MR <= 16, "one transpose covers a panel");
  const int64_t kp = (kc + 1) / 2;
  for (int64_t p = 0; p < mc; p += MR) {
    uint32_t* dst = Ap + p * kp;
    const int64_t rows = mc - p < MR ? mc - p : MR;
    for (int64_t k = 0; k < kc; k += 32) {  // 32 x → 16 pairs
      const int64_t left = kc - k;
      const __mmask16 m_lo = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
      const __mmask16 m_hi = left >= 32 ? __mmask16(0xFFFF) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
      __m512i r[16];
      for (int64_t i = 0; i < 16; i++) {
        if (i >= rows) {
          r[i] = _mm512_setzero_si512();
          continue;
        }
        const float* src = g.A + (m0 + p + i) * g.lda + k0 + k;
        const __m512 x0 = _mm512_maskz_loadu_ps(m_lo, src), x1 = _mm512_maskz_loadu_ps(m_hi, src + 16);
        r[i] = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);  // bf16 x[k..k+32) in order: word j = pair j
      }
      transpose16(r);
      const int64_t n = left >= 32 ? 16 : (left + 1) / 2;
      for (int64_t j = 0; j < n; j++) _mm512_mask_storeu_epi32(dst + (k / 2 + j) * MR, __mmask16((1u << MR) - 1), r[j]);
    }
  }
}

// Bp[panel][kp][NR]: B rows n0.. (output features, bf16), k0..k0+kc as pairs; zero past the ends.
// A pair is one 32-bit word of a row, so a full panel is a transpose of 32-bit words: 8 rows ×
// 8 pairs a step through transpose8 (scalar copies cost ≈ 10 % of a 110M prefill GEMM).
void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc, uint32_t* Bp) {
  const int64_t kp = (kc + 1) / 2, even = kc / 2, even8 = even & ~int64_t(7);
  const uint16_t* B = static_cast<const uint16_t*>(g.B);
  for (int64_t p = 0; p < nc; p += NR) {
    uint32_t* dst = Bp + p * kp;
    const int64_t nr = nc - p < NR ? nc - p : NR;
    int64_t k_done = 0;
    if (nr == NR) {
      for (int64_t k = 0; k < even8; k += 8)
        for (int64_t h = 0; h < NR / 8; h++) {
          __m256 r[8];
          for (int j = 0; j < 8; j++)
            r[j] = _mm256_loadu_ps(reinterpret_cast<const float*>(B + (n0 + p + 8 * h + j) * g.ldb + k0 + 2 * k));
          transpose8(r);
          for (int t = 0; t < 8; t++) _mm256_store_ps(reinterpret_cast<float*>(dst + (k + t) * NR + 8 * h), r[t]);
        }
      k_done = even8;
    }
    for (int64_t j = 0; j < NR; j++) {
      if (j >= nr) {
        for (int64_t k = 0; k < kp; k++) dst[k * NR + j] = 0;
        continue;
      }
      const uint16_t* src = B + (n0 + p + j) * g.ldb + k0;
      for (int64_t k = k_done; k < even; k++) {
        uint32_t w;
        __builtin_memcpy(&w, src + 2 * k, 4);
        dst[k * NR + j] = w;
      }
      if (kc % 2) dst[even * NR + j] = src[kc - 1];  // the odd k's partner is zero
    }
  }
}

// The driver's BLIS loops (matmul_driver.h) over these pair-packed panels.
struct Bf16Policy {
  using A = uint32_t;
  using B = uint32_t;
  static constexpr int64_t MR = hc::cpu::MR, NR = hc::cpu::NR, KC = hc::cpu::KC, MC = hc::cpu::MC, NC = hc::cpu::NC;
  static constexpr int64_t ksteps(int64_t k) { return (k + 1) / 2; }
  static void pack_a(const GemmArgs& g, int64_t m0, int64_t mc, int64_t k0, int64_t kc, uint32_t* Ap) {
    hc::cpu::pack_a(g, m0, mc, k0, kc, Ap);
  }
  static void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc, uint32_t* Bp) {
    hc::cpu::pack_b(g, k0, kc, n0, nc, Bp);
  }
  static void tile(int64_t kp, const uint32_t* Ap, const uint32_t* Bp, float* C, int64_t ldc, float alpha, float beta,
                   const float* bias) {
    hc::cpu::tile(kp, Ap, Bp, C, ldc, alpha, beta, bias);
  }
};

void gemm_tile_bf16(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  driver::gemm_rows<Bf16Policy>(g, m0, m1, n0, n1);
}
void gemm_chunk_bf16(const GemmArgs& g, uint64_t region, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  driver::gemm_blocks<Bf16Policy>(g, region, m0, m1, n0, n1);
}

}  // namespace

GemmTileFn avx512_bf16_gemm_tile() { return &gemm_tile_bf16; }
GemmChunkFn avx512_bf16_gemm_chunk() { return &gemm_chunk_bf16; }

}  // namespace hc::cpu

#else

namespace hc::cpu {
GemmTileFn avx512_bf16_gemm_tile() { return nullptr; }
GemmChunkFn avx512_bf16_gemm_chunk() { return nullptr; }
}  // namespace hc::cpu

#endif
