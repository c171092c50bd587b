// The table of CPU kernel variants behind gemm()/matmul() (ggml-style: one
// table per instruction set, picked once at run time), and what one rank does.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../dtype.h"
#include "../threadpool.h"
#include "dispatch.h"

namespace hc::cpu {

// How the activations meet bf16 weights (--matmul-precision, PyTorch's
// set_float32_matmul_precision names): Highest keeps x in fp32; High splits x into
// hi + lo bf16 (≈ 16 bits kept) for vdpbf16ps; Medium rounds x to one bf16 (8 bits,
// llama.cpp's way: twice the fp32 compute rate). Other weight types always run Highest.
enum class MatmulPrecision : int { Highest = 0, High = 1, Medium = 2 };

struct RepackedWeight;  // quant_repack.h

// One product, as gemm() received it (see gemm.h for the meaning of each field).
struct GemmArgs {
  bool ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;  // op(A)[M,K]
  int64_t lda;
  const void* B;  // op(B)[K,N], stored as btype
  DType btype;
  int64_t ldb;
  float beta;
  float* C;  // [M, ldc]
  int64_t ldc;
  const float* bias;  // [N] or null
  MatmulPrecision precision = MatmulPrecision::Highest;
  bool exact_x = false;  // block-format B: no int8 rounding of A (quant_dot.h)
  // B's copy repacked at load (quant_repack.h), which the int8 GEMM reads instead of B; null
  // where B has none. Its holder (a Model's RepackSet) outlives every product that names it.
  const RepackedWeight* packed = nullptr;
  // Non-zero: every call carrying this id reads the same rows of A, unchanged (the products of
  // one x in one parallel region, next_region_id()), so a rank may prepare them once (the int8
  // blocks of quantize_rows) for all the chunks it takes instead of once per chunk. A decode
  // step's region hands out ≈ 10 chunks; re-quantizing x for each was ≈ 5 % of a 110M q4 token.
  uint64_t x_id = 0;
};

struct CpuKernels {
  const char* name;
  // the work is split over ranks in whole register tiles: mr rows (gemm_tile's
  // row split) and nr columns (gemm_tile's and gemv_cols' column split)
  int64_t mr, nr;
  // largest M that streams (gemv_cols) rather than packs, measured per variant by
  // bench-kernels (shape … stream|packed): packing B costs more than it saves below it
  int64_t stream_max_m;
  // C[m0:m1, n0:n1] through packed panels and cache blocking; compute bound.
  void (*gemm_tile)(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
  // C[:, n0:n1] for small M, !ta and tb (B rows are output features): each B
  // row is streamed from memory once for all M rows of A; bandwidth bound.
  void (*gemv_cols)(const GemmArgs& g, int64_t n0, int64_t n1);
  // C[m0:m1, n0:n1] as gemm_tile computes it, with op(A)[m0:m1, :] packed once per thread for
  // the whole of `region` (gemm_packed): the column chunks a rank takes of one product, or of
  // several products of the same A, reuse it. Used for f32/bf16/f16 B (block formats keep
  // gemm_tile, which may hand them to the int8 GEMM).
  void (*gemm_chunk)(const GemmArgs& g, uint64_t region, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
  // whether gemv_cols and gemm_tile read GemmArgs::packed (the repacked int8 GEMM)
  bool repacked;
};

// A fresh id for one parallel region's reads of A (GemmArgs::x_id, gemm_chunk's region): never
// reused, since the engine rewrites its activations in place between regions.
uint64_t next_region_id();

// The most bytes of packed op(A) one rank keeps for a region (more rows run as row blocks).
constexpr int64_t kPackedABytes = int64_t(8) << 20;

const CpuKernels& portable_kernels();
const CpuKernels* avx2_kernels();  // null when this build has no AVX2/FMA/F16C variant
// The AVX-512 variant of level Avx512, Avx512Vnni (int8 dot products for the block
// formats: quant_dot.h) or Avx512Bf16 (also vdpbf16ps); the CPU must have what the level
// names (dispatch.h). Null when this build has no AVX-512 variant.
const CpuKernels* avx512_kernels(KernelLevel level);
// The variant of --matmul-precision high / medium for bf16 weights (vdpbf16ps), or null
// when this build has no AVX512-BF16 variant.
const CpuKernels* avx512_dp_kernels(MatmulPrecision p);
using GemmTileFn = void (*)(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
GemmTileFn avx512_bf16_gemm_tile();  // matmul_bf16_avx512.cc: medium's packed GEMM (null without the TU)
using GemmChunkFn = void (*)(const GemmArgs& g, uint64_t region, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
GemmChunkFn avx512_bf16_gemm_chunk();  // its gemm_chunk
const CpuKernels& active_kernels();  // the variant dispatch.h's kernel_level() picks
// The variant of one level (dispatch.h), or null when this build lacks it.
const CpuKernels* kernels_for(int level);

// Which of the two kernels computes a product: Auto picks Stream for !ta, tb and
// M <= stream_max_m; the others force one (for bench-kernels; Stream needs !ta, tb).
enum class GemmPath { Auto, Stream, Packed };

// The kernels of one product: the active variant, or for bf16 weights below Highest the
// vdpbf16ps one where the CPU has AVX512-BF16.
const CpuKernels& kernels_of(const GemmArgs& g);
// Whether gemm_run(k, g, pool, Auto) streams g (gemv_cols) rather than packing it.
inline bool streams(const CpuKernels& k, const GemmArgs& g) { return !g.ta && g.tb && g.M <= k.stream_max_m; }
// The smallest chunk of a streamed product's rows one rank takes at a time (ThreadPool::run_chunks):
// whole tiles of nr rows, at least kStreamChunkBytes of weights, since each gemv_cols call
// first prepares x (int8 blocks, bf16 halves) for itself.
constexpr int64_t kStreamChunkBytes = 32 << 10;
inline int64_t stream_chunk(const CpuKernels& k, const GemmArgs& g) {
  const int64_t row = std::max<int64_t>(1, dtype_bytes(g.btype, g.K));
  return std::max<int64_t>(k.nr, (kStreamChunkBytes / row + k.nr - 1) / k.nr * k.nr);
}
// Below this many flops, waking the other ranks costs more than it saves.
constexpr int64_t kParallelMinFlops = int64_t(1) << 18;

// Whether k's gemm_chunk computes g when it packs (f32/bf16/f16 weights).
inline bool chunks_packed(const CpuKernels& k, const GemmArgs& g) {
  return k.gemm_chunk && (g.btype == DType::F32 || g.btype == DType::BF16 || g.btype == DType::F16);
}
// Products of one A (the same ta, A, lda, M, K) through k's packed GEMM as one parallel
// region (matmul_packed.cc): column chunks of every product, in whole nr tiles, handed out
// from a shared counter, each rank packing A once. Every gs[i] must satisfy chunks_packed.
void gemm_packed(const CpuKernels& k, const GemmArgs* gs, int count, ThreadPool& pool);

// Splits g over the pool's ranks and runs it with kernels k.
void gemm_run(const CpuKernels& k, const GemmArgs& g, ThreadPool& pool,
              GemmPath path = GemmPath::Auto);

}  // namespace hc::cpu
