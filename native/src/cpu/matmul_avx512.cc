// AVX-512 kernel variants (F/BW/VL/DQ; the bf16 one also AVX512-BF16 and -VNNI).
// Compiled with the AVX-512 flags in its own target (binding.gyp); matmul.cc only
// calls into it when dispatch.h's kernel_level() says the CPU has them.
#include "matmul_kernels.h"

// GCC 12's AVX-512 headers trip its own -Wuninitialized on the _mm*_undefined_*()
// placeholders inside intrinsics such as _mm512_reduce_add_ps (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512BF16__)
#include <type_traits>

#include "matmul_x86.h"
#include "quant_dot.h"
#include "quant_gemm.h"

namespace hc::cpu {
namespace {

// 12×32 tile of C in 24 zmm accumulators; B micro-panels of 32 columns.
struct Avx512Micro : X86Packing<32> {
  // KC = 1024: C written once for K <= 1024 (KC = 256 wrote it back K / 256 times: 10–25 % of a
  // 110M prefill product, one Zen 5 core); the B micro-panel (128 KB) and A panel (48 KB) stream
  // from L2 at 176 bytes per 12 cycles; NC = 256 keeps the packed B block (1 MB) in L2.
  static constexpr int64_t MR = 12, KC = 1024, MC = 96, NC = 256;
  static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, float alpha,
                   float beta, const float* bias) {
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++, Ap += MR, Bp += NR) {
      const __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
      for (int i = 0; i < MR; i++) {
        const __m512 a = _mm512_set1_ps(Ap[i]);
        c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
        c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
      }
    }
    store_tile32<MR>(c, C, ldc, alpha, beta, bias);
  }
};

// 16 weights from k = idx on (fewer past the row's end: `mask` zero-fills the rest), as fp32.
template <DType DT, bool Masked>
inline __m512 wload16(const void* base, int64_t idx, __mmask16 mask) {
  if constexpr (DT == DType::F32) {
    const float* p = static_cast<const float*>(base) + idx;
    return Masked ? _mm512_maskz_loadu_ps(mask, p) : _mm512_loadu_ps(p);
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(base) + idx;
    const __m256i h = Masked ? _mm256_maskz_loadu_epi16(mask, p) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (DT == DType::BF16)
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else
      return _mm512_cvtph_ps(h);
  }
}

// The 16 sums of acc[r][m] (4 rows of B × 4 rows of A) stored to C[m0 + m, n + r]: one
// transposing tree (15 adds, 30 shuffles) leaves lane 4·m + r holding sum(acc[r][m]), where 16
// horizontal reductions took ≈ 130 instructions, a quarter of a 4×4 tile's work at K = 768.
inline void store_sums4x4(const GemmArgs& g, int64_t m0, int64_t n, const __m512 (&acc)[4][4]) {
  const __m512* a = &acc[0][0];  // a[4·r + m]
  __m512 b[8], c[4];
  // b[i]: 128-bit lanes 0–1 a partial of a[2i], 2–3 of a[2i+1]
  for (int i = 0; i < 8; i++)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44), _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  // c[j]: lane L a 4-float partial of a[4j + L]
  for (int j = 0; j < 4; j++)
    c[j] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * j], b[2 * j + 1], 0x88), _mm512_shuffle_f32x4(b[2 * j], b[2 * j + 1], 0xDD));
  const __m512 d0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
  const __m512 d1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
  // element q of lane L: the whole sum of c[q]'s lane L, i.e. of a[4q + L] = acc[q][L]
  alignas(64) float sums[16];
  _mm512_store_ps(sums, _mm512_add_ps(_mm512_shuffle_ps(d0, d1, _MM_SHUFFLE(1, 0, 1, 0)),
                                      _mm512_shuffle_ps(d0, d1, _MM_SHUFFLE(3, 2, 3, 2))));
  const __m128 alpha = _mm_set1_ps(g.alpha), beta = _mm_set1_ps(g.beta);
  for (int m = 0; m < 4; m++) {
    float* c_row = g.C + (m0 + m) * g.ldc + n;
    __m128 v = _mm_mul_ps(alpha, _mm_load_ps(sums + 4 * m));
    if (g.beta != 0.f) v = _mm_add_ps(v, _mm_mul_ps(beta, _mm_loadu_ps(c_row)));
    if (g.bias) v = _mm_add_ps(v, _mm_loadu_ps(g.bias + n));
    _mm_storeu_ps(c_row, v);
  }
}

