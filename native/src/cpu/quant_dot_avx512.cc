// AVX512-VNNI int8 dot products for Q8_0 / Q4_0 / Q4_K weights (quant_dot.h): a pair of
// blocks (64 weights) a vpdpbusd, 16 int32 lanes scaled by d_w·d_x per lane in one FMA.
#include "quant_dot.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#include "matmul_x86.h"
#include "quant_dot_x86.h"

namespace hc::cpu {
namespace {

// All of the streamed path (the AVX-512 variants' stream_max_m): one Zen 5 core, 2048×768
// q4_0, int8 vs fp32 dequantizing GEMV: M = 1 0.032 vs 0.061 ms, M = 64 1.03 vs 1.58.
constexpr int64_t kVnniMaxM = 64;

// The int32 lane → block map of a pair: natural (lanes 0–7 block A, 8–15 B), or Q4_0's
// A B A B (its nibbles unpack as A.lo B.lo A.hi B.hi, quant_dot_x86.h).
template <DType DT>
inline __m512i pair_lanes() {
  if constexpr (DT == DType::Q4_0) return _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
  else return _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
}

// Row m of x → QRows (quant_dot_x86.h's layout for DT), 32 floats a step.
template <DType DT>
inline void quantize_row(const float* x, const QRows& a, int64_t m) {
  int8_t* q = a.q + m * a.qs;
  float* xs = a.xs + m * a.nb;
  float* xsum = a.xsum + m * a.nb;
  const int64_t pairs = a.nb / 2;
  for (int64_t b = 0; b < a.nb; b++) {
    const __m512 lo = _mm512_loadu_ps(x + 32 * b), hi = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const float d = amax / 127.f, id = amax > 0.f ? 127.f / amax : 0.f;
    const __m512i ql = _mm512_cvtps_epi32(_mm512_mul_ps(lo, _mm512_set1_ps(id)));
    const __m512i qh = _mm512_cvtps_epi32(_mm512_mul_ps(hi, _mm512_set1_ps(id)));
    int64_t at_lo = 32 * b, at_hi = 32 * b + 16;
    if (DT == DType::Q4_0 && b < 2 * pairs) at_lo = 64 * (b / 2) + 16 * (b % 2), at_hi = at_lo + 32;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + at_lo), _mm512_cvtepi32_epi8(ql));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + at_hi), _mm512_cvtepi32_epi8(qh));
    xs[b] = d;
    xsum[b] = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(ql, qh)));
  }
  for (int64_t k = 32 * a.nb; k < a.qs; k++) q[k] = 0;
  // per pair, d_x spread over the lanes in pair_lanes<DT>()'s order
  const __m512i lanes = pair_lanes<DT>();
  for (int64_t p = 0; p < pairs; p++)
    _mm512_storeu_ps(a.xsv + (m * pairs + p) * 16, _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(xs + 2 * p))))));
  // Σ q over each int32 lane's 4 bytes, times −off (quant_dot_x86.h)
  constexpr int off = DT == DType::Q8_0 ? 128 : DT == DType::Q4_0 ? 8 : 0;
  if constexpr (off != 0) {
    const __m512i u = _mm512_set1_epi8(static_cast<char>(off));
    for (int64_t c = 0; c < a.qs; c += 64) {
      const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_loadu_si512(q + c));
      _mm512_storeu_si512(a.corr + m * (a.qs / 4) + c / 4, _mm512_sub_epi32(_mm512_setzero_si512(), s));
    }
  }
}

