// The serving attention over the paged KV pool resident on the device (the kernels of
// attention_kernels.cuh over PagedKV; the pool's layout is that of ../kvcache.h: a block
// holds K (and V) as [L][NKV][block_size][HD], a sequence's table lists its block ids), the
// step's keys/values written into their blocks, and the gather of the rows whose logits are
// asked for. Same semantics as cpu::attention_forward over
// KVSpans: query t of sequence seq_of[t] sees keys [0, npos[t]), or with a window W > 0
// only the last W of them (older blocks may have been released and are never read).
// The pool holds fp32 or bf16 (--kv-dtype): kv_write rounds to nearest even, the
// attention widens each element exactly and accumulates in fp32.
#include <atomic>
#include <cstdlib>

#include "attention_kernels.cuh"
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

// A step with more queries than sequences (a prefill, or prefills mixed with decodes)
// goes through the flash kernel over the packed batch; a decode step (one query per
// sequence) through the row kernel, its key range split `splits` ways (flash-decoding).
template <typename KV>
void paged_attention_t(float* out, const float* q, const KV* k_pool, const KV* v_pool, const int32_t* tables,
                       int64_t max_blocks, int64_t nseq, const int32_t* seq_of, const int32_t* npos, int64_t T,
                       int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride, int64_t head_stride,
                       int64_t block_size, int64_t window, int splits, float* part, cudaStream_t stream) {
  const PagedKV<KV> src{k_pool, v_pool, tables, seq_of, npos, max_blocks, block_stride, head_stride, block_size, HD};
  const bool decode = T <= nseq;
  attention_launch(out, nullptr, q, src, T, NH, NKV, HD, window, !decode, decode ? splits : 1, part, stream);
}

void paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool, int kv_dtype,
                     const int32_t* tables, int64_t max_blocks, int64_t nseq, const int32_t* seq_of,
                     const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride,
                     int64_t head_stride, int64_t block_size, int64_t window, int splits, float* part,
                     cudaStream_t stream) {
  require(kv_dtype == HC_CUDA_F32 || kv_dtype == HC_CUDA_BF16, "bad_dtype", "the KV pool holds f32 or bf16");
  check_attention_shapes(0, 0, NH, NKV, HD);
  require(window >= 0 && block_size > 0, "invalid_argument", "paged attention: window >= 0, block_size > 0");
  if (kv_dtype == HC_CUDA_BF16)
    paged_attention_t(out, q, static_cast<const uint16_t*>(k_pool), static_cast<const uint16_t*>(v_pool), tables,
                      max_blocks, nseq, seq_of, npos, T, NH, NKV, HD, block_stride, head_stride, block_size, window,
                      splits, part, stream);
  else
    paged_attention_t(out, q, static_cast<const float*>(k_pool), static_cast<const float*>(v_pool), tables,
                      max_blocks, nseq, seq_of, npos, T, NH, NKV, HD, block_stride, head_stride, block_size, window,
                      splits, part, stream);
}

int decode_splits(int64_t rows, int64_t ctx) {
  if (const char* e = std::getenv("HYBRIDCHAT_ATTN_SPLITS"); e && *e) {
    const int n = std::atoi(e);
    require(n >= 1 && n <= kMaxSplits, "invalid_argument", "HYBRIDCHAT_ATTN_SPLITS must be in [1, 32]");
    return n;
  }
  // asked once per device: every decode step of every layer comes here
  static std::atomic<int> sm_count[64];
  int device = 0;
  HC_CUDA_CHECK(cudaGetDevice(&device));
  int sms = device < 64 ? sm_count[device].load(std::memory_order_relaxed) : 0;
  if (sms == 0) {
    HC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (device < 64) sm_count[device].store(sms, std::memory_order_relaxed);
  }
  return attention_splits(rows, ctx, sms);
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

extern "C" int hc_cuda_attention_splits(int64_t rows, int64_t ctx, int* splits) {
  using namespace hc::cuda;
  *splits = 1;
  return entry([&] { *splits = decode_splits(rows, ctx); });
}

extern "C" int hc_cuda_paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool,
                                       int64_t pool_elems, int kv_dtype, const int32_t* tables, int64_t nseq,
                                       int64_t max_blocks, const int32_t* seq_of, const int32_t* npos, int64_t T,
                                       int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride,
                                       int64_t head_stride, int64_t block_size, int64_t window, int splits) {
  using namespace hc::cuda;
  return entry([&] {
    require(kv_dtype == HC_CUDA_F32 || kv_dtype == HC_CUDA_BF16, "bad_dtype", "the KV pool holds f32 or bf16");
    const int64_t bytes = pool_elems * (kv_dtype == HC_CUDA_F32 ? 4 : 2);
    Buffer<char> d_k(static_cast<const char*>(k_pool), bytes), d_v(static_cast<const char*>(v_pool), bytes);
    Buffer<float> d_q(q, T * NH * HD), d_out(T * NH * HD);
    Buffer<int32_t> d_tables(tables, nseq * max_blocks), d_seq(seq_of, T), d_npos(npos, T);
    int64_t ctx = 0;
    for (int64_t t = 0; t < T; t++) ctx = npos[t] > ctx ? npos[t] : ctx;
    if (splits == 0) splits = decode_splits(T * NH, window > 0 && window < ctx ? window : ctx);
    Buffer<float> d_part(splits > 1 ? T * NH * splits * (HD + 2) : 1);
    paged_attention(d_out.get(), d_q.get(), d_k.get(), d_v.get(), kv_dtype, d_tables.get(), max_blocks, nseq,
                    d_seq.get(), d_npos.get(), T, NH, NKV, HD, block_stride, head_stride, block_size, window, splits,
                    d_part.get(), 0);
    d_out.download(out);
  });
}
