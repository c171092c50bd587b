// AVX2-level helpers shared by the AVX2 and AVX-512 matmul translation units.
// Everything has internal linkage: each TU compiles its own copy with its own flags
// (see matmul_driver.h on why no inline function may be shared across them).
#pragma once
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "matmul_driver.h"

namespace hc::cpu {
namespace {

template <DType DT>
inline __m256 load8(const void* base, int64_t idx) {
  if constexpr (DT == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + idx);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + idx));
    if constexpr (DT == DType::BF16)
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else
      return _mm256_cvtph_ps(h);
  }
}

// In-register 8×8 transpose: r[i][j] → r[j][i].
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

template <DType DT>
inline float load1(const void* base, int64_t idx) {
  if constexpr (DT == DType::F32)
    return static_cast<const float*>(base)[idx];
  else if constexpr (DT == DType::BF16)
    return driver::bf16_bits_to_f32(static_cast<const uint16_t*>(base)[idx]);
  else
    return _cvtsh_ss(static_cast<const uint16_t*>(base)[idx]);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The hardware prefetcher restarts on every short row; fetching the same
// position of the next block of rows keeps enough lines in flight for one core
// (measured: bf16 decode 17 → 29 GB/s on one core, 34 → 55 GB/s on two). Non-temporal:
// a weight row is read once a step, so it should not evict what the step reads again (x,
// the KV cache, the activations) from L2; measured on Zen 5, 2 threads, cold 4096×768:
// bf16 0.137–0.148 → 0.119–0.134 ms, f32 0.242–0.258 → 0.223–0.252 ms (means), T1 slower.
template <DType DT>
inline void prefetch(const void* base, int64_t idx) {
  const char* p = static_cast<const char*>(base) + idx * int64_t(DT == DType::F32 ? 4 : 2);
  _mm_prefetch(p, _MM_HINT_NTA);
}

// How far ahead along its own row a single-row block prefetches B. Decode at batch 1 reads B's
// rows one after another, so a chunk is one ascending stream; 4 rows side by side prefetch the
// next 4 rows instead. Each row's sum is the same FMAs in the same order either way, bit for bit.
// AVX-512, 110M tg128 on Zen 5, 2 threads, alternating processes (RESULTS.md): f32 median +8 %,
// f16 +17 %, bf16 +11 %; 1B bf16 +5–32 %. AVX2 f32 +6 %.
constexpr int64_t kRowStreamAhead = 4096;

// The prefetch for row r of a block of R rows of B at n, column k (elements of DT).
template <DType DT, int R>
inline void prefetch_rows(const void* B, int64_t ldb, int64_t n, int r, int64_t k) {
  if constexpr (R == 1)
    prefetch<DT>(B, n * ldb + k + kRowStreamAhead / int64_t(DT == DType::F32 ? 4 : 2));
  else
    prefetch<DT>(B, (n + R + r) * ldb + k);
}

// NR rows of B (output features) × kc → dst[k][NR] (NR % 8 == 0), converting to
// fp32 and transposing 8×8 blocks in registers.
template <DType DT, int64_t NR>
inline void pack_bt_panel(const void* B, int64_t ldb, int64_t row0, int64_t k0, int64_t kc, float* dst) {
  const int64_t kc8 = kc & ~int64_t(7);
  for (int64_t k = 0; k < kc8; k += 8)
    for (int64_t h = 0; h < NR / 8; h++) {
      __m256 r[8];
      for (int j = 0; j < 8; j++) r[j] = load8<DT>(B, (row0 + 8 * h + j) * ldb + k0 + k);
      transpose8(r);
      for (int t = 0; t < 8; t++) _mm256_store_ps(dst + (k + t) * NR + 8 * h, r[t]);
    }
  for (int64_t k = kc8; k < kc; k++)
    for (int64_t j = 0; j < NR; j++) dst[k * NR + j] = load1<DT>(B, (row0 + j) * ldb + k0 + k);
}

// The packing half of a micro-kernel (matmul_driver.h) with NR-wide panels.
template <int64_t NR_>
struct X86Packing {
  static constexpr int64_t NR = NR_;
  static float half(uint16_t h) { return _cvtsh_ss(h); }
  template <DType DT>
  static bool pack_bt(const void* B, int64_t ldb, int64_t row0, int64_t k0, int64_t kc, float* dst) {
    if constexpr (is_quantized(DT)) return false;  // the driver's generic loop dequantizes
    else {
      pack_bt_panel<DT, NR>(B, ldb, row0, k0, kc, dst);
      return true;
    }
  }
};

// A Q4_K super-block's 8 sub-block scales d·sc[j] and offsets dmin·m[j] (quant.h's layout).
inline void q4k_scales(const uint8_t* sb, float ds[8], float dm[8]) {
  uint16_t dh, mh;
  __builtin_memcpy(&dh, sb, 2);
  __builtin_memcpy(&mh, sb + 2, 2);
  const float d = _cvtsh_ss(dh), dmin = _cvtsh_ss(mh);
  for (int j = 0; j < 8; j++) {
    int sc, m;
    q4k_scale_min(sb + 4, j, sc, m);
    ds[j] = d * static_cast<float>(sc);
    dm[j] = dmin * static_cast<float>(m);
  }
}

// For R rows of Q4_K weights at byte offset `off` (one super-block each): their scales and
// offsets decoded, and the next R rows' same super-block prefetched (the GEMV's next tile).
template <int R>
inline void q4k_rows_scales(const uint8_t* B, int64_t row_bytes, int64_t off, float ds[R][8], float dm[R][8]) {
  for (int r = 0; r < R; r++) {
    const char* next = reinterpret_cast<const char*>(B + (R + r) * row_bytes + off);
    _mm_prefetch(next, _MM_HINT_T0);
    _mm_prefetch(next + 64, _MM_HINT_T0);
    _mm_prefetch(next + 128, _MM_HINT_T0);
    q4k_scales(B + r * row_bytes + off, ds[r], dm[r]);
  }
}

// C[m, n] = alpha·s + beta·C[m, n] (+ bias[n]): one output of the streaming path.
inline void store_out(const GemmArgs& g, int64_t m, int64_t n, float s) {
  float v = g.alpha * s;
  float* c = g.C + m * g.ldc + n;
  if (g.beta != 0.f) v += g.beta * *c;
  if (g.bias) v += g.bias[n];
  *c = v;
}

// The streamed block-format tiles' frame (quant_dot_ymm.h, matmul_avx2.cc): row n of g's B, in
// rows of dtype_bytes(DT, g.ldb) bytes; R × MT accumulators zeroed; each stored as its lanes' sum.
template <DType DT>
inline const uint8_t* block_row(const GemmArgs& g, int64_t n) {
  return static_cast<const uint8_t*>(g.B) + n * dtype_bytes(DT, g.ldb);
}
template <int R, int MT>
inline void zero_tile(__m256 (&acc)[R][MT]) {
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm256_setzero_ps();
}
template <int R, int MT>
inline void store_tile(const GemmArgs& g, int64_t m0, int64_t n, const __m256 (&acc)[R][MT]) {
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) store_out(g, m0 + m, n + r, hsum(acc[r][m]));
}

#if defined(__AVX512F__)
// The end of an MR×32 micro-tile held in c[MR][2]: C = alpha·c + beta·C (+ bias); beta == 0 never reads C.
template <int MR>
inline void store_tile32(const __m512 (&c)[MR][2], float* C, int64_t ldc, float alpha, float beta, const float* bias) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __m512 bias0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
  for (int i = 0; i < MR; i++) {
    float* ci = C + i * ldc;
    __m512 lo = _mm512_fmadd_ps(va, c[i][0], bias0), hi = _mm512_fmadd_ps(va, c[i][1], bias1);
    if (beta != 0.f) {
      lo = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), lo);
      hi = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), hi);
    }
    _mm512_storeu_ps(ci, lo);
    _mm512_storeu_ps(ci + 16, hi);
  }
}
#endif

}  // namespace
}  // namespace hc::cpu

#endif
