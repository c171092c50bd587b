// The int8 GEMM of quant_gemm.h, written once over an instruction-set trait I that each
// variant's translation unit (quant_gemm_avx512.cc, quant_gemm_avx2.cc, quant_gemm_avxvnni.cc)
// supplies with its own flags (internal linkage: every TU compiles its own copy).
//
// A trait I provides:
//   using V (int vector), F (fp32 vector); VN = columns per vector (4 bytes of k each);
//   MR, NRV: the register tile (rows of x × vectors of columns), measured per variant;
//   kUnsignedQ8: Q8_0 weights stored as w + 128 with x's −128·Σq correction (vpdpbusd),
//   else stored signed and met through the sign trick (maddubs would saturate at 255·127·2);
//   load(p), bcast(p) (4 bytes of x to every lane), set1(int), dot(acc, w, x) (u8 × s8, 4 products
//   a lane), dot_signed(acc, w, x) (s8 × s8, only where !kUnsignedQ8), and on F: zero, fset1,
//   fload(u), fstore(u), cvt, add, mul, fmadd, fnmadd (the ymm ones: YmmFloat below).
//
// Packed panel of NP columns (a multiple of NR = NRV·VN; columns past the matrix are zero):
//   w  [NP/NR tiles][nb blocks][8 groups of 4 k][NRV][VN columns][4 bytes]
//   sc [tiles][nb][NRV][VN]  d_w (Q8_0, Q4_0) or d·sc of the sub-block (Q4_K)
//   mn [tiles][nb][NRV][VN]  Q4_K only: dmin·m of the sub-block
// Q4_0's nibbles are stored as 0..15 (the −8 is x's correction −8·Σq), Q4_K's as 0..15 (the
// min is −dmin·m·d_x·Σq, through xsum).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "matmul_driver.h"
#include "matmul_x86.h"
#include "quant_dot_x86.h"

namespace hc::cpu {
namespace {
namespace qgemm {

// x's rows [m0, m1) as int8 blocks: q [rows][K], per block d_x, Σq and d_x·Σq.
struct XRows {
  int64_t nb = 0, K = 0;
  int8_t* q = nullptr;
  float* dx = nullptr;
  int32_t* isum = nullptr;
  float* xsum = nullptr;
};

// x's rows [m0, m1) through quant_dot_x86.h's quantize_block32 (llama.cpp's q8_0 rounding).
// Where g.x_id names the rows as unchanged since this thread last quantized them (the same
// region's previous chunk, matmul_kernels.h), that copy is returned as it is.
inline XRows quantize_rows(const GemmArgs& g, int64_t m0, int64_t m1) {
  thread_local driver::Scratch<char> buf;
  struct Key {
    uint64_t id;
    const float* A;
    int64_t lda, K, m0, m1;
    bool operator==(const Key& o) const { return id == o.id && A == o.A && lda == o.lda && K == o.K && m0 == o.m0 && m1 == o.m1; }
  };
  thread_local Key held{0, nullptr, 0, 0, 0, 0};
  thread_local XRows last;
  const Key key{g.x_id, g.A, g.lda, g.K, m0, m1};
  if (g.x_id != 0 && held == key) return last;
  held = Key{0, nullptr, 0, 0, 0, 0};  // buf is rewritten below: nothing held until it is whole
  XRows a;
  a.K = g.K;
  a.nb = g.K / 32;
  const int64_t rows = m1 - m0;
  auto up = [](int64_t b) { return (b + 63) & ~int64_t(63); };
  const int64_t qb = up(rows * g.K), fb = up(rows * a.nb * 4);
  char* p = buf.get(static_cast<size_t>(qb + 3 * fb));
  a.q = reinterpret_cast<int8_t*>(p);
  a.dx = reinterpret_cast<float*>(p + qb);
  a.isum = reinterpret_cast<int32_t*>(p + qb + fb);
  a.xsum = reinterpret_cast<float*>(p + qb + 2 * fb);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t b = 0; b < a.nb; b++) {
      int sum;
      const float d = quantize_block32(g.A + (m0 + r) * g.lda + 32 * b, a.q + r * g.K + 32 * b, sum);
      a.dx[r * a.nb + b] = d;
      a.isum[r * a.nb + b] = sum;
      a.xsum[r * a.nb + b] = d * static_cast<float>(sum);
    }
  if (g.x_id != 0) held = key, last = a;
  return a;
}

// Block b of row n of B as 32 bytes in k order (Q8_0: w + 128 when Unsigned, else w; Q4_0 and
// Q4_K: the nibbles 0..15), with its scale (and Q4_K's min).
template <DType DT, bool Unsigned>
inline void unpack_block(const GemmArgs& g, int64_t n, int64_t b, uint8_t out[32], float& sc, float& mn) {
  const uint8_t* row = static_cast<const uint8_t*>(g.B) + dtype_bytes(DT, n * g.ldb);
  if constexpr (DT == DType::Q4_K) {
    const uint8_t* sb = row + b / 8 * 144;
    const int j = static_cast<int>(b % 8);
    int s, m;
    q4k_scale_min(sb + 4, j, s, m);
    sc = f16_bits(sb) * static_cast<float>(s);
    mn = f16_bits(sb + 2) * static_cast<float>(m);
    __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 16 + 32 * (j / 2)));
    if (j % 2) w = _mm256_srli_epi16(w, 4);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_and_si256(w, _mm256_set1_epi8(15)));
  } else {
    const uint8_t* blk = row + b * dtype_bytes(DT, 32);
    sc = f16_bits(blk);
    mn = 0.f;
    if constexpr (DT == DType::Q8_0) {
      __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      if (Unsigned) w = _mm256_xor_si256(w, _mm256_set1_epi8(char(0x80)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), w);
    } else {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                          _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1), _mm256_set1_epi8(15)));
    }
  }
}