// The R×MT sums of a tile of the streaming kernels into C.
template <int R, int MT>
inline void store_sums(const GemmArgs& g, int64_t m0, int64_t n, const __m512 (&acc)[R][MT]) {
  if constexpr (R == 4 && MT == 4) {
    store_sums4x4(g, m0, n, acc);
  } else {
    for (int r = 0; r < R; r++)
      for (int m = 0; m < MT; m++) store_out(g, m0 + m, n + r, _mm512_reduce_add_ps(acc[r][m]));
  }
}

// C[m0:m0+MT, n:n+R] from R rows of B against MT rows of A, over the whole K,
// 16 fp32 lanes a step (the last step masked).
template <DType DT, int R, int MT>
inline void gemv_block(const GemmArgs& g, int64_t m0, int64_t n) {
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  const float* a = g.A + m0 * g.lda;
  // one step of 16 k; the main loop unmasked (a masked load is slower even when full)
  auto step = [&](int64_t k, __mmask16 mask, auto masked) {
    __m512 x[MT];
    for (int m = 0; m < MT; m++)
      x[m] = masked ? _mm512_maskz_loadu_ps(mask, a + m * g.lda + k) : _mm512_loadu_ps(a + m * g.lda + k);
    for (int r = 0; r < R; r++) {
      prefetch_rows<DT, R>(g.B, g.ldb, n, r, k);
      const __m512 w = wload16<DT, masked>(g.B, (n + r) * g.ldb + k, mask);
      for (int m = 0; m < MT; m++) acc[r][m] = _mm512_fmadd_ps(w, x[m], acc[r][m]);
    }
  };
  const int64_t K16 = g.K & ~int64_t(15);
  for (int64_t k = 0; k < K16; k += 16) step(k, __mmask16(0xFFFF), std::false_type{});
  if (K16 < g.K) step(K16, __mmask16((1u << (g.K - K16)) - 1), std::true_type{});
  store_sums<R, MT>(g, m0, n, acc);
}

// Calls block(R, MT, m, n) (R and MT as std::integral_constant) over the output
// C[:, n0:n1]: groups of RG rows of B (then single rows) against all M rows of A
// (M <= stream_max_m) in tiles of 4 rows (then the 1..3 left). The first tile of a group
// pulls its B rows from memory, the others find them in L1/L2.
template <int R, class F>
inline void row_tiles(const GemmArgs& g, int64_t n, F&& block) {
  using std::integral_constant;
  int64_t m = 0;
  for (; g.M - m >= 4; m += 4) block(integral_constant<int, R>{}, integral_constant<int, 4>{}, m, n);
  switch (g.M - m) {
    case 3: return block(integral_constant<int, R>{}, integral_constant<int, 3>{}, m, n);
    case 2: return block(integral_constant<int, R>{}, integral_constant<int, 2>{}, m, n);
    case 1: return block(integral_constant<int, R>{}, integral_constant<int, 1>{}, m, n);
  }
}
template <int RG = 4, class F>
inline void for_tiles(const GemmArgs& g, int64_t n0, int64_t n1, F&& block) {
  int64_t n = n0;
  if constexpr (RG > 1)
    for (; n + RG <= n1; n += RG) row_tiles<RG>(g, n, block);
  for (; n < n1; n++) row_tiles<1>(g, n, block);
}

// for_tiles for f32/f16/bf16 weights: at M = 1 one row after another (prefetch_rows, matmul_x86.h)
template <class F>
inline void weight_tiles(const GemmArgs& g, int64_t n0, int64_t n1, F&& block) {
  if (g.M == 1) return for_tiles<1>(g, n0, n1, block);
  for_tiles(g, n0, n1, block);
}