// A pair of Q8_0 / Q4_0 blocks at blk as 64 unsigned bytes (Q8_0: w + 128; Q4_0: the nibbles).
template <DType DT>
inline __m512i unpack_pair(const uint8_t* blk) {
  if constexpr (DT == DType::Q8_0) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 36));
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1), _mm512_set1_epi8(char(0x80)));
  } else {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 20));
    const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
    return _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1), _mm512_set1_epi8(15));
  }
}
// One block (an odd count's last) as 32 unsigned bytes in natural order.
template <DType DT>
inline __m256i unpack_one(const uint8_t* blk) {
  if constexpr (DT == DType::Q8_0) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), _mm256_set1_epi8(char(0x80)));
  } else {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(a), _mm_srli_epi16(a, 4), 1), _mm256_set1_epi8(15));
  }
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// tail[r][m] = the last block's product when the row has an odd count of blocks (32 bytes wide).
template <DType DT, int R, int MT>
inline void odd_tail(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n, float tail[R][MT]) {
  if (a.nb % 2 == 0) return;
  const int64_t row_bytes = dtype_bytes(DT, g.ldb), b = a.nb - 1;
  const uint8_t* B = static_cast<const uint8_t*>(g.B) + n * row_bytes;
  for (int r = 0; r < R; r++) {
    const uint8_t* blk = B + r * row_bytes + dtype_bytes(DT, 32 * b);
    const __m256i w = unpack_one<DT>(blk);
    const float dw = f16_bits(blk);
    for (int m = 0; m < MT; m++) {
      const __m256i c = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.crow(m0 + m) + 8 * b));
      const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.qrow(m0 + m) + 32 * b));
      tail[r][m] = dw * a.xsrow(m0 + m)[b] * static_cast<float>(hsum_epi32(_mm256_dpbusd_epi32(c, w, x)));
    }
  }
}

// The d_w of a pair of Q8_0 / Q4_0 blocks at blk in pair_lanes<DT>()'s lane order.
template <DType DT>
inline __m512 pair_scales(const uint8_t* blk) {
  constexpr int64_t BB = dtype_bytes(DT, 32);
  uint16_t h0, h1;
  __builtin_memcpy(&h0, blk, 2);
  __builtin_memcpy(&h1, blk + BB, 2);
  return _mm512_permutexvar_ps(pair_lanes<DT>(), _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(h0 | (h1 << 16)))));
}

// C[m0:m0+MT, n:n+R] for Q8_0 / Q4_0 weights, a pair of blocks a step.
template <DType DT, int R, int MT>
inline void block_q(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n) {
  constexpr int64_t BB = dtype_bytes(DT, 32);
  const int64_t row_bytes = dtype_bytes(DT, g.ldb);
  const uint8_t* B = static_cast<const uint8_t*>(g.B) + n * row_bytes;
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  const int64_t pairs = a.nb / 2;
  for (int64_t p = 0; p < pairs; p++) {
    const int64_t off = 2 * p * BB;
    __m512i xq[MT];
    for (int m = 0; m < MT; m++) xq[m] = _mm512_load_si512(a.qrow(m0 + m) + 64 * p);
    for (int r = 0; r < R; r++) {
      const uint8_t* blk = B + r * row_bytes + off;
      _mm_prefetch(reinterpret_cast<const char*>(blk + R * row_bytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(blk + R * row_bytes + 63), _MM_HINT_T0);
      const __m512i w = unpack_pair<DT>(blk);
      const __m512 ws = pair_scales<DT>(blk);
      for (int m = 0; m < MT; m++) {
        const __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512(a.crow(m0 + m) + 16 * p), w, xq[m]);
        acc[r][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(ws, _mm512_loadu_ps(a.xsvrow(m0 + m) + 16 * p)), acc[r][m]);
      }
    }
  }
  float tail[R][MT] = {};
  odd_tail<DT, R, MT>(g, a, m0, n, tail);
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) store_out(g, m0 + m, n + r, _mm512_reduce_add_ps(acc[r][m]) + tail[r][m]);
}

