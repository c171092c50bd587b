// The int8 GEMM over weights repacked at load (quant_repack.h's groups of 16 rows), written
// once over quant_gemm_x86.h's instruction-set trait I, which adds for it:
//   loadu(p) (VN·4 bytes), nib_lo(v) / nib_hi(v) (each byte's low / high nibble), flip(v)
//   (xor 0x80: Q8_0's stored w + 128 back to signed, where !kUnsignedQ8), cvtph(p) (VN fp16
//   scales), u8f(p) (VN bytes as fp32: Q4_K's 6-bit scales and mins), rmt<DT>() (rows of x a
//   tile holds) and ng(mt) (groups of 16 columns a tile of mt rows takes: small mt takes several,
//   so that M = 1..2 still has independent accumulator chains).
// x is quantized once per call (quantize_rows); a tile reads each weight block of its groups
// once for all its rows, with no per-call packing of B (Q4_K: only its scales, expanded to fp32
// once per chunk of rows by k_scales). Past RMT rows, each group's blocks are
// read once from memory and again from L1 for every further tile of a chunk of rows, and those
// tiles prefetch the next groups between them (Ahead): batched decode at M = 8 ran a 110M q4_0
// step's products 1.9× faster on one core, M = 16 1.15–1.6× (bench/RESULTS.md, int8batch).
#pragma once
#include <algorithm>
#include <immintrin.h>
#include <type_traits>

#include "quant_gemm_x86.h"
#include "quant_repack.h"

namespace hc::cpu {
namespace {
namespace qgemm {

// The next groups' bytes a tile pulls towards the cache while it computes (a batch of rows past
// one tile: the groups a chunk's tiles share are read from memory by the first, from L1 by the
// rest, so without this the memory idles while the later tiles run and the first one stalls):
// `step` bytes from p + i·step at the tile's i-th block (Q4_K: sub-block), none at or past end;
// p null: none.
struct Ahead {
  const uint8_t* p = nullptr;
  const uint8_t* end = nullptr;
  int64_t step = 0;
  void at(int64_t i) const {
    if (!p) return;
    const uint8_t* q = p + i * step;
    for (const uint8_t* e = std::min(q + step, end); q < e; q += 64) _mm_prefetch(reinterpret_cast<const char*>(q), _MM_HINT_T0);
  }
};

template <class I, DType DT, int MT, int NG>
struct Repacked {
  using V = typename I::V;
  using F = typename I::F;
  static constexpr int VN = I::VN, NV = static_cast<int>(kRepackRows) / VN, NA = NG * NV;

  // acc[m][a] (a = group·NV + vector) over every block of the NG groups at grp (stride gs).
  // kq: Q4_K's scales and mins of these groups as fp32 (k_scales), or null to unpack them here.
  // stream: the groups are read once, from memory (decode), so each group's blocks ahead are
  // prefetched: the NG groups are NG streams gs bytes apart, and a chunk of a region starts them
  // cold. Decode GEMVs of the 110M q4_0 / q4_k ran 13–19 % faster (bench/RESULTS.md, tg110).
  static void tile(const XRows& a, int64_t r0, const uint8_t* grp, int64_t gs, const float* kq, bool stream,
                   const Ahead& ah, F (&acc)[MT][NA]) {
    for (int m = 0; m < MT; m++)
      for (int j = 0; j < NA; j++) acc[m][j] = I::zero();
    if constexpr (DT == DType::Q4_K) {
      if (kq) tile_k<true>(a, r0, grp, gs, kq, stream, ah, acc);
      else tile_k<false>(a, r0, grp, gs, nullptr, stream, ah, acc);
    } else {
      tile_32(a, r0, grp, gs, stream, ah, acc);
    }
  }

  // bytes [off, off + n) of each of the NG groups (from grp, stride gs) towards L1
  static void prefetch(const uint8_t* grp, int64_t gs, int64_t off, int64_t n) {
    for (int q = 0; q < NG; q++)
      for (int64_t o = 0; o < n; o += 64) _mm_prefetch(reinterpret_cast<const char*>(grp + q * gs + off + o), _MM_HINT_T0);
  }