template <DType DT>
void gemv_typed(const GemmArgs& g, int64_t n0, int64_t n1) {
  weight_tiles(g, n0, n1, [&](auto R, auto MT, int64_t m, int64_t n) { gemv_block<DT, R(), MT()>(g, m, n); });
}

// ---- q8_0 / q4_0 weights ----------------------------------------------------
// Each block is dequantized to fp32 in registers (exactly: d·q fits fp32) and used for
// all MT rows of A, so the activations stay fp32 (no int8 rounding of x, unlike
// llama.cpp's vec_dot) and a batch shares the unpacking. Decode is bound by the
// weight bytes (4.5 / 8.5 bits a weight), not by these few instructions a block.

// The 32 weights of one block: w[0..16) in lo, w[16..32) in hi.
template <DType DT>
inline void dequant_block(const uint8_t* blk, __m512& lo, __m512& hi) {
  uint16_t dbits;
  __builtin_memcpy(&dbits, blk, 2);
  const __m512 d = _mm512_set1_ps(_cvtsh_ss(dbits));
  if constexpr (DT == DType::Q8_0) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18));
    lo = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)));
    hi = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)));
  } else {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i m4 = _mm_set1_epi8(15);
    const __m128i q0 = _mm_and_si128(b, m4), q1 = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    const __m512 d8 = _mm512_mul_ps(d, _mm512_set1_ps(-8.f));  // d·(q − 8) = d·q − 8d, exact
    lo = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q0)), d8);
    hi = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q1)), d8);
  }
}

template <DType DT, int R, int MT>
inline void gemv_q_block(const GemmArgs& g, int64_t m0, int64_t n) {
  constexpr int64_t BB = dtype_bytes(DT, 32);
  const int64_t row_bytes = dtype_bytes(DT, g.ldb);
  const uint8_t* B = static_cast<const uint8_t*>(g.B) + n * row_bytes;
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  const float* a = g.A + m0 * g.lda;
  for (int64_t k = 0, off = 0; k < g.K; k += 32, off += BB) {
    __m512 x0[MT], x1[MT];
    for (int m = 0; m < MT; m++) {
      x0[m] = _mm512_loadu_ps(a + m * g.lda + k);
      x1[m] = _mm512_loadu_ps(a + m * g.lda + k + 16);
    }
    for (int r = 0; r < R; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(B + (R + r) * row_bytes + off), _MM_HINT_T0);
      __m512 w0, w1;
      dequant_block<DT>(B + r * row_bytes + off, w0, w1);
      for (int m = 0; m < MT; m++) {
        acc[r][m] = _mm512_fmadd_ps(w0, x0[m], acc[r][m]);
        acc[r][m] = _mm512_fmadd_ps(w1, x1[m], acc[r][m]);
      }
    }
  }
  store_sums<R, MT>(g, m0, n, acc);
}

template <DType DT>
void gemv_q(const GemmArgs& g, int64_t n0, int64_t n1) {
  for_tiles(g, n0, n1, [&](auto R, auto MT, int64_t m, int64_t n) { gemv_q_block<DT, R(), MT()>(g, m, n); });
}

