// The serving attention over the paged KV pool resident on the device (the layout of
// ../kvcache.h: a block holds K (and V) as [L][NKV][block_size][HD]; a sequence's table
// lists its block ids), the step's keys/values written into their blocks, and the gather
// of the rows whose logits are asked for. Same semantics as cpu::attention_forward over
// KVSpans: query t of sequence seq_of[t] sees keys [0, npos[t]), or with a window W > 0
// only the last W of them (older blocks may have been released and are never read).
// The pool holds fp32 or bf16 (--kv-dtype): kv_write rounds to nearest even, the
// attention widens each element exactly and accumulates in fp32.
#include "attention.cuh"
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

// One warp per (query, head) row, online softmax as attention_kernel (attention.cu).
template <int NR, typename KV>
__global__ void __launch_bounds__(kAttnThreads)
paged_attention_kernel(float* out, const float* q, const KV* kp, const KV* vp, const int32_t* tables,
                       int64_t max_blocks, const int32_t* seq_of, const int32_t* npos, int64_t T, int64_t NH,
                       int64_t NKV, int HD, int64_t bstride, int64_t hstride, int64_t bs, int64_t window,
                       float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kAttnThreads / 32) + (threadIdx.x >> 5);
  if (row >= T * NH) return;  // whole warps leave together
  const int64_t t = row / NH, h = row % NH, g = h / (NH / NKV), n = npos[t];
  const int32_t* table = tables + static_cast<int64_t>(seq_of[t]) * max_blocks;
  float qr[NR], acc[NR];
  load_row<NR>(qr, q + row * HD, HD, lane);
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = window > 0 && n > window ? n - window : 0; j < n; j++) {
    const int64_t off = static_cast<int64_t>(table[j / bs]) * bstride + g * hstride + (j % bs) * HD;
    online_softmax_step<NR>(acc, m, l, row_dot<NR>(qr, kp + off, HD, lane) * scale, vp + off, HD, lane);
  }
  store_softmax_row<NR>(out + row * HD, acc, l, HD, lane);
}

template <typename KV>
void paged_attention_t(float* out, const float* q, const KV* k_pool, const KV* v_pool, const int32_t* tables,
                       int64_t max_blocks, const int32_t* seq_of, const int32_t* npos, int64_t T, int64_t NH,
                       int64_t NKV, int64_t HD, int64_t block_stride, int64_t head_stride, int64_t block_size,
                       int64_t window, cudaStream_t stream) {
  check_attention_shapes(0, 0, NH, NKV, HD);
  require(window >= 0 && block_size > 0, "invalid_argument", "paged attention: window >= 0, block_size > 0");
  if (T == 0) return;
  const unsigned grid = blocks_for(T * NH, kAttnThreads / 32);
  const float scale = 1.0f / sqrtf(static_cast<float>(HD));
  const int hd = static_cast<int>(HD);
  switch (attention_regs(HD)) {
#define HC_PAGED_CASE(NR)                                                                                         \
  case NR:                                                                                                        \
    paged_attention_kernel<NR, KV><<<grid, kAttnThreads, 0, stream>>>(out, q, k_pool, v_pool, tables, max_blocks, seq_of, \
                                                                 npos, T, NH, NKV, hd, block_stride, head_stride,  \
                                                                 block_size, window, scale);                       \
    break;
    HC_PAGED_CASE(1) HC_PAGED_CASE(2) HC_PAGED_CASE(4) HC_PAGED_CASE(8) HC_PAGED_CASE(16)
#undef HC_PAGED_CASE
  }
  HC_CUDA_LAUNCHED("paged_attention_kernel");
}

void paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool, int kv_dtype,
                     const int32_t* tables, int64_t max_blocks, const int32_t* seq_of, const int32_t* npos, int64_t T,
                     int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride, int64_t head_stride,
                     int64_t block_size, int64_t window, cudaStream_t stream) {
  require(kv_dtype == HC_CUDA_F32 || kv_dtype == HC_CUDA_BF16, "bad_dtype", "the KV pool holds f32 or bf16");
  if (kv_dtype == HC_CUDA_BF16)
    paged_attention_t(out, q, static_cast<const uint16_t*>(k_pool), static_cast<const uint16_t*>(v_pool), tables,
                      max_blocks, seq_of, npos, T, NH, NKV, HD, block_stride, head_stride, block_size, window, stream);
  else
    paged_attention_t(out, q, static_cast<const float*>(k_pool), static_cast<const float*>(v_pool), tables,
                      max_blocks, seq_of, npos, T, NH, NKV, HD, block_stride, head_stride, block_size, window, stream);
}

__device__ __forceinline__ void kv_store(float* p, float x) { *p = x; }
__device__ __forceinline__ void kv_store(uint16_t* p, float x) { *p = f32_to_bf16(x); }

// One thread per (token, kv head, dim) of k,v[T,NKV,HD] to its slot in the pool.
template <typename KV>
__global__ void kv_write_kernel(KV* k_pool, KV* v_pool, const float* k, const float* v, const int32_t* tables,
                                int64_t max_blocks, const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV,
                                int64_t HD, int64_t bstride, int64_t hstride, int64_t bs) {
  HC_FOR_EACH_ELEMENT(e, T * NKV * HD) {
    const int64_t d = e % HD, g = e / HD % NKV, t = e / (HD * NKV), p = pos[t];
    const int64_t blk = tables[static_cast<int64_t>(seq_of[t]) * max_blocks + p / bs];
    const int64_t off = blk * bstride + g * hstride + (p % bs) * HD + d;
    kv_store(k_pool + off, k[e]);
    kv_store(v_pool + off, v[e]);
  }
}

void kv_write(void* k_pool, void* v_pool, int kv_dtype, const float* k, const float* v, const int32_t* tables,
              int64_t max_blocks, const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV, int64_t HD,
              int64_t block_stride, int64_t head_stride, int64_t block_size, cudaStream_t stream) {
  require(kv_dtype == HC_CUDA_F32 || kv_dtype == HC_CUDA_BF16, "bad_dtype", "the KV pool holds f32 or bf16");
  if (T * NKV * HD <= 0) return;
  if (kv_dtype == HC_CUDA_BF16)
    kv_write_kernel<uint16_t><<<elem_grid(T * NKV * HD), kElemThreads, 0, stream>>>(static_cast<uint16_t*>(k_pool), static_cast<uint16_t*>(v_pool), k, v, tables, max_blocks, seq_of, pos, T, NKV, HD, block_stride, head_stride, block_size);
  else
    kv_write_kernel<float><<<elem_grid(T * NKV * HD), kElemThreads, 0, stream>>>(static_cast<float*>(k_pool), static_cast<float*>(v_pool), k, v, tables, max_blocks, seq_of, pos, T, NKV, HD, block_stride, head_stride, block_size);
  HC_CUDA_LAUNCHED("kv_write_kernel");
}

// out[r,:] = x[rows[r],:]
__global__ void gather_rows_kernel(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C) {
  HC_FOR_EACH_ELEMENT(e, R * C) out[e] = x[static_cast<int64_t>(rows[e / C]) * C + e % C];
}

void gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C, cudaStream_t stream) {
  if (R * C <= 0) return;
  gather_rows_kernel<<<elem_grid(R * C), kElemThreads, 0, stream>>>(out, x, rows, R, C);
  HC_CUDA_LAUNCHED("gather_rows_kernel");
}

}  // namespace hc::cuda