  // The NG groups' d·sc and dmin·m of every sub-block, as tile_k reads them when Pre:
  // kq[(8·sb + sub)·NA·VN + j·VN + lane], the mins NA·VN·nb floats further. Prefill's tiles of
  // a chunk share one copy instead of each unpacking bytes to fp32 per sub-block (bench/RESULTS.md,
  // "Q4_K prefill"); the products are the same fp32 multiplies, so C is bit for bit the same.
  static void k_scales(const uint8_t* grp, int64_t gs, int64_t nb, float* kq) {
    constexpr int64_t BB = 2368;
    float* km = kq + nb * NA * VN;
    for (int64_t sb = 0; sb < nb / 8; sb++) {
      F d[NA], dmin[NA];
      for (int j = 0; j < NA; j++) {
        const uint8_t* p = grp + j / NV * gs + sb * BB + j % NV * VN * 2;
        d[j] = I::cvtph(p);
        dmin[j] = I::cvtph(p + 32);
      }
      for (int sub = 0; sub < 8; sub++)
        for (int j = 0; j < NA; j++) {
          const uint8_t* p = grp + j / NV * gs + sb * BB + 64 + sub * 16 + j % NV * VN;
          const int64_t o = ((8 * sb + sub) * NA + j) * VN;
          I::fstoreu(kq + o, I::mul(d[j], I::u8f(p)));
          I::fstoreu(km + o, I::mul(dmin[j], I::u8f(p + 128)));
        }
    }
  }

  // Q4_0 / Q8_0: blocks of 32 (288 / 544 bytes a group): d[16] fp16, then the vectors.
  static void tile_32(const XRows& a, int64_t r0, const uint8_t* grp, int64_t gs, bool stream, const Ahead& ah,
                      F (&acc)[MT][NA]) {
    constexpr bool q4 = DT == DType::Q4_0;
    constexpr int64_t BB = q4 ? 288 : 544;
    constexpr int64_t ahead = q4 ? 4 : 2;  // blocks: ≈ 1.1 KB a stream
    constexpr int NI = q4 ? 4 : 8;
    constexpr int off = q4 ? 8 : I::kUnsignedQ8 ? 128 : 0;
    const int64_t nb = a.nb;
    for (int64_t b = 0; b < nb; b++) {
      if (stream) prefetch(grp, gs, (b + ahead) * BB, BB);  // past the last block: the next group's, harmless
      ah.at(b);
      V s[MT][NA];
      for (int m = 0; m < MT; m++) {
        const V c = I::set1(off ? -off * a.isum[(r0 + m) * nb + b] : 0);
        for (int j = 0; j < NA; j++) s[m][j] = c;
      }
      for (int i = 0; i < NI; i++) {
        V w0[NA], w1[NA];
        for (int j = 0; j < NA; j++) {
          const V raw = I::loadu(grp + j / NV * gs + b * BB + 32 + i * 64 + j % NV * VN * 4);
          if constexpr (q4) {
            w0[j] = I::nib_lo(raw);
            w1[j] = I::nib_hi(raw);
          } else {
            w0[j] = I::kUnsignedQ8 ? raw : I::flip(raw);
          }
        }
        for (int m = 0; m < MT; m++) {
          const int8_t* xq = a.q + (r0 + m) * a.K + 32 * b;
          const V x0 = I::bcast(xq + 4 * i);
          if constexpr (q4) {
            const V x1 = I::bcast(xq + 16 + 4 * i);
            for (int j = 0; j < NA; j++) s[m][j] = I::dot(I::dot(s[m][j], w0[j], x0), w1[j], x1);
          } else {
            for (int j = 0; j < NA; j++) {
              if constexpr (I::kUnsignedQ8) s[m][j] = I::dot(s[m][j], w0[j], x0);
              else s[m][j] = I::dot_signed(s[m][j], w0[j], x0);
            }
          }
        }
      }
      F d[NA];
      for (int j = 0; j < NA; j++) d[j] = I::cvtph(grp + j / NV * gs + b * BB + j % NV * VN * 2);
      for (int m = 0; m < MT; m++) {
        const F dx = I::fset1(a.dx[(r0 + m) * nb + b]);
        for (int j = 0; j < NA; j++) acc[m][j] = I::fmadd(I::cvt(s[m][j]), I::mul(d[j], dx), acc[m][j]);
      }
    }
  }