// C[m0:m0+MT, n:n+R] for Q4_K weights: per super-block the 8 sub-block scales d·sc and
// offsets dmin·m decoded once per row; sub-blocks 2p and 2p+1 share bytes [32p, 32p+32)
// (low and high nibbles) and one vpdpbusd; the offsets meet x's block sums in one FMA.
template <int R, int MT>
inline void block_q4k(const GemmArgs& g, const QRows& a, int64_t m0, int64_t n) {
  const int64_t row_bytes = dtype_bytes(DType::Q4_K, g.ldb);
  const uint8_t* B = static_cast<const uint8_t*>(g.B) + n * row_bytes;
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  for (int64_t sb = 0, off = 0; sb < a.nb / 8; sb++, off += 144) {
    float ds[R][8], dm[R][8];
    q4k_rows_scales8<R>(B, row_bytes, off, ds, dm);
    for (int r = 0; r < R; r++)
      for (int m = 0; m < MT; m++)  // −Σ_j dmin·m_j · d_x·Σq over the 8 sub-blocks (upper lanes zero)
        acc[r][m] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_loadu_ps(dm[r])),
                                     _mm512_zextps256_ps512(_mm256_loadu_ps(a.xsumrow(m0 + m) + 8 * sb)), acc[r][m]);
    for (int p = 0; p < 4; p++) {
      __m512i xq[MT];
      for (int m = 0; m < MT; m++) xq[m] = _mm512_load_si512(a.qrow(m0 + m) + 256 * sb + 64 * p);
      const __m512i lanes = _mm512_add_epi32(pair_lanes<DType::Q4_K>(), _mm512_set1_epi32(2 * p));
      for (int r = 0; r < R; r++) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + r * row_bytes + off + 16 + 32 * p));
        const __m512i w = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(b), _mm256_srli_epi16(b, 4), 1), m4);
        const __m512 ws = _mm512_permutexvar_ps(lanes, _mm512_castps256_ps512(_mm256_loadu_ps(ds[r])));
        for (int m = 0; m < MT; m++) {
          const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xq[m]);
          acc[r][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(ws, _mm512_loadu_ps(a.xsvrow(m0 + m) + 16 * (4 * sb + p))), acc[r][m]);
        }
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) store_out(g, m0 + m, n + r, _mm512_reduce_add_ps(acc[r][m]));
}

// ---- Q4_K with more rows of x than one register tile (batched decode) ----------------------
// Streaming would decode every super-block's scales and unpack its nibbles again for each
// tile of 4 rows of x. Instead, per block of up to kPanelRows rows of x (their int8 copy stays
// in L2) and each group of R rows of B, the R rows are unpacked once into a panel in L1 (bytes,
// d·sc lanes a pair of sub-blocks, the 8 dmin·m a super-block), and every tile reads it there.
// Measured (one core, 2048×768, ms, panel vs streaming): Q4_K M = 64 1.08 vs 1.69, M = 8 equal;
// the same panels for Q8_0 / Q4_0 were 5–30 % slower at M <= 64 (their unpacking is cheap),
// so those stream. (Panels of all M = 512 rows only match the packed fp32 GEMM, ±5 %.)
constexpr int64_t kPanelRows = 64;

struct Panel {
  uint8_t* w;  // [R][pairs][64] nibbles of a pair of sub-blocks
  float* ws;   // [R][pairs][16] d·sc in the int32 lanes' order
  float* dm;   // [R][super-blocks][8] dmin·m
};

template <int R>
inline void unpack_rows(const GemmArgs& g, int64_t n, int64_t pairs, const Panel& P) {
  const int64_t row_bytes = dtype_bytes(DType::Q4_K, g.ldb);
  const uint8_t* B = static_cast<const uint8_t*>(g.B) + n * row_bytes;
  const __m512i m4 = _mm512_set1_epi8(15);
  for (int64_t sb = 0, off = 0; sb < pairs / 4; sb++, off += 144) {
    float ds[R][8], dm[R][8];
    q4k_rows_scales8<R>(B, row_bytes, off, ds, dm);
    for (int r = 0; r < R; r++) {
      _mm256_storeu_ps(P.dm + (r * (pairs / 4) + sb) * 8, _mm256_loadu_ps(dm[r]));
      const __m512 dsv = _mm512_castps256_ps512(_mm256_loadu_ps(ds[r]));
      for (int p = 0; p < 4; p++) {
        const int64_t at = r * pairs + 4 * sb + p;
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + r * row_bytes + off + 16 + 32 * p));
        _mm512_store_si512(P.w + 64 * at, _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(b), _mm256_srli_epi16(b, 4), 1), m4));
        _mm512_store_ps(P.ws + 16 * at, _mm512_permutexvar_ps(_mm512_add_epi32(pair_lanes<DType::Q4_K>(), _mm512_set1_epi32(2 * p)), dsv));
      }
    }
  }
}