struct Panel {
  uint8_t* w;
  float* sc;
  float* mn;
};

// Columns [n0, n0 + np) of B (np a multiple of NR; those at or past g.N zero) into the layout above.
template <class I, DType DT>
inline void pack_panel(const GemmArgs& g, int64_t n0, int64_t np, int64_t nb, const Panel& P) {
  constexpr int VN = I::VN, NRV = I::NRV, NR = VN * NRV;
  for (int64_t t = 0; t < np / NR; t++)
    for (int c = 0; c < NR; c++) {
      const int64_t n = n0 + t * NR + c;
      const int v = c / VN, l = c % VN;
      for (int64_t b = 0; b < nb; b++) {
        alignas(32) uint8_t u[32];
        float sc = 0.f, mn = 0.f;
        if (n < g.N) unpack_block<DT, I::kUnsignedQ8>(g, n, b, u, sc, mn);
        else for (int i = 0; i < 32; i++) u[i] = DT == DType::Q8_0 && I::kUnsignedQ8 ? 128 : 0;
        uint8_t* dst = P.w + ((t * nb + b) * 8 * NRV + v) * VN * 4 + l * 4;
        for (int gi = 0; gi < 8; gi++) __builtin_memcpy(dst + gi * NRV * VN * 4, u + 4 * gi, 4);
        const int64_t s = (t * nb + b) * NR + c;
        P.sc[s] = sc;
        if constexpr (DT == DType::Q4_K) P.mn[s] = mn;
      }
    }
}

