// What the attention forward (attention.cu, paged_attention.cu) and backward
// (attention_backward.cu) share: warp-per-row layout, head-dim dispatch, shape checks, and
// the key/value sources the forward kernels (attention_kernels.cuh) read: contiguous
// k,v[S,NKV,HD] (DenseKV) or the paged block pool (PagedKV).
#pragma once
#include "common.cuh"

namespace hc::cuda {

constexpr int kAttnThreads = 128;  // 4 rows per block
constexpr int64_t kAttnMaxHD = 512;

inline void check_attention_shapes(int64_t T, int64_t S, int64_t NH, int64_t NKV, int64_t HD) {
  require(NKV > 0 && NH % NKV == 0, "invalid_argument", "attention: NH must be a multiple of NKV");
  require(T <= S, "invalid_argument", "attention: T must be <= S");
  require(HD > 0 && HD <= kAttnMaxHD, "unsupported", "attention: head_dim must be in [1, 512] on CUDA");
}

// registers per lane for a head of HD dims: the smallest power of two with 32·NR >= HD
inline int attention_regs(int64_t HD) {
  int nr = 1;
  while (32 * nr < HD) nr *= 2;
  return nr;
}

template <int NR>
__device__ __forceinline__ void load_row(float (&r)[NR], const float* p, int HD, int lane) {
#pragma unroll
  for (int i = 0; i < NR; i++) {
    const int d = lane + 32 * i;
    r[i] = d < HD ? p[d] : 0.0f;
  }
}

// A key/value element as fp32: the rows are fp32, or bf16 words (the serving KV pool's
// --kv-dtype bf16), widened exactly.
__device__ __forceinline__ float kv_at(const float* p, int d) { return p[d]; }
__device__ __forceinline__ float kv_at(const uint16_t* p, int d) { return bf16_to_f32(p[d]); }

// Σ_d a[d]·p[d] over the warp, the row a held in registers; every lane gets the sum.
template <int NR, typename KV>
__device__ __forceinline__ float row_dot(const float (&a)[NR], const KV* p, int HD, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < NR; i++) {
    const int d = lane + 32 * i;
    if (d < HD) s = fmaf(a[i], kv_at(p, d), s);
  }
  return warp_sum(s);
}

// One key of the online softmax over a row: score s, its value row v[HD]; m and l are the
// running max and sum (m = −inf before the first key, whose c is then 0).
template <int NR, typename KV>
__device__ __forceinline__ void online_softmax_step(float (&acc)[NR], float& m, float& l, float s, const KV* v,
                                                    int HD, int lane) {
  const float mn = fmaxf(m, s);
  const float c = expf(m - mn), p = expf(s - mn);
  l = l * c + p;
#pragma unroll
  for (int r = 0; r < NR; r++) {
    const int d = lane + 32 * r;
    acc[r] = acc[r] * c + (d < HD ? p * kv_at(v, d) : 0.0f);
  }
  m = mn;
}

// out[HD] = acc / l (0 for a row that saw no key)
template <int NR>
__device__ __forceinline__ void store_softmax_row(float* out, const float (&acc)[NR], float l, int HD, int lane) {
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int r = 0; r < NR; r++) {
    const int d = lane + 32 * r;
    if (d < HD) out[d] = acc[r] * inv;
  }
}

// Where a query row's keys are: seq(t) the sequence of query token t, npos(t) how many
// keys it sees (positions [0, npos)), at(s, j, g) the offset of key/value j of sequence s,
// KV head g, in k and v.
struct DenseKV {  // one sequence, k,v[S,NKV,HD]; query t at position offset + t
  using Elem = float;
  const float *k, *v;
  int64_t NKV, HD, offset;
  __device__ __forceinline__ int32_t seq(int64_t) const { return 0; }
  __device__ __forceinline__ int64_t npos(int64_t t) const { return offset + t + 1; }
  __device__ __forceinline__ int64_t at(int32_t, int64_t j, int64_t g) const { return (j * NKV + g) * HD; }
};
template <typename KV>
struct PagedKV {  // the pool of ../kvcache.h: tables[nseq, max_blocks], seq_of[T], npos[T]
  using Elem = KV;
  const KV *k, *v;
  const int32_t *tables, *seq_of, *np;
  int64_t max_blocks, bstride, hstride, bs, HD;
  __device__ __forceinline__ int32_t seq(int64_t t) const { return seq_of[t]; }
  __device__ __forceinline__ int64_t npos(int64_t t) const { return np[t]; }
  __device__ __forceinline__ int64_t at(int32_t s, int64_t j, int64_t g) const {
    return static_cast<int64_t>(tables[static_cast<int64_t>(s) * max_blocks + j / bs]) * bstride + g * hstride +
           (j % bs) * HD;
  }
};

// the first key a query that sees n keys attends to (a window W > 0 keeps the last W)
__device__ __forceinline__ int64_t window_start(int64_t n, int64_t window) {
  return window > 0 && n > window ? n - window : 0;
}

}  // namespace hc::cuda