  // Q4_K: super-blocks of 256 (2368 bytes a group): d[16], dmin[16], sc[8][16], m[8][16], vectors.
  // Pre: the scales and mins from kq (k_scales) rather than unpacked here (decode's single tile).
  template <bool Pre>
  static void tile_k(const XRows& a, int64_t r0, const uint8_t* grp, int64_t gs, const float* kq, bool stream,
                     const Ahead& ah, F (&acc)[MT][NA]) {
    constexpr int64_t BB = 2368;
    const int64_t nb = a.nb, nsb = nb / 8;
    for (int64_t sb = 0; sb < nsb; sb++) {
      F d[NA], dmin[NA];
      if constexpr (!Pre)
        for (int j = 0; j < NA; j++) {
          const uint8_t* p = grp + j / NV * gs + sb * BB + j % NV * VN * 2;
          d[j] = I::cvtph(p);
          dmin[j] = I::cvtph(p + 32);
        }
      for (int sub = 0; sub < 8; sub++) {
        if (stream) prefetch(grp, gs, (sb + 1) * BB + sub * 320, 320);  // the next super-block, an eighth at a time
        ah.at(8 * sb + sub);
        V s[MT][NA];
        for (int m = 0; m < MT; m++)
          for (int j = 0; j < NA; j++) s[m][j] = I::set1(0);
        for (int i = 0; i < 8; i++) {
          V w[NA];
          for (int j = 0; j < NA; j++) {
            const V raw = I::loadu(grp + j / NV * gs + sb * BB + 320 + (sub / 2 * 8 + i) * 64 + j % NV * VN * 4);
            w[j] = sub % 2 ? I::nib_hi(raw) : I::nib_lo(raw);
          }
          for (int m = 0; m < MT; m++) {
            const V x = I::bcast(a.q + (r0 + m) * a.K + 256 * sb + 32 * sub + 4 * i);
            for (int j = 0; j < NA; j++) s[m][j] = I::dot(s[m][j], w[j], x);
          }
        }
        F sc[NA], mn[NA];
        for (int j = 0; j < NA; j++) {
          if constexpr (Pre) {
            const int64_t o = ((8 * sb + sub) * NA + j) * VN;
            sc[j] = I::floadu(kq + o);
            mn[j] = I::floadu(kq + nb * NA * VN + o);
          } else {
            const uint8_t* p = grp + j / NV * gs + sb * BB + 64 + sub * 16 + j % NV * VN;
            sc[j] = I::mul(d[j], I::u8f(p));
            mn[j] = I::mul(dmin[j], I::u8f(p + 128));
          }
        }
        for (int m = 0; m < MT; m++) {
          const int64_t blk = (r0 + m) * nb + 8 * sb + sub;
          const F dx = I::fset1(a.dx[blk]), xs = I::fset1(a.xsum[blk]);
          for (int j = 0; j < NA; j++) acc[m][j] = I::fnmadd(mn[j], xs, I::fmadd(I::cvt(s[m][j]), I::mul(sc[j], dx), acc[m][j]));
        }
      }
    }
  }

  // C[m0 + r0 .. + MT, the NG groups from column 16·gcol] ∩ [n0, n1), alpha, beta and the bias.
  static void store(const GemmArgs& g, int64_t row, int64_t gcol, int64_t n0, int64_t n1, F (&acc)[MT][NA]) {
    const bool plain = g.alpha == 1.f && g.beta == 0.f;
    for (int j = 0; j < NA; j++) {
      const int64_t n = kRepackRows * gcol + j * VN, lo = std::max(n, n0), hi = std::min(n + VN, n1);
      if (lo >= hi) continue;
      for (int m = 0; m < MT; m++) {
        if (plain && lo == n && hi == n + VN) {
          float* c = g.C + (row + m) * g.ldc + n;
          I::fstore(c, g.bias ? I::add(acc[m][j], I::floadu(g.bias + n)) : acc[m][j]);
          continue;
        }
        alignas(64) float tmp[VN];
        I::fstoreu(tmp, acc[m][j]);
        for (int64_t c = lo; c < hi; c++) store_out(g, row + m, c, tmp[c - n]);
      }
    }
  }

