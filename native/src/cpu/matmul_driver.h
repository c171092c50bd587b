// The BLIS-style blocked GEMM driver, shared by every kernel variant: each
// variant's translation unit instantiates it with its own micro-kernel and
// compiler flags. Loops, outer to inner: jc (NC columns of B, packed block in
// L3) → pc (KC of the inner dimension) → ic (MC rows of A, a block in L2) → jr (one
// NR-wide B micro-panel, L1) → ir (one MR×NR tile of C in registers). A is packed up front
// for all of K (gemm_blocks), once per rank per parallel region (matmul_packed.cc).
// bf16/f16 B is converted (q8_0/q4_0/q4_k dequantized) to fp32 while packing, so every
// dtype runs at the fp32 kernel's speed once M is large enough to amortise the packing.
//
// A micro-kernel type MK provides:
//   static constexpr int64_t MR, NR, KC, MC, NC;    (MC % MR == 0, NC % NR == 0)
//   static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
//                    float alpha, float beta, const float* bias);
//     C[MR,NR] = alpha·Ap·Bp + beta·C (+ bias[NR]); beta == 0 never reads C.
//     Ap: [kc][MR], Bp: [kc][NR], both packed and 32-byte aligned.
//   static float half(uint16_t h);                   f16 → f32
//   template <DType DT> static bool pack_bt(const void* B, int64_t ldb, int64_t row0,
//                   int64_t k0, int64_t kc, float* dst);
//     optional fast path for one full NR-wide panel of a transposed B (tb): returns
//     false to fall back to the generic loop.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>

#include "../quant.h"
#include "matmul_kernels.h"