// ---- q4_k weights -------------------------------------------------------------
// Per super-block of 256 the 8 sub-block scales and offsets are decoded once per row, then
// each sub-block of 32 is dequantized in two registers (d·sc·q − dmin·m, one fused
// multiply-subtract a 16 weights) and used for all MT rows of x, held in registers.
template <int R, int MT>
inline void gemv_q4k_block(const GemmArgs& g, int64_t m0, int64_t n) {
  const int64_t row_bytes = dtype_bytes(DType::Q4_K, g.ldb);
  const uint8_t* B = static_cast<const uint8_t*>(g.B) + n * row_bytes;
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  const float* a = g.A + m0 * g.lda;
  const __m128i m4 = _mm_set1_epi8(15);
  for (int64_t k = 0, off = 0; k < g.K; k += 256, off += 144) {
    float ds[R][8], dm[R][8];
    q4k_rows_scales<R>(B, row_bytes, off, ds, dm);
    for (int j = 0; j < 8; j++) {  // sub-block j: the low (j even) or high nibbles of bytes [32(j/2), +32)
      const int64_t kj = k + 32 * j;
      __m512 x0[MT], x1[MT];  // x in registers once for all R rows (as gemv_q_block)
      for (int m = 0; m < MT; m++) {
        x0[m] = _mm512_loadu_ps(a + m * g.lda + kj);
        x1[m] = _mm512_loadu_ps(a + m * g.lda + kj + 16);
      }
      for (int r = 0; r < R; r++) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + r * row_bytes + off + 16 + 32 * (j / 2)));
        __m128i q0 = _mm256_castsi256_si128(b), q1 = _mm256_extracti128_si256(b, 1);
        if (j % 2) {
          q0 = _mm_srli_epi16(q0, 4);
          q1 = _mm_srli_epi16(q1, 4);
        }
        const __m512 vds = _mm512_set1_ps(ds[r][j]), vdm = _mm512_set1_ps(dm[r][j]);
        const __m512 w0 = _mm512_fmsub_ps(vds, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q0, m4))), vdm);
        const __m512 w1 = _mm512_fmsub_ps(vds, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q1, m4))), vdm);
        for (int m = 0; m < MT; m++) {
          acc[r][m] = _mm512_fmadd_ps(w0, x0[m], acc[r][m]);
          acc[r][m] = _mm512_fmadd_ps(w1, x1[m], acc[r][m]);
        }
      }
    }
  }
  store_sums<R, MT>(g, m0, n, acc);
}

void gemv_q4k(const GemmArgs& g, int64_t n0, int64_t n1) {
  for_tiles(g, n0, n1, [&](auto R, auto MT, int64_t m, int64_t n) { gemv_q4k_block<R(), MT()>(g, m, n); });
}

void avx512_gemv(const GemmArgs& g, int64_t n0, int64_t n1) {
  switch (g.btype) {
    case DType::F32: return gemv_typed<DType::F32>(g, n0, n1);
    case DType::BF16: return gemv_typed<DType::BF16>(g, n0, n1);
    case DType::F16: return gemv_typed<DType::F16>(g, n0, n1);
    case DType::Q8_0: return gemv_q<DType::Q8_0>(g, n0, n1);
    case DType::Q4_0: return gemv_q<DType::Q4_0>(g, n0, n1);
    case DType::Q4_K: return gemv_q4k(g, n0, n1);
    case DType::Q6_K: return portable_kernels().gemv_cols(g, n0, n1);  // read only (GGUF): rows dequantized, then dotted
  }
}

// ---- bf16 weights through vdpbf16ps ----------------------------------------
// vdpbf16ps multiplies bf16 pairs exactly and accumulates in fp32, but both operands
// must be bf16. Rounding the activations to bf16 (as llama.cpp does) would cost 8 bits
// of x; instead each x is split into hi = bf16(x) and lo = bf16(x - hi), and w·x is
// w·hi + w·lo: x kept to ~16 bits, the weights exact, two instructions per 32 weights
// instead of the widening path's six per 32. Measured on Zen 5: 0–15 % faster than the
// widening GEMV, but ~16-bit x leaves elements off by up to ~1e-3 relative (cancelling
// sums) where fp32 x gives ~3e-5, enough to break the TP=1 vs TP=2 agreement test; so
// dispatch.h picks this variant only when HYBRIDCHAT_KERNELS=avx512bf16 asks for it.

inline int64_t round32(int64_t k) { return (k + 31) & ~int64_t(31); }

// hi[m][k], lo[m][k] for the M rows of A; row stride K32 = round32(K). lo null: hi only.
void split_rows(const GemmArgs& g, uint16_t* hi, uint16_t* lo) {
  const int64_t K32 = round32(g.K);
  for (int64_t m = 0; m < g.M; m++) {
    const float* a = g.A + m * g.lda;
    for (int64_t k = 0; k < K32; k += 16) {
      const int64_t left = g.K - k;
      const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
      const __m512 x = _mm512_maskz_loadu_ps(mask, a + k);
      const __m256bh h = _mm512_cvtneps_pbh(x);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + m * K32 + k), (__m256i)h);
      if (!lo) continue;
      // bf16 → fp32 is a shift: the exact value of hi
      const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)h), 16));
      const __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(x, hf));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + m * K32 + k), (__m256i)l);
    }
  }
}

