// The attention forward kernels, over any key/value source of attention.cuh (DenseKV for
// the contiguous k,v of the op tests and the training forward, PagedKV for the serving
// pool). Semantics of cpu::attention_forward: query token t of sequence seq(t) sees keys
// [window_start(n), n), n = npos(t), with an online softmax (running max m and sum l), so
// no score matrix is stored; fp32 accumulation whatever the pool holds.
//
// - flash_attention_kernel (prefill, packed variable-length batches): a thread block per
//   (tile of kFlashRows query rows, KV head g). The rows of a tile are consecutive
//   (token, query head of g's GQA group) pairs, so the group's heads and the tile's tokens
//   share every K/V tile of kFlashKeys keys staged (widened to fp32) in shared memory: K/V
//   are read from global memory once per tile instead of once per (query, head) row. A
//   tile that spans sequences (the packed batch's boundaries) stages each sequence's keys
//   in turn. A warp owns kFlashRows/4 rows and scores them together (one shared-memory
//   load of each K/V element serves the warp's rows); per K tile each lane scores one key,
//   so the softmax takes two warp reductions per 32 keys rather than one per key.
// - rows_attention_kernel (decode, head_dim > 128): one warp per (query, head) row, lanes
//   over the head's dims; with `splits` > 1 (flash-decoding) gridDim.y splits the row's key
//   range into that many chunks, each writing (unnormalised acc, m, l) to `part`, and
//   attention_combine_kernel merges them: a long context at batch 1 then fills the device.
#pragma once
#include "attention.cuh"