// Everything here has internal linkage, and uses no standard-library template
// that the other translation units also instantiate: otherwise the linker may
// keep the AVX2-compiled copy of a shared inline function for the portable path.
namespace hc::cpu::driver {
namespace {

template <class T>
constexpr T min_of(T a, T b) { return a < b ? a : b; }

// A per-thread packing buffer that grows (never shrinks), 64-byte aligned.
template <class T = float>
struct Scratch {
  T* p = nullptr;
  size_t n = 0;
  ~Scratch() { std::free(p); }
  T* get(size_t want) {
    if (want > n) {
      std::free(p);
      p = static_cast<T*>(std::aligned_alloc(64, (want * sizeof(T) + 63) / 64 * 64));
      if (!p) throw std::bad_alloc();
      n = want;
    }
    return p;
  }
};

inline float bf16_bits_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// Ap[panel][k][MR] = op(A)[m0 + panel*MR + i, k0 + k], zero rows past m0 + mc.
template <int64_t MR>
void pack_a(const GemmArgs& g, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* Ap) {
  for (int64_t p = 0; p < mc; p += MR) {
    const int64_t mr = min_of(MR, mc - p);
    float* dst = Ap + p * kc;
    if (!g.ta) {
      for (int64_t i = 0; i < mr; i++) {
        const float* src = g.A + (m0 + p + i) * g.lda + k0;
        for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = src[k];
      }
    } else {  // op(A)[m,k] = A[k*lda + m]: rows of A^T are contiguous in m
      for (int64_t k = 0; k < kc; k++) {
        const float* src = g.A + (k0 + k) * g.lda + m0 + p;
        for (int64_t i = 0; i < mr; i++) dst[k * MR + i] = src[i];
      }
    }
    for (int64_t i = mr; i < MR; i++)
      for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = 0.f;
  }
}

// Q4_K super-block sb's sub-block j (32 weights) scale d·sc and offset dmin·m (quant.h's layout).
template <class MK>
inline void q4k_sub(const uint8_t* sb, int j, float& ds, float& dm) {
  uint16_t d, dmin;
  __builtin_memcpy(&d, sb, 2);
  __builtin_memcpy(&dmin, sb + 2, 2);
  int sc, m;
  q4k_scale_min(sb + 4, j, sc, m);
  ds = MK::half(d) * static_cast<float>(sc);
  dm = MK::half(dmin) * static_cast<float>(m);
}

// Element idx of B; for the block types, rows start at multiples of the block (ldb % block == 0).
template <class MK, DType DT>
inline float load_b(const void* base, int64_t idx) {
  if constexpr (DT == DType::F32) {
    return static_cast<const float*>(base)[idx];
  } else if constexpr (DT == DType::BF16) {
    return bf16_bits_to_f32(static_cast<const uint16_t*>(base)[idx]);
  } else if constexpr (DT == DType::F16) {
    return MK::half(static_cast<const uint16_t*>(base)[idx]);
  } else if constexpr (DT == DType::Q6_K) {
    return q6_k_at(base, idx);  // read-only type, not a hot path: quant.cc's decoder
  } else if constexpr (DT == DType::Q4_K) {
    const uint8_t* sb = static_cast<const uint8_t*>(base) + idx / 256 * 144;
    const int i = static_cast<int>(idx % 256), j = i / 32;
    float ds, dm;
    q4k_sub<MK>(sb, j, ds, dm);
    const uint8_t q = sb[16 + 32 * (j / 2) + i % 32];
    return ds * static_cast<float>(j % 2 ? q >> 4 : q & 15) - dm;
  } else {
    const uint8_t* blk = static_cast<const uint8_t*>(base) + dtype_bytes(DT, idx / 32 * 32);
    uint16_t d;
    __builtin_memcpy(&d, blk, 2);
    const int j = static_cast<int>(idx % 32);
    if constexpr (DT == DType::Q8_0) {
      return MK::half(d) * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
    } else {
      const int q = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
      return MK::half(d) * static_cast<float>(q - 8);
    }
  }
}

// Bp[panel][k][NR] = op(B)[k0 + k, n0 + panel*NR + j] in fp32, zero columns past n0 + nc.
template <class MK, DType DT>
void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* Bp) {
  constexpr int64_t NR = MK::NR;
  for (int64_t p = 0; p < nc; p += NR) {
    const int64_t nr = min_of(NR, nc - p);
    float* dst = Bp + p * kc;
    if (g.tb) {  // B rows are output features: read each contiguously along k
      if (nr == NR && MK::template pack_bt<DT>(g.B, g.ldb, n0 + p, k0, kc, dst)) continue;
      if constexpr (DT == DType::Q4_K) {  // a sub-block's scales decoded once, not per weight
        for (int64_t j = 0; j < nr; j++) {
          const int64_t row = (n0 + p + j) * g.ldb + k0;  // k0 and kc: multiples of 32 (KC is)
          for (int64_t k = 0; k < kc; k += 32) {
            const uint8_t* sb = static_cast<const uint8_t*>(g.B) + (row + k) / 256 * 144;
            const int sub = static_cast<int>((row + k) % 256 / 32);
            float ds, dm;
            q4k_sub<MK>(sb, sub, ds, dm);
            const uint8_t* q = sb + 16 + 32 * (sub / 2);
            for (int l = 0; l < 32; l++)
              dst[(k + l) * NR + j] = ds * static_cast<float>(sub % 2 ? q[l] >> 4 : q[l] & 15) - dm;
          }
        }
      } else {
        for (int64_t j = 0; j < nr; j++) {
          const int64_t row = (n0 + p + j) * g.ldb + k0;
          for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = load_b<MK, DT>(g.B, row + k);
        }
      }
    } else {
      for (int64_t k = 0; k < kc; k++) {
        const int64_t row = (k0 + k) * g.ldb + n0 + p;
        for (int64_t j = 0; j < nr; j++) dst[k * NR + j] = load_b<MK, DT>(g.B, row + j);
      }
    }
    if (nr < NR)
      for (int64_t k = 0; k < kc; k++)
        for (int64_t j = nr; j < NR; j++) dst[k * NR + j] = 0.f;
  }
}

// A partial tile (mr × nr of an MR × NR one computed aside into edge, alpha 1, beta 0)
// merged into C with the caller's alpha, beta and bias.
inline void merge_edge(const float* edge, int64_t NR, int64_t mr, int64_t nr, float* c, int64_t ldc, float alpha,
                       float beta, const float* bb) {
  for (int64_t i = 0; i < mr; i++)
    for (int64_t j = 0; j < nr; j++) {
      float v = alpha * edge[i * NR + j];
      if (beta != 0.f) v += beta * c[i * ldc + j];
      if (bb) v += bb[j];
      c[i * ldc + j] = v;
    }
}

// The BLIS loops over one rank's share of a product, for a packing policy P:
//   P::A, P::B                  packed element types; P::MR, NR, KC, MC, NC as for MK
//   P::ksteps(kc)               packed steps of a KC slice (kc, or its pairs)
//   P::pack_a(g, m0, mc, k0, kc, P::A*), P::pack_b(g, k0, kc, n0, nc, P::B*), P::tile(...)
// op(A)[m0:m1, :] is packed once for all of K (slice pc at Ap + ksteps(pc)·rows) and kept
// per thread for `region` (non-zero: pack_region()), so the column chunks a rank takes of
// one region, and the products of one x in a group, pack it once. Bit for bit the same
// result whatever the row and column ranges (each element's sum runs the same k order).
template <class P>
void gemm_blocks(const GemmArgs& g, uint64_t region, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int64_t MR = P::MR, NR = P::NR, KC = P::KC, MC = P::MC, NC = P::NC;
  struct PackedA {
    uint64_t region = 0;
    const float* A = nullptr;
    int64_t lda = 0, K = 0, m0 = 0, m1 = 0;
    bool ta = false;
    Scratch<typename P::A> buf;
  };
  thread_local PackedA pa;
  thread_local Scratch<typename P::B> bbuf;
  const int64_t rows = (m1 - m0 + MR - 1) / MR * MR;
  typename P::A* Ap = pa.buf.p;
  if (region == 0 || pa.region != region || pa.A != g.A || pa.lda != g.lda || pa.K != g.K || pa.m0 != m0 ||
      pa.m1 != m1 || pa.ta != g.ta) {
    pa.region = 0;  // a throw while packing leaves nothing half valid
    Ap = pa.buf.get(rows * P::ksteps(g.K));
    for (int64_t pc = 0; pc < g.K; pc += KC) P::pack_a(g, m0, m1 - m0, pc, min_of(KC, g.K - pc), Ap + P::ksteps(pc) * rows);
    pa.region = region, pa.A = g.A, pa.lda = g.lda, pa.K = g.K, pa.m0 = m0, pa.m1 = m1, pa.ta = g.ta;
  }
  typename P::B* Bp = bbuf.get(P::ksteps(KC) * NC);
  alignas(64) float edge[MR * NR];
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = min_of(NC, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += KC) {
      const int64_t kc = min_of(KC, g.K - pc), ks = P::ksteps(kc);
      const typename P::A* Apc = Ap + P::ksteps(pc) * rows;
      P::pack_b(g, pc, kc, jc, nc, Bp);
      // the first slice of K applies the caller's beta and the bias, later ones accumulate
      const float beta = pc == 0 ? g.beta : 1.f;
      const float* bias = pc == 0 ? g.bias : nullptr;
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = min_of(MC, m1 - ic);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = min_of(NR, nc - jr);
          const typename P::B* bp = Bp + jr * ks;
          const float* bb = bias ? bias + jc + jr : nullptr;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = min_of(MR, mc - ir);
            const typename P::A* ap = Apc + (ic - m0 + ir) * ks;
            float* c = g.C + (ic + ir) * g.ldc + jc + jr;
            if (mr == MR && nr == NR) {
              P::tile(ks, ap, bp, c, g.ldc, g.alpha, beta, bb);
              continue;
            }
            // partial tile: compute a full one aside, then merge the valid part
            P::tile(ks, ap, bp, edge, NR, 1.f, 0.f, nullptr);
            merge_edge(edge, NR, mr, nr, c, g.ldc, g.alpha, beta, bb);
          }
        }
      }
    }
  }
}