// Lo: x as hi + lo (High); else x rounded to hi alone (Medium).
template <int R, int MT, bool Lo>
inline void dp_block(const GemmArgs& g, const uint16_t* hi, const uint16_t* lo, int64_t m0, int64_t n) {
  const int64_t K32 = round32(g.K);
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  const uint16_t* w = static_cast<const uint16_t*>(g.B);
  auto step = [&](int64_t k, __mmask32 mask, auto masked) {
    __m512bh xh[MT], xl[MT];
    for (int m = 0; m < MT; m++) {
      xh[m] = (__m512bh)_mm512_load_si512(hi + (m0 + m) * K32 + k);
      if constexpr (Lo) xl[m] = (__m512bh)_mm512_load_si512(lo + (m0 + m) * K32 + k);
    }
    for (int r = 0; r < R; r++) {
      prefetch_rows<DType::BF16, R>(w, g.ldb, n, r, k);
      const uint16_t* p = w + (n + r) * g.ldb + k;
      const __m512bh wv = (__m512bh)(masked ? _mm512_maskz_loadu_epi16(mask, p) : _mm512_loadu_si512(p));
      for (int m = 0; m < MT; m++) {
        acc[r][m] = _mm512_dpbf16_ps(acc[r][m], wv, xh[m]);
        if constexpr (Lo) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], wv, xl[m]);
      }
    }
  };
  const int64_t K32m = g.K & ~int64_t(31);
  for (int64_t k = 0; k < K32m; k += 32) step(k, __mmask32(0xFFFFFFFFu), std::false_type{});
  if (K32m < g.K) step(K32m, __mmask32((1u << (g.K - K32m)) - 1), std::true_type{});
  store_sums<R, MT>(g, m0, n, acc);
}

// The int8 GEMM (quant_gemm.h) from this many rows of x: below, quant_dot's streamed tiles win, as
// the GEMM packs B per call (≈ 0.15 ms for 2048×768, 0.1 ns a weight). One Zen 5 core, dot vs
// GEMM, ms: 2048×768 q4_0 M = 8 0.128 vs 0.182, M = 16 0.255 vs 0.216, M = 32 0.522 vs 0.301;
// 768×2048 q4_0 M = 16 0.242 vs 0.279; q4_k M = 16 0.250 vs 0.271, M = 32 0.487 vs 0.344. Over the
// 110M model's 7 linears a layer at M = 16: q8_0 / q4_0 1.11× faster through the GEMM, q4_k 0.83×.
inline int64_t vnni_quant_gemm_min_m(DType t) { return t == DType::Q4_K ? 24 : 16; }

// Weights repacked at load (quant_repack.h) take the repacked GEMM from this many rows of x: every M.
// One Zen 5 core, 2048×768, repacked vs the file's layout (dot products below 16 rows, the packing
// GEMM above), ms: q4_0 M = 1 0.010 vs 0.025, M = 8 0.038 vs 0.124, M = 16 0.076 vs 0.215, M = 64
// 0.315 vs 0.436, M = 512 2.53 vs 2.56; q4_k M = 1 0.009 vs 0.028, M = 16 0.088 vs 0.247, M = 512
// 2.93 vs 2.81 (kept: what reads the file's layout brings its dropped pages back).
inline int64_t vnni_repacked_min_m(DType) { return 1; }

