// The int8 copy of x that quant_dot_*.cc's kernels read (quant_dot.h), shared by the AVX2 and
// AVX-512 translation units (internal linkage: each compiles its own copy with its flags).
//
// Per row m of x (K a multiple of 32, nb = K/32 blocks), llama.cpp's q8_0 quantization:
//   d_x = amax(block)/127,  q = round(x / d_x) in [−127, 127]
//   q     int8[qs]: the row's q, zero-padded to qs = K rounded up to 64. Natural order,
//         except Q4_0 on AVX-512, where each complete pair of blocks (A, B) is stored
//         A[0,16) B[0,16) A[16,32) B[16,32): the order in which a pair's nibbles unpack.
//   corr  int32[qs/4]: −off·(q[4i] + … + q[4i+3]), the lanes of a dpbusd / maddubs+madd;
//         starting an int32 lane from it turns Σ u·q over unsigned weight bytes u = w + off
//         into Σ w·q (off: 8 for Q4_0's nibbles, 128 for Q8_0 on VNNI; 0 = unused).
//   xs    float[nb]: d_x per block;  xsum float[nb]: d_x·Σq per block (Q4_K's mins).
//   xsv   float[nb/2][16] (AVX-512): per pair of blocks, d_x in the 16 int32 lanes' order.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "matmul_driver.h"

namespace hc::cpu {
namespace {

struct QRows {
  int64_t nb = 0, qs = 0;
  int8_t* q = nullptr;
  int32_t* corr = nullptr;
  float* xs = nullptr;
  float* xsum = nullptr;
  float* xsv = nullptr;
  const int8_t* qrow(int64_t m) const { return q + m * qs; }
  const int32_t* crow(int64_t m) const { return corr + m * (qs / 4); }
  const float* xsrow(int64_t m) const { return xs + m * nb; }
  const float* xsumrow(int64_t m) const { return xsum + m * nb; }
  const float* xsvrow(int64_t m) const { return xsv + m * (nb / 2) * 16; }
};

// Lays out M rows of QRows for K in one per-thread buffer (every array 64-byte aligned).
inline QRows qrows_alloc(int64_t M, int64_t K) {
  thread_local driver::Scratch<char> buf;
  QRows a;
  a.nb = K / 32;
  a.qs = (K + 63) & ~int64_t(63);
  auto up = [](int64_t b) { return (b + 63) & ~int64_t(63); };
  const int64_t qb = up(M * a.qs), cb = up(M * a.qs), fb = up(M * a.nb * 4), vb = up(M * (a.nb / 2) * 64);
  char* p = buf.get(static_cast<size_t>(qb + cb + 2 * fb + vb));
  a.q = reinterpret_cast<int8_t*>(p);
  a.corr = reinterpret_cast<int32_t*>(p + qb);
  a.xs = reinterpret_cast<float*>(p + qb + cb);
  a.xsum = reinterpret_cast<float*>(p + qb + cb + fb);
  a.xsv = reinterpret_cast<float*>(p + qb + cb + 2 * fb);
  return a;
}

// Calls block(R, MT, m, n) (as std::integral_constant) for rows [m0, m1) of x against the R
// rows of B at n, in tiles of MT_MAX rows of x (then the 1..MT_MAX−1 left).
template <int MT_MAX, int R, class F>
inline void qrow_tiles(int64_t m0, int64_t m1, int64_t n, F&& block) {
  using std::integral_constant;
  int64_t m = m0;
  for (; m1 - m >= MT_MAX; m += MT_MAX) block(integral_constant<int, R>{}, integral_constant<int, MT_MAX>{}, m, n);
  if constexpr (MT_MAX > 3) if (m1 - m == 3) return block(integral_constant<int, R>{}, integral_constant<int, 3>{}, m, n);
  if constexpr (MT_MAX > 2) if (m1 - m == 2) return block(integral_constant<int, R>{}, integral_constant<int, 2>{}, m, n);
  if (m1 - m == 1) block(integral_constant<int, R>{}, integral_constant<int, 1>{}, m, n);
}
// The same over C[:, n0:n1]: groups of 4 rows of B (then single rows) against every row of x.
template <int MT_MAX, class F>
inline void qtiles(int64_t M, int64_t n0, int64_t n1, F&& block) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) qrow_tiles<MT_MAX, 4>(0, M, n, block);
  for (; n < n1; n++) qrow_tiles<MT_MAX, 1>(0, M, n, block);
}