namespace hc::cuda {

constexpr int kFlashRows = 16, kFlashKeys = 32, kFlashThreads = 128;
constexpr int kFlashRowsPerWarp = kFlashRows / (kFlashThreads / 32);
// the flash kernel's shared tiles hold 32·NR dims: NR <= 4 (head_dim <= 128) fits 48 KB
constexpr int kFlashMaxRegs = 4;

// the query row i of a flash tile over KV head g: token i / G, head g·G + i % G
template <int NR, typename Src>
__global__ void __launch_bounds__(kFlashThreads)
flash_attention_kernel(float* out, float* lse, const float* q, Src src, int64_t T, int64_t NH, int64_t NKV, int HD,
                       int64_t window, float scale) {
  constexpr int HP = 32 * NR;
  __shared__ float qs[kFlashRows][HP];
  __shared__ float ks[kFlashKeys][HP + 1];  // +1: lane j reads row j, 32 rows in 32 banks
  __shared__ float vs[kFlashKeys][HP];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t G = NH / NKV, g = blockIdx.y, r0 = static_cast<int64_t>(blockIdx.x) * kFlashRows;
  const int nrows = static_cast<int>(T * G - r0 < kFlashRows ? T * G - r0 : kFlashRows);
  auto token = [&](int r) { return (r0 + r) / G; };
  auto head = [&](int r) { return g * G + (r0 + r) % G; };
  // the tile's queries, pre-scaled (zeros past HD and past the last row)
  for (int e = threadIdx.x; e < kFlashRows * HP; e += kFlashThreads) {
    const int r = e / HP, d = e % HP;
    qs[r][d] = r < nrows && d < HD ? q[(token(r) * NH + head(r)) * HD + d] * scale : 0.0f;
  }
  float m[kFlashRowsPerWarp], l[kFlashRowsPerWarp], acc[kFlashRowsPerWarp][NR];
  int64_t lo[kFlashRowsPerWarp], hi[kFlashRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kFlashRowsPerWarp; i++) {
    const int r = warp * kFlashRowsPerWarp + i;
    m[i] = -INFINITY, l[i] = 0.0f, hi[i] = r < nrows ? src.npos(token(r)) : 0, lo[i] = window_start(hi[i], window);
#pragma unroll
    for (int c = 0; c < NR; c++) acc[i][c] = 0.0f;
  }
  // Segments: runs of rows of one sequence (every thread walks them alike, so the
  // barriers below are uniform); the segment's keys are the union of its rows' ranges.
  for (int sb = 0; sb < nrows;) {
    const int32_t s = src.seq(token(sb));
    int se = sb;
    int64_t klo = INT64_MAX, khi = 0;
    for (; se < nrows && src.seq(token(se)) == s; se++) {
      const int64_t n = src.npos(token(se)), a = window_start(n, window);
      klo = a < klo ? a : klo, khi = n > khi ? n : khi;
    }
    for (int64_t j0 = klo; j0 < khi; j0 += kFlashKeys) {
      __syncthreads();  // the previous tile is consumed (and qs written, the first time)
      for (int e = threadIdx.x; e < kFlashKeys * HP; e += kFlashThreads) {
        const int jj = e / HP, d = e % HP;
        const int64_t j = j0 + jj;
        float kx = 0.0f, vx = 0.0f;
        if (j < khi && d < HD) {
          const int64_t off = src.at(s, j, g);
          kx = kv_at(src.k + off, d), vx = kv_at(src.v + off, d);
        }
        ks[jj][d] = kx, vs[jj][d] = vx;
      }
      __syncthreads();
      // the warp's rows together: each K (and V) element loaded from shared memory once for
      // all of them. A row outside the segment or the key outside its range scores −inf.
      const int w0 = warp * kFlashRowsPerWarp;
      if (w0 + kFlashRowsPerWarp <= sb || w0 >= se) continue;  // none of the warp's rows in the segment
      const int64_t j = j0 + lane;
      bool on[kFlashRowsPerWarp], live[kFlashRowsPerWarp];
      float sc[kFlashRowsPerWarp], p[kFlashRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kFlashRowsPerWarp; i++) {
        const int r = w0 + i;
        on[i] = r >= sb && r < se && j >= lo[i] && j < hi[i], sc[i] = 0.0f;
      }
      for (int d = 0; d < HD; d++) {
        const float kd = ks[lane][d];
#pragma unroll
        for (int i = 0; i < kFlashRowsPerWarp; i++) sc[i] = fmaf(qs[w0 + i][d], kd, sc[i]);
      }
#pragma unroll
      for (int i = 0; i < kFlashRowsPerWarp; i++) {
        const int r = w0 + i;
        p[i] = 0.0f;
        live[i] = false;
        if (r < sb || r >= se) continue;  // warp-uniform
        const float mt = warp_max(on[i] ? sc[i] : -INFINITY);
        if (mt == -INFINITY) continue;  // warp-uniform: no key of this tile in the row's range
        live[i] = true;
        const float mn = fmaxf(m[i], mt), c = expf(m[i] - mn);
        p[i] = on[i] ? expf(sc[i] - mn) : 0.0f;
        l[i] = l[i] * c + warp_sum(p[i]);
#pragma unroll
        for (int cc = 0; cc < NR; cc++) acc[i][cc] *= c;
        m[i] = mn;
      }
      for (int jj = 0; jj < kFlashKeys; jj++) {
        float pj[kFlashRowsPerWarp];
#pragma unroll
        for (int i = 0; i < kFlashRowsPerWarp; i++) pj[i] = live[i] ? __shfl_sync(0xffffffffu, p[i], jj) : 0.0f;
#pragma unroll
        for (int cc = 0; cc < NR; cc++) {
          const float vd = vs[jj][lane + 32 * cc];
#pragma unroll
          for (int i = 0; i < kFlashRowsPerWarp; i++) acc[i][cc] = fmaf(pj[i], vd, acc[i][cc]);
        }
      }
    }
    sb = se;
  }
#pragma unroll
  for (int i = 0; i < kFlashRowsPerWarp; i++) {
    const int r = warp * kFlashRowsPerWarp + i;
    if (r >= nrows) continue;
    const int64_t row = token(r) * NH + head(r);
    store_softmax_row<NR>(out + row * HD, acc[i], l[i], HD, lane);
    if (lse && lane == 0) lse[row] = m[i] + logf(l[i]);
  }
}

constexpr int kRowsPerBlock = kAttnThreads / 32;

// part[row, split, HD + 2]: the split's unnormalised acc[HD], then m and l
template <int NR, typename Src>
__global__ void __launch_bounds__(kAttnThreads)
rows_attention_kernel(float* out, float* lse, float* part, const float* q, Src src, int64_t T, int64_t NH,
                      int64_t NKV, int HD, int64_t window, float scale) {
  const int lane = threadIdx.x & 31, splits = static_cast<int>(gridDim.y), sp = static_cast<int>(blockIdx.y);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= T * NH) return;  // whole warps leave together
  const int64_t t = row / NH, h = row % NH, g = h / (NH / NKV), n = src.npos(t), start = window_start(n, window);
  const int32_t s = src.seq(t);
  const int64_t chunk = (n - start + splits - 1) / splits, a = start + sp * chunk, b = a + chunk < n ? a + chunk : n;
  float qr[NR], acc[NR];
  load_row<NR>(qr, q + row * HD, HD, lane);
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = a; j < b; j++) {
    const int64_t off = src.at(s, j, g);
    online_softmax_step<NR>(acc, m, l, row_dot<NR>(qr, src.k + off, HD, lane) * scale, src.v + off, HD, lane);
  }
  if (splits == 1) {
    store_softmax_row<NR>(out + row * HD, acc, l, HD, lane);
    if (lse && lane == 0) lse[row] = m + logf(l);
    return;
  }
  float* p = part + (row * splits + sp) * (HD + 2);
