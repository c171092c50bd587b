// The ymm int8 dot products for Q8_0 / Q4_0 / Q4_K weights (quant_dot.h), compiled twice: by
// quant_dot_avx2.cc (a block of 32 a vpmaddubsw + vpmaddwd) and by quant_dot_avxvnni.cc with
// -mavxvnni (one vpdpbusd ymm), each scaled once a block by d_w·d_x. Internal linkage: each TU
// its own copy with its own flags.
#pragma once
#include "matmul_x86.h"
#include "quant_dot_x86.h"

namespace hc::cpu {
namespace {

// All of the streamed path (avx2's stream_max_m): one Zen 5 core, 2048×768, int8 vs fp32
// dequantizing GEMV at M = 16: q8_0 0.50 vs 0.83 ms, q4_0 0.63 vs 1.02, q4_k 0.98 vs 1.40.
constexpr int64_t kAvx2Int8MaxM = 16;

// u8 × s8 over 32 bytes → 8 int32 lanes, each the sum of 4 consecutive products: one AVX-VNNI
// vpdpbusd where this TU has it (quant_dot_avxvnni.cc), else vpmaddubsw + vpmaddwd (no int16
// saturation: the callers keep |u·q| pairs below 2^15, see below).
inline __m256i dot_u8s8(__m256i u, __m256i q) {
#if defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, q);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
#endif
}

// Row m of x → QRows in natural order (quant_dot_x86.h), 32 floats a step.
template <DType DT>
inline void quantize_row(const float* x, const QRows& a, int64_t m) {
  int8_t* q = a.q + m * a.qs;
  for (int64_t b = 0; b < a.nb; b++) {
    int sum;
    const float d = quantize_block32(x + 32 * b, q + 32 * b, sum);
    a.xs[m * a.nb + b] = d;
    a.xsum[m * a.nb + b] = d * static_cast<float>(sum);
  }
  for (int64_t k = 32 * a.nb; k < a.qs; k++) q[k] = 0;
  if constexpr (DT == DType::Q4_0)  // −8·Σ of each lane's 4 q: the nibbles' offset (quant_dot_x86.h)
    for (int64_t c = 0; c < a.qs; c += 32) {
      const __m256i s = dot_u8s8(_mm256_set1_epi8(8), _mm256_load_si256(reinterpret_cast<const __m256i*>(q + c)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(a.corr + m * (a.qs / 4) + c / 4), _mm256_sub_epi32(_mm256_setzero_si256(), s));
    }
}

// C[m0:m0+MT, n:n+R] for Q8_0 / Q4_0 weights, a block a step. Q8_0 takes the sign trick
// (|w| × sign(w)·q: |w| <= 128, |q| <= 127, so a maddubs pair stays below 2^15); Q4_0 takes
// its nibbles as they are (<= 15) and the −8 from corr.
template <DType DT, int R, int MT>
inline void block_q(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n) {
  constexpr int64_t BB = dtype_bytes(DT, 32);
  const int64_t row_bytes = dtype_bytes(DT, g.ldb);
  const uint8_t* B = block_row<DT>(g, n);
  __m256 acc[R][MT];
  zero_tile(acc);
  for (int64_t b = 0; b < a.nb; b++) {
    __m256i xq[MT];
    for (int m = 0; m < MT; m++) xq[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.qrow(m0 + m) + 32 * b));
    for (int r = 0; r < R; r++) {
      const uint8_t* blk = B + r * row_bytes + b * BB;
      _mm_prefetch(reinterpret_cast<const char*>(blk + R * row_bytes), _MM_HINT_T0);
      const __m256 dw = _mm256_set1_ps(f16_bits(blk));
      __m256i w;
      if constexpr (DT == DType::Q8_0) {
        w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      } else {
        const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        w = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1), _mm256_set1_epi8(15));
      }
      const __m256i aw = DT == DType::Q8_0 ? _mm256_sign_epi8(w, w) : w;
      for (int m = 0; m < MT; m++) {
        __m256i s;
        if constexpr (DT == DType::Q8_0) {
          s = dot_u8s8(aw, _mm256_sign_epi8(xq[m], w));
        } else {
          s = _mm256_add_epi32(dot_u8s8(aw, xq[m]), _mm256_load_si256(reinterpret_cast<const __m256i*>(a.crow(m0 + m) + 8 * b)));
        }
        acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_broadcast_ss(a.xsrow(m0 + m) + b)), acc[r][m]);
      }
    }
  }
  store_tile(g, m0, n, acc);
}

// C[m0:m0+MT, n:n+R] for Q4_K weights: a super-block's scales decoded once per row, each
// sub-block's nibbles (<= 15) one maddubs against x, its offsets against x's block sums.
template <int R, int MT>
inline void block_q4k(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n) {
  const int64_t row_bytes = dtype_bytes(DType::Q4_K, g.ldb);
  const uint8_t* B = block_row<DType::Q4_K>(g, n);
  const __m256i m4 = _mm256_set1_epi8(15);
  __m256 acc[R][MT];
  zero_tile(acc);
  for (int64_t sb = 0, off = 0; sb < a.nb / 8; sb++, off += 144) {
    float ds[R][8], dm[R][8];
    q4k_rows_scales8<R>(B, row_bytes, off, ds, dm);
    for (int r = 0; r < R; r++)
      for (int m = 0; m < MT; m++)  // −Σ_j dmin·m_j · d_x·Σq over the 8 sub-blocks
        acc[r][m] = _mm256_fnmadd_ps(_mm256_loadu_ps(dm[r]), _mm256_loadu_ps(a.xsumrow(m0 + m) + 8 * sb), acc[r][m]);
    for (int j = 0; j < 8; j++) {
      __m256i xq[MT];
      for (int m = 0; m < MT; m++) xq[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.qrow(m0 + m) + 256 * sb + 32 * j));
      for (int r = 0; r < R; r++) {
        __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + r * row_bytes + off + 16 + 32 * (j / 2)));
        if (j % 2) w = _mm256_srli_epi16(w, 4);
        w = _mm256_and_si256(w, m4);
        const __m256 vds = _mm256_set1_ps(ds[r][j]);
        for (int m = 0; m < MT; m++)
          acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(w, xq[m])),
                                      _mm256_mul_ps(vds, _mm256_broadcast_ss(a.xsrow(m0 + m) + 8 * sb + j)), acc[r][m]);
      }
    }
  }
  store_tile(g, m0, n, acc);
}

}  // namespace
}  // namespace hc::cpu