// What each variant's TU (quant_dot_avx2.cc, quant_dot_avx512.cc) defines for quant_dot_run:
// row m of x into `a` (the layout above, for weights DT), and C[m0:m0+MT, n:n+R].
template <DType DT>
inline void quantize_row(const float* x, const QRows& a, int64_t m);
template <DType DT, int R, int MT>
inline void block_q(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n);  // Q8_0, Q4_0
template <int R, int MT>
inline void block_q4k(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n);
// (AVX-512 only) Q4_K and more rows of x than one tile: the weights unpacked once for all tiles.
template <int R>  // rows of B a panel
inline void q4k_panel_run(const GemmArgs& g, const QRows& a, int64_t n0, int64_t n1);

// quant_dot.h's entry point for one variant: x's M rows quantized once (each rank its own
// copy: M·K work against the rank's M·K·N/ranks), then C[:, n0:n1] in register tiles of up
// to MT_MAX rows of x (Panel: Q4_K through q4k_panel_run when there is more than one tile).
template <int MT_MAX, bool Panel>
inline bool quant_dot_run(const GemmArgs& g, int64_t n0, int64_t n1, int64_t max_m) {
  if (g.ta || !g.tb || g.exact_x || g.M > max_m) return false;
  auto go = [&](auto dt) {
    constexpr DType DT = decltype(dt)::value;
    const QRows a = qrows_alloc(g.M, g.K);
    for (int64_t m = 0; m < g.M; m++) quantize_row<DT>(g.A + m * g.lda, a, m);
    if constexpr (Panel && DT == DType::Q4_K)
      if (g.M > MT_MAX) return q4k_panel_run<4>(g, a, n0, n1), true;
    qtiles<MT_MAX>(g.M, n0, n1, [&](auto R, auto MT, int64_t m, int64_t n) {
      if constexpr (DT == DType::Q4_K) block_q4k<R(), MT()>(g, a, m, n);
      else block_q<DT, R(), MT()>(g, a, m, n);
    });
    return true;
  };
  switch (g.btype) {
    case DType::Q8_0: return go(std::integral_constant<DType, DType::Q8_0>{});
    case DType::Q4_0: return go(std::integral_constant<DType, DType::Q4_0>{});
    case DType::Q4_K: return go(std::integral_constant<DType, DType::Q4_K>{});
    default: return false;
  }
}

// matmul_x86.h's q4k_rows_scales with the 12 scale bytes unpacked a word at a time
// (llama.cpp's kmask way) and converted 8 at once: the per-sub-block scalar decode cost
// as much as the int8 dot products it feeds at M = 1.
template <int R>
inline void q4k_rows_scales8(const uint8_t* B, int64_t row_bytes, int64_t off, float ds[R][8], float dm[R][8]) {
  constexpr uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
  for (int r = 0; r < R; r++) {
    const char* next = reinterpret_cast<const char*>(B + (R + r) * row_bytes + off);
    _mm_prefetch(next, _MM_HINT_T0);
    _mm_prefetch(next + 64, _MM_HINT_T0);
    _mm_prefetch(next + 128, _MM_HINT_T0);
    const uint8_t* sb = B + r * row_bytes + off;
    uint32_t u[3];
    __builtin_memcpy(u, sb + 4, 12);
    // quant.h's q4k_scale_min: j < 4 the low 6 bits of bytes j / j+4; j >= 4 a nibble of byte
    // j+4 (low: scale, high: min) under the top 2 bits of byte j−4 (scale) / j (min)
    const uint64_t sc = (u[0] & k1) | uint64_t((u[2] & k2) | (((u[0] >> 6) & k3) << 4)) << 32;
    const uint64_t mn = (u[1] & k1) | uint64_t(((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4)) << 32;
    uint16_t dh, mh;
    __builtin_memcpy(&dh, sb, 2);
    __builtin_memcpy(&mh, sb + 2, 2);
    auto widen = [](uint64_t b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(b)))); };
    _mm256_storeu_ps(ds[r], _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(dh)), widen(sc)));
    _mm256_storeu_ps(dm[r], _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(mh)), widen(mn)));
  }
}

// One block of 32 of x to int8, llama.cpp's q8_0 rounding, in natural order into q[0, 32)
// (AVX2: every variant that includes this has it): d = amax/127, q = round(x/d); returns d and
// sets sum = Σq. Shared by quant_dot_avx2.cc's rows and the int8 GEMM's (quant_gemm_x86.h).
inline float quantize_block32(const float* x, int8_t* q, int& sum) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 v[4];
  for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
  const __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
  const float id = amax > 0.f ? 127.f / amax : 0.f;
  __m256i qi[4];
  for (int i = 0; i < 4; i++) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
  // int32 → int8 with packs (they interleave 128-bit halves; the permute puts them back)
  const __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]), p16b = _mm256_packs_epi32(qi[2], qi[3]);
  const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p8);
  const __m256i t = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  sum = _mm_cvtsi128_si32(s);
  return amax / 127.f;
}

inline float f16_bits(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

}  // namespace
}  // namespace hc::cpu
