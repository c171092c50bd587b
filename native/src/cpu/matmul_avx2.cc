// AVX2/FMA/F16C kernel variant. Compiled with -mavx2 -mfma -mf16c in its own
// target; matmul.cc only calls into it after checking the CPU supports it.
#include "matmul_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "matmul_x86.h"
#include "quant_dot.h"
#include "quant_gemm.h"

namespace hc::cpu {
namespace {

struct Avx2Micro : X86Packing<16> {
  static constexpr int64_t MR = 6, KC = 256, MC = 144, NC = 3072;
  static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, float alpha,
                   float beta, const float* bias) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; k++, Ap += MR, Bp += NR) {
      const __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
      __m256 a = _mm256_broadcast_ss(Ap + 0);
      c00 = _mm256_fmadd_ps(a, b0, c00);
      c01 = _mm256_fmadd_ps(a, b1, c01);
      a = _mm256_broadcast_ss(Ap + 1);
      c10 = _mm256_fmadd_ps(a, b0, c10);
      c11 = _mm256_fmadd_ps(a, b1, c11);
      a = _mm256_broadcast_ss(Ap + 2);
      c20 = _mm256_fmadd_ps(a, b0, c20);
      c21 = _mm256_fmadd_ps(a, b1, c21);
      a = _mm256_broadcast_ss(Ap + 3);
      c30 = _mm256_fmadd_ps(a, b0, c30);
      c31 = _mm256_fmadd_ps(a, b1, c31);
      a = _mm256_broadcast_ss(Ap + 4);
      c40 = _mm256_fmadd_ps(a, b0, c40);
      c41 = _mm256_fmadd_ps(a, b1, c41);
      a = _mm256_broadcast_ss(Ap + 5);
      c50 = _mm256_fmadd_ps(a, b0, c50);
      c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    const __m256 bias0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 bias1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    auto store = [&](float* c, __m256 lo, __m256 hi) {
      lo = _mm256_fmadd_ps(va, lo, bias0);
      hi = _mm256_fmadd_ps(va, hi, bias1);
      if (beta != 0.f) {
        lo = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), lo);
        hi = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), hi);
      }
      _mm256_storeu_ps(c, lo);
      _mm256_storeu_ps(c + 8, hi);
    };
    store(C, c00, c01);
    store(C + ldc, c10, c11);
    store(C + 2 * ldc, c20, c21);
    store(C + 3 * ldc, c30, c31);
    store(C + 4 * ldc, c40, c41);
    store(C + 5 * ldc, c50, c51);
  }
};

// C[m0:m0+MT, n:n+R] from R rows of B against MT rows of A, over the whole K.
template <DType DT, int R, int MT>
inline void gemv_block(const GemmArgs& g, int64_t m0, int64_t n) {
  __m256 acc[R][MT];
  zero_tile(acc);
  const float* a = g.A + m0 * g.lda;
  const int64_t K8 = g.K & ~int64_t(7);
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 x[MT];
    for (int m = 0; m < MT; m++) x[m] = _mm256_loadu_ps(a + m * g.lda + k);
    for (int r = 0; r < R; r++) {
      prefetch_rows<DT, R>(g.B, g.ldb, n, r, k);
      const __m256 w = load8<DT>(g.B, (n + r) * g.ldb + k);
      for (int m = 0; m < MT; m++) acc[r][m] = _mm256_fmadd_ps(w, x[m], acc[r][m]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MT; m++) {
      float s = hsum(acc[r][m]);
      for (int64_t k = K8; k < g.K; k++) s += load1<DT>(g.B, (n + r) * g.ldb + k) * a[m * g.lda + k];
      store_out(g, m0 + m, n + r, s);
    }
}

// R rows of B at n, all M rows of A in tiles of 3 or 2 rows (a lone 1 only for
// M = 1: 3+1 does less work per B load than 2+2). The first tile pulls the B
// rows from memory, the others find them in L1.
template <DType DT, int R>
inline void gemv_rows(const GemmArgs& g, int64_t n) {
  if (g.M == 1) return gemv_block<DT, R, 1>(g, 0, n);
  int64_t m = 0;
  const int64_t threes = g.M % 3 == 1 ? g.M / 3 - 1 : g.M / 3;
  for (int64_t t = 0; t < threes; t++, m += 3) gemv_block<DT, R, 3>(g, m, n);
  for (; m < g.M; m += 2) gemv_block<DT, R, 2>(g, m, n);
}

template <DType DT>
void gemv_typed(const GemmArgs& g, int64_t n0, int64_t n1) {
  int64_t n = n0;
  // f32 at batch 1: one row after another, the same sums bit for bit; 110M tg128 +6 % median over
  // 9 pairs (this variant forced on a Zen 5, RESULTS.md). Not f16/bf16: one row's single FMA chain
  // (8 lanes, 4 cycles) then limits a core to 4 B of weights a cycle, 10–30 % slower.
  if (DT != DType::F32 || g.M > 1)
    for (; n + 4 <= n1; n += 4) gemv_rows<DT, 4>(g, n);
  for (; n < n1; n++) gemv_rows<DT, 1>(g, n);
}

// ---- q8_0 / q4_0 weights: each block dequantized in registers (exactly) and used
// for every row of the tile, activations kept fp32 (matmul_avx512.cc says why).

// The 32 weights of one block in w[0..4), 8 each.
template <DType DT>
inline void dequant_block(const uint8_t* blk, __m256 w[4]) {
  uint16_t dbits;
  __builtin_memcpy(&dbits, blk, 2);
  const __m256 d = _mm256_set1_ps(_cvtsh_ss(dbits));
  if constexpr (DT == DType::Q8_0) {
    for (int i = 0; i < 4; i++) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * i));
      w[i] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
  } else {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i m4 = _mm_set1_epi8(15);
    const __m128i q0 = _mm_and_si128(b, m4), q1 = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    const __m256 d8 = _mm256_mul_ps(d, _mm256_set1_ps(-8.f));  // d·(q − 8) = d·q − 8d, exact
    const __m128i q[4] = {q0, _mm_srli_si128(q0, 8), q1, _mm_srli_si128(q1, 8)};
    for (int i = 0; i < 4; i++) w[i] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q[i])), d8);
  }
}