  static void run(const GemmArgs& g, const XRows& a, int64_t m0, int64_t r0, const uint8_t* grp, int64_t gs,
                  int64_t gcol, int64_t n0, int64_t n1, const float* kq = nullptr, bool stream = false,
                  const Ahead& ah = Ahead{}) {
    F acc[MT][NA];
    tile(a, r0, grp, gs, kq, stream, ah, acc);
    store(g, m0 + r0, gcol, n0, n1, acc);
  }
};

// f(std::integral_constant<int, mt>) for a run-time mt in 1..MX.
template <int MX, class Fn>
inline void with_rows(int mt, Fn&& f) {
  if constexpr (MX > 0) {
    if (mt == MX) return f(std::integral_constant<int, MX>{});
    with_rows<MX - 1>(mt, f);
  }
}

// Rows of x a chunk keeps in L2 while each group's blocks are reread from L1 for its tiles.
constexpr int64_t kRepackedChunkRows = 64;

template <class I, DType DT>
inline void run_repacked_typed(const GemmArgs& g, const RepackedWeight& rw, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int RMT = I::template rmt<DT>();
  n1 = driver::min_of(n1, g.N);
  const XRows a = quantize_rows(g, m0, m1);
  const int64_t rows = m1 - m0, gs = repack_group_bytes(DT, g.K);
  const int64_t gb = n0 / kRepackRows, ge = (n1 + kRepackRows - 1) / kRepackRows;
  auto group = [&](int64_t gi) { return rw.data + gi * gs; };
  // Decode, one or two rows: one tile, several groups at once, each group's stream prefetched.
  // From three rows the chunk path's tiles (which prefetch the next groups over all their
  // blocks, Ahead) are faster even for a single tile: a 110M step's products on one Zen 5 core,
  // M = 3 / 4, q4_0 2.30 / 2.11 → 1.53 / 1.82 ms, q4_k 3.12 / 3.55 → 2.02 / 2.08, q8_0 3.92 /
  // 4.31 → 3.35 / 3.26 (bench-kernels qmodel; bench/RESULTS.md).
  constexpr int kDecodeRows = RMT < 2 ? RMT : 2;
  if (rows <= kDecodeRows) {
    with_rows<kDecodeRows>(static_cast<int>(rows), [&](auto mt) {
      constexpr int MT = decltype(mt)::value, NG = I::ng(MT);
      int64_t gi = gb;
      for (; gi + NG <= ge; gi += NG) Repacked<I, DT, MT, NG>::run(g, a, m0, 0, group(gi), gs, gi, n0, n1, nullptr, true);
      for (; gi < ge; gi++) Repacked<I, DT, MT, 1>::run(g, a, m0, 0, group(gi), gs, gi, n0, n1, nullptr, true);
    });
    return;
  }
  // rows [rc, re) of a chunk through NG groups at gi: whole tiles of RMT rows, then the rest
  // Q4_K: the NG groups' scales and mins once per chunk (Repacked::k_scales), for all its tiles
  thread_local driver::Scratch<float> kbuf;
  float* kq = DT == DType::Q4_K ? kbuf.get(static_cast<size_t>(2 * a.nb * I::ng(RMT) * kRepackRows)) : nullptr;
  // The tiles prefetch the groups that follow (those of this call's range), spread evenly over
  // all their blocks: the next groups arrive while the later tiles run from L1.
  const int64_t iters = a.nb;  // the blocks a tile steps through (Q4_K: its sub-blocks, 32 weights each too)
  auto tiles = [&](auto ng, int64_t rc, int64_t re, int64_t gi) {
    constexpr int NG = decltype(ng)::value;
    if constexpr (DT == DType::Q4_K) Repacked<I, DT, RMT, NG>::k_scales(group(gi), gs, a.nb, kq);
    const int64_t ntiles = (re - rc + RMT - 1) / RMT, next = driver::min_of(ge - gi - NG, int64_t(NG)) * gs;
    const int64_t step = ((next + ntiles * iters - 1) / (ntiles * iters) + 63) / 64 * 64;
    int64_t r = rc, t = 0;
    auto ahead = [&] {
      return next > 0 ? Ahead{group(gi + NG) + t * iters * step, group(gi + NG) + next, step} : Ahead{};
    };
    for (; r + RMT <= re; r += RMT, t++) Repacked<I, DT, RMT, NG>::run(g, a, m0, r, group(gi), gs, gi, n0, n1, kq, false, ahead());
    if (r < re)
      with_rows<RMT - 1>(static_cast<int>(re - r), [&](auto mt) {
        Repacked<I, DT, decltype(mt)::value, NG>::run(g, a, m0, r, group(gi), gs, gi, n0, n1, kq, false, ahead());
      });
  };
  constexpr int NG = I::ng(RMT);
  for (int64_t rc = 0; rc < rows; rc += kRepackedChunkRows) {
    const int64_t re = driver::min_of(rows, rc + kRepackedChunkRows);
    int64_t gi = gb;
    for (; gi + NG <= ge; gi += NG) tiles(std::integral_constant<int, NG>{}, rc, re, gi);
    for (; gi < ge; gi++) tiles(std::integral_constant<int, 1>{}, rc, re, gi);
  }
}

// The variant's repacked entry point (quant_gemm.h): false, having written nothing, when g
// does not read a repacked copy (reads_repacked).
template <class I>
inline bool run_repacked(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (!reads_repacked(g)) return false;
  if (m0 >= m1 || n0 >= n1) return true;
  switch (g.btype) {
    case DType::Q8_0: return run_repacked_typed<I, DType::Q8_0>(g, *g.packed, m0, m1, n0, n1), true;
    case DType::Q4_0: return run_repacked_typed<I, DType::Q4_0>(g, *g.packed, m0, m1, n0, n1), true;
    case DType::Q4_K: return run_repacked_typed<I, DType::Q4_K>(g, *g.packed, m0, m1, n0, n1), true;
    default: return false;
  }
}

// The ymm traits' repacked-layout operations (quant_gemm_avx2.cc, quant_gemm_avxvnni.cc).
struct YmmRepack {
  static __m256i loadu(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static __m256i nib_lo(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(15)); }
  static __m256i nib_hi(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15)); }
  static __m256i flip(__m256i v) { return _mm256_xor_si256(v, _mm256_set1_epi8(char(0x80))); }
  static __m256 cvtph(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static __m256 u8f(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
};

}  // namespace qgemm
}  // namespace
}  // namespace hc::cpu