// The MT × NR tile of C at rows r0 (of the quantized rows) and the panel's tile t, into acc.
template <class I, DType DT, int MT>
inline void tile(const XRows& a, int64_t r0, const Panel& P, int64_t t, typename I::F (&acc)[MT][I::NRV]) {
  using V = typename I::V;
  using F = typename I::F;
  constexpr int NRV = I::NRV, VN = I::VN, NR = VN * NRV;
  // Σ u·q over unsigned weight bytes u = w + off is Σ w·q + off·Σq: start each block's sum at −off·Σq
  constexpr int off = DT == DType::Q4_0 ? 8 : DT == DType::Q8_0 && I::kUnsignedQ8 ? 128 : 0;
  const int64_t nb = a.nb;
  const uint8_t* wp = P.w + t * nb * 8 * NRV * VN * 4;
  const float* sp = P.sc + t * nb * NR;
  const float* mp = P.mn + t * nb * NR;
  for (int m = 0; m < MT; m++)
    for (int v = 0; v < NRV; v++) acc[m][v] = I::zero();
  for (int64_t b = 0; b < nb; b++, wp += 8 * NRV * VN * 4, sp += NR, mp += NR) {
    V s[MT][NRV];
    for (int m = 0; m < MT; m++) {
      const V c = off ? I::set1(-off * a.isum[(r0 + m) * nb + b]) : I::set1(0);
      for (int v = 0; v < NRV; v++) s[m][v] = c;
    }
    for (int gi = 0; gi < 8; gi++) {
      V w[NRV];
      for (int v = 0; v < NRV; v++) w[v] = I::load(wp + (gi * NRV + v) * VN * 4);
      for (int m = 0; m < MT; m++) {
        const V x = I::bcast(a.q + (r0 + m) * a.K + 32 * b + 4 * gi);
        for (int v = 0; v < NRV; v++) {
          if constexpr (DT == DType::Q8_0 && !I::kUnsignedQ8) s[m][v] = I::dot_signed(s[m][v], w[v], x);
          else s[m][v] = I::dot(s[m][v], w[v], x);
        }
      }
    }
    F d[NRV];
    for (int v = 0; v < NRV; v++) d[v] = I::fload(sp + v * VN);
    for (int m = 0; m < MT; m++) {
      const F dx = I::fset1(a.dx[(r0 + m) * nb + b]);
      for (int v = 0; v < NRV; v++) acc[m][v] = I::fmadd(I::cvt(s[m][v]), I::mul(d[v], dx), acc[m][v]);
    }
    if constexpr (DT == DType::Q4_K) {
      F mn[NRV];
      for (int v = 0; v < NRV; v++) mn[v] = I::fload(mp + v * VN);
      for (int m = 0; m < MT; m++) {
        const F xs = I::fset1(a.xsum[(r0 + m) * nb + b]);
        for (int v = 0; v < NRV; v++) acc[m][v] = I::fnmadd(mn[v], xs, acc[m][v]);
      }
    }
  }
}

// acc into C[m:m+MT, n:n+cols] with alpha, beta (never reading C when 0) and the bias.
template <class I, int MT>
inline void store(const GemmArgs& g, int64_t m, int64_t n, int64_t cols, typename I::F (&acc)[MT][I::NRV]) {
  constexpr int NRV = I::NRV, VN = I::VN, NR = VN * NRV;
  if (cols == NR && g.alpha == 1.f && g.beta == 0.f) {
    for (int i = 0; i < MT; i++)
      for (int v = 0; v < NRV; v++) {
        float* c = g.C + (m + i) * g.ldc + n + v * VN;
        I::fstore(c, g.bias ? I::add(acc[i][v], I::floadu(g.bias + n + v * VN)) : acc[i][v]);
      }
    return;
  }
  alignas(64) float tmp[NR];
  for (int i = 0; i < MT; i++) {
    for (int v = 0; v < NRV; v++) I::fstoreu(tmp + v * VN, acc[i][v]);
    for (int64_t j = 0; j < cols; j++) store_out(g, m + i, n + j, tmp[j]);
  }
}

template <class I, DType DT, int MT>
inline void tile_store(const GemmArgs& g, const XRows& a, int64_t m0, int64_t r0, const Panel& P, int64_t t,
                       int64_t n, int64_t cols) {
  typename I::F acc[MT][I::NRV];
  tile<I, DT, MT>(a, r0, P, t, acc);
  store<I, MT>(g, m0 + r0, n, cols, acc);
}