// R rows of B against MT rows of A (x read from L1 by the FMAs: 16 ymm registers)
template <DType DT, int R, int MT>
inline void gemv_q_block(const GemmArgs& g, int64_t m0, int64_t n) {
  constexpr int64_t BB = dtype_bytes(DT, 32);
  const int64_t row_bytes = dtype_bytes(DT, g.ldb);
  const uint8_t* B = block_row<DT>(g, n);
  __m256 acc[R][MT];
  zero_tile(acc);
  const float* a = g.A + m0 * g.lda;
  for (int64_t k = 0, off = 0; k < g.K; k += 32, off += BB)
    for (int r = 0; r < R; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(B + (R + r) * row_bytes + off), _MM_HINT_T0);
      __m256 w[4];
      dequant_block<DT>(B + r * row_bytes + off, w);
      for (int m = 0; m < MT; m++)
        for (int i = 0; i < 4; i++) acc[r][m] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(a + m * g.lda + k + 8 * i), acc[r][m]);
    }
  store_tile(g, m0, n, acc);
}

template <DType DT, int R>
inline void gemv_q_rows(const GemmArgs& g, int64_t n) {
  int64_t m = 0;
  for (; g.M - m >= 2; m += 2) gemv_q_block<DT, R, 2>(g, m, n);
  if (m < g.M) gemv_q_block<DT, R, 1>(g, m, n);
}

template <DType DT>
void gemv_q(const GemmArgs& g, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) gemv_q_rows<DT, 4>(g, n);
  for (; n < n1; n++) gemv_q_rows<DT, 1>(g, n);
}

// ---- q4_k weights: the AVX-512 variant's loop (matmul_avx512.cc) on 8 lanes: a super-block's
// scales decoded once per row, each sub-block of 32 dequantized in four registers.
template <int R, int MT>
inline void gemv_q4k_block(const GemmArgs& g, int64_t m0, int64_t n) {
  const int64_t row_bytes = dtype_bytes(DType::Q4_K, g.ldb);
  const uint8_t* B = block_row<DType::Q4_K>(g, n);
  __m256 acc[R][MT];
  zero_tile(acc);
  const float* a = g.A + m0 * g.lda;
  const __m128i m4 = _mm_set1_epi8(15);
  for (int64_t k = 0, off = 0; k < g.K; k += 256, off += 144) {
    float ds[R][8], dm[R][8];
    q4k_rows_scales<R>(B, row_bytes, off, ds, dm);
    for (int j = 0; j < 8; j++) {  // sub-block j: nibbles (j odd: high) of bytes [32(j/2), +32)
      const int64_t kj = k + 32 * j;
      for (int r = 0; r < R; r++) {
        const uint8_t* qp = B + r * row_bytes + off + 16 + 32 * (j / 2);
        __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qp));
        __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qp + 16));
        if (j % 2) {
          b0 = _mm_srli_epi16(b0, 4);
          b1 = _mm_srli_epi16(b1, 4);
        }
        b0 = _mm_and_si128(b0, m4);
        b1 = _mm_and_si128(b1, m4);
        const __m128i q[4] = {b0, _mm_srli_si128(b0, 8), b1, _mm_srli_si128(b1, 8)};
        const __m256 vds = _mm256_set1_ps(ds[r][j]), vdm = _mm256_set1_ps(dm[r][j]);
        __m256 w[4];
        for (int i = 0; i < 4; i++) w[i] = _mm256_fmsub_ps(vds, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q[i])), vdm);
        for (int m = 0; m < MT; m++)
          for (int i = 0; i < 4; i++) acc[r][m] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(a + m * g.lda + kj + 8 * i), acc[r][m]);
      }
    }
  }
  store_tile(g, m0, n, acc);
}