// Rows of op(A) packed at once (each rank's copy): at most kPackedABytes, whole MC blocks.
template <class P>
int64_t packed_rows(int64_t K) {
  const int64_t row = P::ksteps(K) * int64_t(sizeof(typename P::A));
  const int64_t r = kPackedABytes / (row > 0 ? row : 1) / P::MC * P::MC;
  return r > P::MC ? r : P::MC;
}

// C[m0:m1, n0:n1] on its own (no region): row blocks of at most packed_rows() each.
template <class P>
void gemm_rows(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t step = packed_rows<P>(g.K);
  for (int64_t m = m0; m < m1; m += step) gemm_blocks<P>(g, 0, m, min_of(m1, m + step), n0, n1);
}

// The fp32 micro-kernels' policy: A and B packed to fp32 (B converted or dequantized while packing).
template <class MK>
struct FpPolicy {
  using A = float;
  using B = float;
  static constexpr int64_t MR = MK::MR, NR = MK::NR, KC = MK::KC, MC = MK::MC, NC = MK::NC;
  static constexpr int64_t ksteps(int64_t k) { return k; }
  static void pack_a(const GemmArgs& g, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* Ap) {
    driver::pack_a<MR>(g, m0, mc, k0, kc, Ap);
  }
  static void pack_b(const GemmArgs& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* Bp) {
    switch (g.btype) {
      case DType::F32: return driver::pack_b<MK, DType::F32>(g, k0, kc, n0, nc, Bp);
      case DType::BF16: return driver::pack_b<MK, DType::BF16>(g, k0, kc, n0, nc, Bp);
      case DType::F16: return driver::pack_b<MK, DType::F16>(g, k0, kc, n0, nc, Bp);
      case DType::Q8_0: return driver::pack_b<MK, DType::Q8_0>(g, k0, kc, n0, nc, Bp);
      case DType::Q4_0: return driver::pack_b<MK, DType::Q4_0>(g, k0, kc, n0, nc, Bp);
      case DType::Q4_K: return driver::pack_b<MK, DType::Q4_K>(g, k0, kc, n0, nc, Bp);
      case DType::Q6_K: return driver::pack_b<MK, DType::Q6_K>(g, k0, kc, n0, nc, Bp);
    }
  }
  static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, float alpha, float beta,
                   const float* bias) {
    MK::tile(kc, Ap, Bp, C, ldc, alpha, beta, bias);
  }
};

template <class MK>
void gemm_tile(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  gemm_rows<FpPolicy<MK>>(g, m0, m1, n0, n1);
}
template <class MK>
void gemm_chunk(const GemmArgs& g, uint64_t region, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  gemm_blocks<FpPolicy<MK>>(g, region, m0, m1, n0, n1);
}

}  // namespace
}  // namespace hc::cpu::driver