// The block formats through int8 dot products (quant_dot.h) or the int8 GEMM where they handle the product.
void avx512vnni_gemv(const GemmArgs& g, int64_t n0, int64_t n1) {
  if (g.M >= vnni_repacked_min_m(g.btype) && quant_gemm_repacked_avx512vnni(g, 0, g.M, n0, n1)) return;
  if (g.M >= vnni_quant_gemm_min_m(g.btype) && quant_gemm_avx512vnni(g, 0, g.M, n0, n1)) return;
  if (!quant_dot_avx512vnni(g, n0, n1)) avx512_gemv(g, n0, n1);
}
void avx512vnni_gemm_tile(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (quant_gemm_repacked_avx512vnni(g, m0, m1, n0, n1)) return;
  if (!quant_gemm_avx512vnni(g, m0, m1, n0, n1)) driver::gemm_tile<Avx512Micro>(g, m0, m1, n0, n1);
}

template <bool Lo>
void avx512bf16_gemv(const GemmArgs& g, int64_t n0, int64_t n1) {
  if (g.btype != DType::BF16) return avx512vnni_gemv(g, n0, n1);
  // one rank's copy of A's rows split into hi/lo pairs (or rounded to hi), each row
  // zero-padded to a multiple of 32 (so the last step needs no mask on x)
  thread_local driver::Scratch<uint16_t> buf;
  const int64_t K32 = round32(g.K);
  uint16_t* hi = buf.get((Lo ? 2 : 1) * g.M * K32);
  uint16_t* lo = Lo ? hi + g.M * K32 : nullptr;
  split_rows(g, hi, lo);
  weight_tiles(g, n0, n1, [&](auto R, auto MT, int64_t m, int64_t n) { dp_block<R(), MT(), Lo>(g, hi, lo, m, n); });
}

// Streaming beats packing up to M = 64 here (one Zen 5 core, 2048×768: bf16 1.13 vs 1.32 ms,
// f32 1.56 vs 1.62, q4_0 1.6 vs 3.5 at M = 64): packing converts and transposes all of B,
// while the 4×4 register tiles reuse each B row from L1 for every tile of rows.
constexpr int64_t kAvx512StreamMaxM = 64;
const CpuKernels kAvx512 = {"avx512", Avx512Micro::MR, Avx512Micro::NR, kAvx512StreamMaxM,
                            &driver::gemm_tile<Avx512Micro>, &avx512_gemv, &driver::gemm_chunk<Avx512Micro>, false};
const CpuKernels kAvx512Vnni = {"avx512vnni", Avx512Micro::MR, Avx512Micro::NR, kAvx512StreamMaxM,
                                &avx512vnni_gemm_tile, &avx512vnni_gemv, &driver::gemm_chunk<Avx512Micro>, true};
const CpuKernels kAvx512Bf16 = {"avx512bf16", Avx512Micro::MR, Avx512Micro::NR, kAvx512StreamMaxM,
                                &avx512vnni_gemm_tile, &avx512bf16_gemv<true>, &driver::gemm_chunk<Avx512Micro>, true};
// --matmul-precision medium: x rounded to bf16 in the GEMV and in the packed GEMM (matmul_bf16_avx512.cc,
// the same 12×32 tile)
const CpuKernels kAvx512Bf16Medium = {"avx512bf16-medium", Avx512Micro::MR, Avx512Micro::NR, kAvx512StreamMaxM,
                                      avx512_bf16_gemm_tile(), &avx512bf16_gemv<false>, avx512_bf16_gemm_chunk(), true};

}  // namespace

const CpuKernels* avx512_kernels(KernelLevel level) {
  return level >= KernelLevel::Avx512Bf16 ? &kAvx512Bf16 : level == KernelLevel::Avx512Vnni ? &kAvx512Vnni : &kAvx512;
}
// high is the avx512bf16 variant's GEMV (hi + lo) with the fp32 packed GEMM
const CpuKernels* avx512_dp_kernels(MatmulPrecision p) {
  return p == MatmulPrecision::Medium ? &kAvx512Bf16Medium : p == MatmulPrecision::High ? &kAvx512Bf16 : &kAvx512;
}

}  // namespace hc::cpu

#else

namespace hc::cpu {
const CpuKernels* avx512_kernels(KernelLevel) { return nullptr; }
const CpuKernels* avx512_dp_kernels(MatmulPrecision) { return nullptr; }
}  // namespace hc::cpu

#endif