// Rows [r0, r0 + rows) (rows < MR) of one tile: the remainder of M, one instantiation per count.
template <class I, DType DT, int MT>
inline void tile_rest(const GemmArgs& g, const XRows& a, int64_t m0, int64_t r0, int64_t rows, const Panel& P,
                      int64_t t, int64_t n, int64_t cols) {
  if constexpr (MT > 0) {
    if (rows == MT) return tile_store<I, DT, MT>(g, a, m0, r0, P, t, n, cols);
    tile_rest<I, DT, MT - 1>(g, a, m0, r0, rows, P, t, n, cols);
  }
}

// Bytes of packed B per panel: ≈ 256 KiB, half of a Zen 4/5 or recent Intel L2, so the panel
// stays there while every tile of rows of x streams past it.
constexpr int64_t kPanelBytes = 256 * 1024;

template <class I, DType DT>
inline void run_typed(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int64_t MR = I::MR, NR = I::VN * I::NRV;
  const XRows a = quantize_rows(g, m0, m1);
  const int64_t nb = a.nb, rows = m1 - m0;
  const int64_t per_col = nb * (32 + 4 * (DT == DType::Q4_K ? 2 : 1));
  const int64_t NP = kPanelBytes / per_col / NR * NR > NR ? kPanelBytes / per_col / NR * NR : NR;
  thread_local driver::Scratch<char> buf;
  const int64_t np_max = driver::min_of(NP, (n1 - n0 + NR - 1) / NR * NR);
  char* p = buf.get(static_cast<size_t>(np_max * nb * 32 + 2 * np_max * nb * 4 + 128));
  const Panel P{reinterpret_cast<uint8_t*>(p), reinterpret_cast<float*>(p + np_max * nb * 32),
                reinterpret_cast<float*>(p + np_max * nb * 32 + np_max * nb * 4)};
  for (int64_t jc = n0; jc < n1; jc += np_max) {
    const int64_t nc = driver::min_of(np_max, n1 - jc), np = (nc + NR - 1) / NR * NR;
    pack_panel<I, DT>(g, jc, np, nb, P);
    int64_t r = 0;
    for (; r + MR <= rows; r += MR)
      for (int64_t t = 0; t < np / NR; t++)
        tile_store<I, DT, MR>(g, a, m0, r, P, t, jc + t * NR, driver::min_of(NR, nc - t * NR));
    if (r < rows)
      for (int64_t t = 0; t < np / NR; t++)
        tile_rest<I, DT, MR - 1>(g, a, m0, r, rows - r, P, t, jc + t * NR, driver::min_of(NR, nc - t * NR));
  }
}

// quant_gemm.h's entry point for the variant I.
template <class I>
inline bool run(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (g.ta || !g.tb || g.exact_x) return false;
  if (m0 >= m1 || n0 >= n1) return true;
  switch (g.btype) {
    case DType::Q8_0: return run_typed<I, DType::Q8_0>(g, m0, m1, n0, n1), true;
    case DType::Q4_0: return run_typed<I, DType::Q4_0>(g, m0, m1, n0, n1), true;
    case DType::Q4_K: return run_typed<I, DType::Q4_K>(g, m0, m1, n0, n1), true;
    default: return false;
  }
}

// The fp32 side of the two ymm traits (quant_gemm_avx2.cc, quant_gemm_avxvnni.cc).
struct YmmFloat {
  using F = __m256;
  static constexpr int VN = 8;
  static __m256i load(const uint8_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static __m256i bcast(const int8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static __m256i set1(int32_t v) { return _mm256_set1_epi32(v); }
  static F zero() { return _mm256_setzero_ps(); }
  static F fset1(float v) { return _mm256_set1_ps(v); }
  static F fload(const float* p) { return _mm256_load_ps(p); }
  static F floadu(const float* p) { return _mm256_loadu_ps(p); }
  static void fstore(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void fstoreu(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F cvt(__m256i v) { return _mm256_cvtepi32_ps(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
};

}  // namespace qgemm
}  // namespace
}  // namespace hc::cpu