template <int R>
inline void gemv_q4k_rows(const GemmArgs& g, int64_t n) {
  int64_t m = 0;
  for (; g.M - m >= 2; m += 2) gemv_q4k_block<R, 2>(g, m, n);
  if (m < g.M) gemv_q4k_block<R, 1>(g, m, n);
}

void gemv_q4k(const GemmArgs& g, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) gemv_q4k_rows<4>(g, n);
  for (; n < n1; n++) gemv_q4k_rows<1>(g, n);
}

// The int8 GEMM (quant_gemm.h) from this many rows of x: below, quant_dot's streamed tiles win, as
// the GEMM packs B per call. One Zen 5 core, 2048×768, dot vs AVX-VNNI GEMM vs maddubs GEMM, ms:
// q4_0 M = 4 0.147 / 0.179 / 0.212, M = 8 0.308 / 0.205 / 0.291, M = 16 0.609 / 0.285 / 0.432;
// q4_k M = 8 0.274 / 0.277 / 0.341, M = 16 0.536 / 0.354 / 0.481.
inline int64_t avx2_quant_gemm_min_m() { return use_avx_vnni() ? 8 : 12; }

// The AVX2 level's int8 dot products and GEMM: AVX-VNNI where the CPU has it (dispatch.h), else maddubs.
bool avx2_quant_dot(const GemmArgs& g, int64_t n0, int64_t n1) {
  return use_avx_vnni() ? quant_dot_avxvnni(g, n0, n1) : quant_dot_avx2(g, n0, n1);
}
bool avx2_quant_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return use_avx_vnni() ? quant_gemm_avxvnni(g, m0, m1, n0, n1) : quant_gemm_avx2(g, m0, m1, n0, n1);
}
// The same over weights repacked at load (quant_repack.h); false when g reads no repacked copy.
bool avx2_quant_gemm_repacked(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  return use_avx_vnni() ? quant_gemm_repacked_avxvnni(g, m0, m1, n0, n1) : quant_gemm_repacked_avx2(g, m0, m1, n0, n1);
}
// Weights repacked at load take the repacked GEMM from this many rows of x.
inline int64_t avx2_repacked_min_m() { return 1; }

void avx2_gemm_tile(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (avx2_quant_gemm_repacked(g, m0, m1, n0, n1)) return;
  if (!avx2_quant_gemm(g, m0, m1, n0, n1)) driver::gemm_tile<Avx2Micro>(g, m0, m1, n0, n1);
}

void avx2_gemv(const GemmArgs& g, int64_t n0, int64_t n1) {
  if (g.M >= avx2_repacked_min_m() && avx2_quant_gemm_repacked(g, 0, g.M, n0, n1)) return;
  if (g.M >= avx2_quant_gemm_min_m() && avx2_quant_gemm(g, 0, g.M, n0, n1)) return;
  switch (g.btype) {
    case DType::F32: return gemv_typed<DType::F32>(g, n0, n1);
    case DType::BF16: return gemv_typed<DType::BF16>(g, n0, n1);
    case DType::F16: return gemv_typed<DType::F16>(g, n0, n1);
    case DType::Q8_0: if (!avx2_quant_dot(g, n0, n1)) gemv_q<DType::Q8_0>(g, n0, n1); return;
    case DType::Q4_0: if (!avx2_quant_dot(g, n0, n1)) gemv_q<DType::Q4_0>(g, n0, n1); return;
    case DType::Q4_K: if (!avx2_quant_dot(g, n0, n1)) gemv_q4k(g, n0, n1); return;
    case DType::Q6_K: return portable_kernels().gemv_cols(g, n0, n1);  // read only (GGUF): rows dequantized, then dotted
  }
}

const CpuKernels kAvx2 = {"avx2", 2 * Avx2Micro::MR, Avx2Micro::NR, 16, &avx2_gemm_tile, &avx2_gemv,
                         &driver::gemm_chunk<Avx2Micro>, true};

}  // namespace

const CpuKernels* avx2_kernels() { return &kAvx2; }

}  // namespace hc::cpu

#else

namespace hc::cpu {
const CpuKernels* avx2_kernels() { return nullptr; }
}  // namespace hc::cpu

#endif