#pragma unroll
  for (int r = 0; r < NR; r++)
    if (lane + 32 * r < HD) p[lane + 32 * r] = acc[r];
  if (lane == 0) p[HD] = m, p[HD + 1] = l;
}

// out[row] = Σ_s acc_s·e^(m_s − M) / Σ_s l_s·e^(m_s − M), M = max_s m_s (an empty split has
// m = −inf, l = 0 and weighs nothing); lse = M + log of the denominator.
template <int NR>
__global__ void __launch_bounds__(kAttnThreads)
attention_combine_kernel(float* out, float* lse, const float* part, int64_t rows, int HD, int splits) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const float* p = part + row * splits * (HD + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; s++) M = fmaxf(M, p[s * (HD + 2) + HD]);
  float acc[NR], L = 0.0f;
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r] = 0.0f;
  for (int s = 0; s < splits; s++) {
    const float* ps = p + s * (HD + 2);
    if (ps[HD + 1] == 0.0f) continue;
    const float w = expf(ps[HD] - M);
    L = fmaf(ps[HD + 1], w, L);
#pragma unroll
    for (int r = 0; r < NR; r++)
      if (lane + 32 * r < HD) acc[r] = fmaf(ps[lane + 32 * r], w, acc[r]);
  }
  store_softmax_row<NR>(out + row * HD, acc, L, HD, lane);
  if (lse && lane == 0) lse[row] = M + logf(L);
}

// Launches the forward over `src` for T query tokens: the flash kernel when `flash` (and
// head_dim <= 128), else the row kernel split `splits` ways (part: T·NH·splits·(HD + 2)
// floats when splits > 1) and, when split, the combine.
template <typename Src>
void attention_launch(float* out, float* lse, const float* q, const Src& src, int64_t T, int64_t NH, int64_t NKV,
                      int64_t HD, int64_t window, bool flash, int splits, float* part, cudaStream_t stream) {
  require(window >= 0, "invalid_argument", "attention: window must be >= 0");
  require(splits >= 1 && (splits == 1 || part), "invalid_argument", "attention: splits >= 1, with scratch when > 1");
  if (T == 0 || NH == 0) return;
  const float scale = 1.0f / sqrtf(static_cast<float>(HD));
  const int hd = static_cast<int>(HD), nr = attention_regs(HD);
  if (flash && nr <= kFlashMaxRegs) {
    const dim3 grid(blocks_for(T * (NH / NKV), kFlashRows), static_cast<unsigned>(NKV));
    switch (nr) {
#define HC_FLASH_CASE(NR)                                                                                         \
  case NR:                                                                                                        \
    flash_attention_kernel<NR, Src><<<grid, kFlashThreads, 0, stream>>>(out, lse, q, src, T, NH, NKV, hd, window, scale); \
    break;
      HC_FLASH_CASE(1) HC_FLASH_CASE(2) HC_FLASH_CASE(4)
#undef HC_FLASH_CASE
    }
    HC_CUDA_LAUNCHED("flash_attention_kernel");
    return;
  }
  const dim3 grid(blocks_for(T * NH, kRowsPerBlock), static_cast<unsigned>(splits));
  const unsigned rows_grid = blocks_for(T * NH, kRowsPerBlock);
  switch (nr) {
#define HC_ROWS_CASE(NR)                                                                                            \
  case NR:                                                                                                          \
    rows_attention_kernel<NR, Src><<<grid, kAttnThreads, 0, stream>>>(out, lse, part, q, src, T, NH, NKV, hd, window, scale); \
    if (splits > 1) attention_combine_kernel<NR><<<rows_grid, kAttnThreads, 0, stream>>>(out, lse, part, T * NH, hd, splits); \
    break;
    HC_ROWS_CASE(1) HC_ROWS_CASE(2) HC_ROWS_CASE(4) HC_ROWS_CASE(8) HC_ROWS_CASE(16)
#undef HC_ROWS_CASE
  }
  HC_CUDA_LAUNCHED("rows_attention_kernel");
}

// The split count for `rows` (query, head) rows whose contexts are at most `ctx` keys:
// enough row blocks × splits to give each of the device's `sms` multiprocessors a few
// blocks, no split under kMinSplitKeys keys. HYBRIDCHAT_ATTN_SPLITS=N forces N (tests).
constexpr int64_t kMinSplitKeys = 256;
constexpr int kMaxSplits = 32;
inline int attention_splits(int64_t rows, int64_t ctx, int sms) {
  const int64_t row_blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock, want = 4 * static_cast<int64_t>(sms);
  int64_t s = (want + row_blocks - 1) / row_blocks;
  const int64_t by_len = (ctx + kMinSplitKeys - 1) / kMinSplitKeys;
  s = s < by_len ? s : by_len;
  return static_cast<int>(s < 1 ? 1 : s > kMaxSplits ? kMaxSplits : s);
}

}  // namespace hc::cuda