// C[m0:m0+MT, n:n+R] from the panel of B's rows n..n+R.
template <int R, int MT>
inline void block_panel(const GemmArgs& g, const QRows& a, const Panel& P, int64_t m0, int64_t n) {
  const int64_t pairs = a.nb / 2;
  __m512 acc[R][MT];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) acc[r][m] = _mm512_setzero_ps();
  for (int64_t sb = 0; sb < pairs / 4; sb++)
    for (int r = 0; r < R; r++)
      for (int m = 0; m < MT; m++)
        acc[r][m] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_loadu_ps(P.dm + (r * (pairs / 4) + sb) * 8)),
                                     _mm512_zextps256_ps512(_mm256_loadu_ps(a.xsumrow(m0 + m) + 8 * sb)), acc[r][m]);
  for (int64_t p = 0; p < pairs; p++) {
    __m512i xq[MT];
    for (int m = 0; m < MT; m++) xq[m] = _mm512_load_si512(a.qrow(m0 + m) + 64 * p);
    for (int r = 0; r < R; r++) {
      const __m512i w = _mm512_load_si512(P.w + 64 * (r * pairs + p));
      const __m512 ws = _mm512_load_ps(P.ws + 16 * (r * pairs + p));
      for (int m = 0; m < MT; m++) {
        const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xq[m]);
        acc[r][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(ws, _mm512_loadu_ps(a.xsvrow(m0 + m) + 16 * p)), acc[r][m]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) store_out(g, m0 + m, n + r, _mm512_reduce_add_ps(acc[r][m]));
}

template <int R>
inline void q4k_panel_run(const GemmArgs& g, const QRows& a, int64_t n0, int64_t n1) {
  const int64_t pairs = a.nb / 2;
  thread_local driver::Scratch<char> buf;
  char* p = buf.get(static_cast<size_t>(R * pairs * (64 + 64) + R * (pairs / 4) * 32));
  const Panel P{reinterpret_cast<uint8_t*>(p), reinterpret_cast<float*>(p + R * pairs * 64),
                reinterpret_cast<float*>(p + R * pairs * 128)};
  auto block = [&](auto Rc, auto MT, int64_t m, int64_t n) { block_panel<Rc(), MT()>(g, a, P, m, n); };
  for (int64_t mb = 0; mb < g.M; mb += kPanelRows) {
    const int64_t me = driver::min_of(g.M, mb + kPanelRows);
    int64_t n = n0;
    for (; n + R <= n1; n += R) {
      unpack_rows<R>(g, n, pairs, P);
      qrow_tiles<4, R>(mb, me, n, block);
    }
    for (; n < n1; n++) {
      unpack_rows<1>(g, n, pairs, P);
      qrow_tiles<4, 1>(mb, me, n, block);
    }
  }
}

}  // namespace

bool quant_dot_avx512vnni(const GemmArgs& g, int64_t n0, int64_t n1) { return quant_dot_run<4, true>(g, n0, n1, kVnniMaxM); }

}  // namespace hc::cpu

#else

namespace hc::cpu {
bool quant_dot_avx512vnni(const GemmArgs&, int64_t, int64_t) { return false; }
}  // namespace hc::cpu

#endif
