// The launchers: each op on DEVICE pointers, queued on `stream`, nothing copied or
// synchronised. The extern "C" entry points (ops_cuda.h) wrap them for host data; a
// model that keeps its activations on the GPU calls these directly. Shapes and aliasing
// as the CPU twins in ../cpu/ops.h and ../cpu/matmul.h.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "ops_cuda.h"

namespace hc::cuda {

// ---- forward ----
void matmul(float* out, const float* x, const void* w, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
            cudaStream_t stream);
void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t C, float eps,
                     cudaStream_t stream);
// x[M,C] += add, then out = rmsnorm(x)·weight (out must not alias x or add)
void residual_rmsnorm_forward(float* x, float* out, const float* add, const float* weight, int64_t M, int64_t C,
                              float eps, cudaStream_t stream);
// cos,sin[T,half] = cos/sin(pos[t]·inv_freq[i]) · scaling, the angle in double
void rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq, int64_t T, int64_t half,
                 float scaling, cudaStream_t stream);
void rope_forward(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                  cudaStream_t stream);
// rope_forward on q[T,NH,HD] and k[T,NKV,HD] in one launch
void rope_qk_forward(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH, int64_t NKV,
                     int64_t HD, cudaStream_t stream);
// Causal GQA over contiguous k,v[S,NKV,HD]: query t sees keys [0, S−T+t], or with a
// sliding window W > 0 only the last W of them. lse[T,NH] (may be null) receives each
// row's logsumexp of the scaled scores.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                       int64_t NH, int64_t NKV, int64_t HD, int64_t window, cudaStream_t stream);
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, cudaStream_t stream);
void embedding_forward(float* out, const int32_t* tokens, const void* table, int dtype, int64_t T, int64_t C,
                       cudaStream_t stream);
void residual_forward(float* out, const float* a, const float* b, int64_t N, cudaStream_t stream);
void to_f32(float* out, const uint16_t* src, int dtype, int64_t n, cudaStream_t stream);
// C = alpha·op(A)·op(B) (+ beta·C) (+ bias), the one GEMM (gemm.cuh) with leading dimensions
void gemm_launch(float* C, const float* A, const void* B, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
                 int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb, float alpha, float beta, cudaStream_t stream);
// The same through cuBLASLt (cublaslt.cu), f32/bf16/f16 B only, when blas_loaded()
bool blas_loaded();
void blas_gemm(float* C, const float* A, const void* B, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
               int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb, float alpha, float beta, cudaStream_t stream);

// ---- serving over the paged KV pool (paged_attention.cu; layout of ../kvcache.h) ----
// tables[nseq, max_blocks]: each sequence's block ids; pool offsets in elements of
// kv_dtype (HC_CUDA_F32 or HC_CUDA_BF16).
// A decode step (T <= nseq: one query per sequence) splits each row's keys `splits` ways,
// part: T·NH·splits·(HD + 2) floats of scratch when splits > 1; a step with prefills runs
// the flash kernel over the packed batch (splits unused).
void paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool, int kv_dtype,
                     const int32_t* tables, int64_t max_blocks, int64_t nseq, const int32_t* seq_of,
                     const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride,
                     int64_t head_stride, int64_t block_size, int64_t window, int splits, float* part,
                     cudaStream_t stream);
// The split count of a decode step of `rows` (query, head) rows over at most `ctx` keys on
// the current device (HYBRIDCHAT_ATTN_SPLITS=N forces N)
int decode_splits(int64_t rows, int64_t ctx);
// k,v[T,NKV,HD] of the step's tokens at positions pos[T] into the pool (rounded to bf16 there)
void kv_write(void* k_pool, void* v_pool, int kv_dtype, const float* k, const float* v, const int32_t* tables,
              int64_t max_blocks, const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV, int64_t HD,
              int64_t block_stride, int64_t head_stride, int64_t block_size, cudaStream_t stream);
// out[R,C] = x[rows[r], :]
void gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C, cudaStream_t stream);
void from_f32(uint16_t* out, const float* src, int dtype, int64_t n, cudaStream_t stream);

// out[t,:] += scale_e·(x[t,:]·A_eᵀ)·B_eᵀ, e = entries[slot[t]] (lora.cu; ops_cuda.h hc_cuda_dev_lora)
void lora_batched(float* out, const float* x, const HcLoraEntry* entries, const int32_t* slot, float* u, int64_t T,
                  int64_t N, int64_t K, int64_t max_rank, cudaStream_t stream);

// ---- the serving forward's stream and its graphs (graph.cu) ----
// The stream hc_cuda_dev_* forward ops queue on (one per device and host thread).
cudaStream_t forward_stream();
// Bumped whenever the library frees a buffer of its own that kernels read or write (the
// cuBLASLt rounding buffer): graphs captured before hold its old address.
std::atomic<int64_t>& buffers_epoch();

// ---- backward ----
// rinv[M] is scratch (the rows' 1/rms, handed from the row pass to the column pass)
void rmsnorm_backward(float* dinp, float* dweight, float* rinv, const float* dout, const float* inp,
                      const float* weight, int64_t M, int64_t C, float eps, cudaStream_t stream);
void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                   cudaStream_t stream);
// delta[T,NH] is scratch (Σ_j P·dP per query row)
void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* q,
                        const float* k, const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV,
                        int64_t HD, int64_t window, cudaStream_t stream);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N,
                     cudaStream_t stream);
void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C,
                        cudaStream_t stream);
void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                     cudaStream_t stream);
void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets, int64_t T,
                      int64_t V, cudaStream_t stream);
void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const void* w, int dtype,
                     int64_t M, int64_t N, int64_t K, cudaStream_t stream);

}  // namespace hc::cuda
