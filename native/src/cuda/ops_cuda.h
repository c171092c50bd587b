/* The C API of libhybridchat_cuda.so, which the addon dlopens (native/src/addon_cuda.cc):
 * the CUDA twins of the kernels in native/src/cpu/ops.h and matmul.h, same shapes, same
 * argument order. The hc_cuda_<op> functions take HOST pointers: they copy their inputs to
 * device buffers, run the kernel and copy the outputs back (the op-test path). Outputs may
 * alias inputs on the host wherever the CPU twin allows it. The hc_cuda_dev_<op> functions
 * (resident.cu) take DEVICE pointers and copy nothing: the engine's forward on a device
 * (native/src/exec_cuda.cc) keeps weights, KV pool and activations resident and calls them.
 *
 * Every function returns 0 on success; otherwise nonzero, and hc_cuda_last_error_code()
 * / _message() say why (per thread): codes "cuda_unavailable" (no device or driver),
 * "out_of_memory", "invalid_argument", "unsupported", "bad_dtype", "cuda_error".
 * Plain C types only: the addon is built without CUDA headers. */
#ifndef HC_OPS_CUDA_H
#define HC_OPS_CUDA_H
#include <stddef.h>
#include <stdint.h>

/* Weight storage types; the same values as hc::DType. */
#define HC_CUDA_F32 0
#define HC_CUDA_BF16 1
#define HC_CUDA_F16 2
/* llama.cpp's block types (../quant.h), weights of matmul / matmul_backward only */
#define HC_CUDA_Q8_0 3
#define HC_CUDA_Q4_0 4
#define HC_CUDA_Q4_K 5

#if defined(__GNUC__)
#define HC_CUDA_API __attribute__((visibility("default")))
#else
#define HC_CUDA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

HC_CUDA_API const char* hc_cuda_last_error_code(void);
HC_CUDA_API const char* hc_cuda_last_error_message(void);

/* ---- devices (device.cu) ---- */
HC_CUDA_API int hc_cuda_device_count(int* count);
HC_CUDA_API int hc_cuda_device_name(int device, char* name, size_t len);
HC_CUDA_API int hc_cuda_device_memory(int device, size_t* free_bytes, size_t* total_bytes);

/* ---- forward ---- */
/* out[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N], may be NULL); w stored as dtype */
HC_CUDA_API int hc_cuda_matmul(float* out, const float* x, const void* w, int dtype, const float* bias, int64_t M,
                               int64_t N, int64_t K);
/* out[M,C] = x / rms(x) * weight[C] */
HC_CUDA_API int hc_cuda_rmsnorm(float* out, const float* x, const float* weight, int64_t M, int64_t C, float eps);
/* x[M,C] += add[M,C], then out[M,C] = rmsnorm(x)·weight: the residual add and the next pre-norm in one pass */
HC_CUDA_API int hc_cuda_residual_rmsnorm(float* x, float* out, const float* add, const float* weight, int64_t M,
                                         int64_t C, float eps);
/* hc_cuda_rope on q[T,NH,HD] and k[T,NKV,HD] in one launch */
HC_CUDA_API int hc_cuda_rope_qk(float* q, float* k, const int32_t* pos, const float* inv_freq, int64_t T, int64_t NH,
                                int64_t NKV, int64_t HD, float scaling);
/* in place on x[T,H,HD], HF rotate_half at positions pos[T]; tables built on the device */
HC_CUDA_API int hc_cuda_rope(float* x, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H, int64_t HD,
                             float scaling);
/* out[T,NH,HD] = causal GQA attention of q over contiguous k,v[S,NKV,HD]; query t at position S-T+t;
   window W > 0: only its last W keys (0 = all) */
HC_CUDA_API int hc_cuda_attention(float* out, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                                  int64_t NH, int64_t NKV, int64_t HD, int64_t window);
/* hc_cuda_dev_paged_attention on host arrays: k_pool, v_pool one layer's pool of pool_elems
   elements of kv_dtype, tables[nseq, max_blocks]; splits 0 = hc_cuda_attention_splits' pick */
HC_CUDA_API int hc_cuda_paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool,
                                        int64_t pool_elems, int kv_dtype, const int32_t* tables, int64_t nseq,
                                        int64_t max_blocks, const int32_t* seq_of, const int32_t* npos, int64_t T,
                                        int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride,
                                        int64_t head_stride, int64_t block_size, int64_t window, int splits);
/* out[N] = silu(gate[N]) * up[N] */
HC_CUDA_API int hc_cuda_swiglu(float* out, const float* gate, const float* up, int64_t N);
/* out[T,C] = table[tokens[t], :] as fp32; table [V,C] stored as dtype */
HC_CUDA_API int hc_cuda_embedding(float* out, const int32_t* tokens, const void* table, int dtype, int64_t T,
                                  int64_t C, int64_t V);
/* out[N] = a[N] + b[N] */
HC_CUDA_API int hc_cuda_residual(float* out, const float* a, const float* b, int64_t N);
/* bf16/f16 words <-> fp32, round to nearest even */
HC_CUDA_API int hc_cuda_to_f32(float* out, const uint16_t* src, int dtype, int64_t n);
HC_CUDA_API int hc_cuda_from_f32(uint16_t* out, const float* src, int dtype, int64_t n);

/* ---- backward: gradients first, then dout, then what the forward saved ---- */
/* dx[M,C] (overwritten), dweight[C] += */
HC_CUDA_API int hc_cuda_rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x,
                                         const float* weight, int64_t M, int64_t C, float eps);
/* in place on dx[T,H,HD] */
HC_CUDA_API int hc_cuda_rope_backward(float* dx, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H,
                                      int64_t HD, float scaling);
/* one sequence at positions 0..T-1: out[T,NH,HD], lse[T,NH]; window as hc_cuda_attention */
HC_CUDA_API int hc_cuda_attention_train_forward(float* out, float* lse, const float* q, const float* k,
                                                const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                                int64_t window);
/* dq[T,NH,HD], dk,dv[T,NKV,HD] (overwritten) */
HC_CUDA_API int hc_cuda_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                           const float* k, const float* v, const float* lse, int64_t T, int64_t NH,
                                           int64_t NKV, int64_t HD, int64_t window);
/* dgate[N], dup[N] (overwritten) */
HC_CUDA_API int hc_cuda_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                                        const float* up, int64_t N);
/* dtable[V,C] += dout[T,C] scattered to rows tokens[T] */
HC_CUDA_API int hc_cuda_embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                           int64_t C, int64_t V);
/* logp[T] = log softmax(logits[T,V])[targets[t]]; a negative target masks its row (0) */
HC_CUDA_API int hc_cuda_logprob(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V);
/* dlogits[T,V] = dlogp[t]·(onehot(targets[t]) − softmax(logits[t])) (overwritten) */
HC_CUDA_API int hc_cuda_logprob_backward(float* dlogits, const float* dlogp, const float* logits,
                                         const int32_t* targets, int64_t T, int64_t V);
/* dx[M,K] = dout·w (overwritten), dw[N,K] += doutᵀ·x, dbias[N] += Σ rows of dout; NULL skips one */
HC_CUDA_API int hc_cuda_matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x,
                                        const void* w, int dtype, int64_t M, int64_t N, int64_t K);

/* ---- resident state: device memory on the current device (resident.cu) ---- */
HC_CUDA_API int hc_cuda_set_device(int device);
HC_CUDA_API int hc_cuda_malloc(void** p, size_t bytes);
HC_CUDA_API int hc_cuda_free(void* p);
HC_CUDA_API int hc_cuda_upload(void* dst_device, const void* src_host, size_t bytes);
/* waits for the queued work: where a kernel fault surfaces */
HC_CUDA_API int hc_cuda_download(void* dst_host, const void* src_device, size_t bytes);
HC_CUDA_API int hc_cuda_synchronize(void);

/* ---- forward ops on DEVICE pointers (shapes as the host entry points above) ---- */
/* C[M,N] = alpha·op(A)·op(B) (+ beta·C) (+ bias[N]); A fp32, B stored as dtype; ta/tb: transpose */
HC_CUDA_API int hc_cuda_dev_gemm(float* c, const float* a, const void* b, int dtype, const float* bias, int64_t M,
                                 int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc, int ta, int tb,
                                 float alpha, float beta);
HC_CUDA_API int hc_cuda_dev_rmsnorm(float* out, const float* x, const float* weight, int64_t M, int64_t C, float eps);
/* cos,sin[T,half] of positions pos[T] */
HC_CUDA_API int hc_cuda_dev_rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq,
                                        int64_t T, int64_t half, float scaling);
HC_CUDA_API int hc_cuda_dev_rope(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD);
HC_CUDA_API int hc_cuda_dev_rope_qk(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH,
                                    int64_t NKV, int64_t HD);
HC_CUDA_API int hc_cuda_dev_residual_rmsnorm(float* x, float* out, const float* add, const float* weight, int64_t M,
                                             int64_t C, float eps);
/* token ids are NOT checked here: the caller has */
HC_CUDA_API int hc_cuda_dev_embedding(float* out, const int32_t* tokens, const void* table, int dtype, int64_t T,
                                      int64_t C);
HC_CUDA_API int hc_cuda_dev_residual(float* out, const float* a, const float* b, int64_t N);
HC_CUDA_API int hc_cuda_dev_swiglu(float* out, const float* gate, const float* up, int64_t N);
/* the paged KV pool of native/src/kvcache.h (one layer's k/v base; strides in elements of
   kv_dtype, HC_CUDA_F32 or HC_CUDA_BF16: written rounded to nearest even, read widened);
   tables[nseq, max_blocks] the sequences' block ids, seq_of[T] each token's sequence */
HC_CUDA_API int hc_cuda_dev_kv_write(void* k_pool, void* v_pool, const float* k, const float* v,
                                     const int32_t* tables, int64_t max_blocks, const int32_t* seq_of,
                                     const int32_t* pos, int64_t T, int64_t NKV, int64_t HD, int64_t block_stride,
                                     int64_t head_stride, int64_t block_size, int kv_dtype);
/* out[T,NH,HD]: query t over keys [0, npos[t]) of its sequence (window W > 0: the last W), fp32
   accumulation. A step with prefills (T > nseq) runs the flash kernel over the packed batch; a
   decode step (T == nseq) splits each row's keys `splits` ways, part[T*NH*splits*(HD+2)]
   device scratch when splits > 1 (hc_cuda_attention_splits picks the count). */
HC_CUDA_API int hc_cuda_dev_paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool,
                                            const int32_t* tables, int64_t max_blocks, const int32_t* seq_of,
                                            const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                            int64_t block_stride, int64_t head_stride, int64_t block_size,
                                            int64_t window, int kv_dtype, int64_t nseq, int splits, float* part);
/* the decode split count for `rows` (query, head) rows of at most `ctx` keys on the current
   device: from its multiprocessor count, or HYBRIDCHAT_ATTN_SPLITS=N */
HC_CUDA_API int hc_cuda_attention_splits(int64_t rows, int64_t ctx, int* splits);
/* out[R,C] = x[rows[r], :] */
HC_CUDA_API int hc_cuda_dev_gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C);


/* ---- training on DEVICE pointers (train_resident.cu; shapes as the host entry points) ---- */
/* dx[M,K] = beta·dx + dout·w; dw[N,K] += doutᵀ·x, dbias[N] += Σ rows of dout; NULL skips one */
HC_CUDA_API int hc_cuda_dev_linear_backward(float* dx, float beta, float* dw, float* dbias, const float* dout,
                                            const float* x, const void* w, int dtype, int64_t M, int64_t N, int64_t K);
/* rinv[M] scratch; dweight may be NULL (frozen) */
HC_CUDA_API int hc_cuda_dev_rmsnorm_backward(float* dx, float* dweight, float* rinv, const float* dout,
                                             const float* x, const float* weight, int64_t M, int64_t C, float eps);
HC_CUDA_API int hc_cuda_dev_rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H,
                                          int64_t HD);
HC_CUDA_API int hc_cuda_dev_attention_train_forward(float* out, float* lse, const float* q, const float* k,
                                                    const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                                    int64_t window);
/* delta[T,NH] scratch */
HC_CUDA_API int hc_cuda_dev_attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                                               const float* q, const float* k, const float* v, const float* lse,
                                               int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window);
HC_CUDA_API int hc_cuda_dev_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                                            const float* up, int64_t N);
HC_CUDA_API int hc_cuda_dev_embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                               int64_t C);
HC_CUDA_API int hc_cuda_dev_logprob(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V);
HC_CUDA_API int hc_cuda_dev_logprob_backward(float* dlogits, const float* dlogp, const float* logits,
                                             const int32_t* targets, int64_t T, int64_t V);
/* mask[rows, cols] ∈ {0, keep}: columns [c0, c0 + cols) of a [rows, ld] input's mask, whose element e is dropped
   when unit(key, e) < p (../train/adapter.h dropout_mask's stream) */
HC_CUDA_API int hc_cuda_dev_dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p,
                                         uint64_t key, float keep);
/* out[n] = a·b, or out += a·b with accumulate */
HC_CUDA_API int hc_cuda_dev_mul(float* out, const float* a, const float* b, int64_t n, int accumulate);
/* values[T] = xf[T,C]·vh[C] (double accumulation); its backward: dxf += g⊗vh, dvh[C] += gᵀ·xf (NULL skips) */
HC_CUDA_API int hc_cuda_dev_value_head(float* values, const float* xf, const float* vh, int64_t T, int64_t C);
HC_CUDA_API int hc_cuda_dev_value_head_backward(float* dxf, float* dvh, const float* g, const float* xf,
                                                const float* vh, int64_t T, int64_t C);
HC_CUDA_API int hc_cuda_dev_copy(void* dst, const void* src, size_t bytes);
HC_CUDA_API int hc_cuda_dev_zero(void* p, size_t bytes);
/* *acc += Σ g[n]² in double; partials: 256 doubles of device scratch */
HC_CUDA_API int hc_cuda_dev_sum_squares(double* acc, double* partials, const float* g, int64_t n);
/* torch.optim.AdamW's update with the scalars of ../train/params.h AdamW; grad zeroed */
HC_CUDA_API int hc_cuda_dev_adamw(float* data, float* grad, float* m, float* v, int64_t n, float clip, float decay,
                                  float b1, float b2, float step_size, float bc2_sqrt, float eps);
/* p[n] = value (a released ZeRO-3 tensor is NaN-filled: ../train/zero.h) */
HC_CUDA_API int hc_cuda_dev_fill(float* p, int64_t n, float value);
/* ---- the GEMM behind hc_cuda_dev_gemm (cublaslt.cu) ---- */
/* "cublaslt" when libcublasLt loaded (f32/bf16/f16 weights go through it), else "builtin" */
HC_CUDA_API const char* hc_cuda_gemm_backend(void);
/* the libcublasLt loaded ("" when none), the paths tried (one a line), why none loaded ("" when one did) */
HC_CUDA_API const char* hc_cuda_blas_path(void);
HC_CUDA_API const char* hc_cuda_blas_searched(void);
HC_CUDA_API const char* hc_cuda_blas_error(void);
/* cublasLtGetVersion() (e.g. 120903), 0 when none loaded */
HC_CUDA_API int hc_cuda_blas_version(void);

/* ---- batched multi-adapter LoRA (lora.cu): Punica's BGMV over a packed batch ---- */
/* One adapter's LoRA on one linear: A [rank, K] with row stride lda >= K and B [N, rank] fp32,
   scale its alpha/rank (negative: undoes a merged delta); rank 0 = nothing on this linear.
   A tensor-parallel rank's shard: a row-parallel linear reads A's columns [c0, c0 + K) of
   the whole A (a = A + c0, lda = the linear's input width); a column-parallel one B's rows
   [n0, n0 + N) (b = B + n0·rank, contiguous). */
typedef struct HcLoraEntry {
  const float* a;
  const float* b;
  int32_t rank;
  float scale;
  int64_t lda;
} HcLoraEntry;
/* out[t,:] += e.scale·(x[t,:]·e.aᵀ)·e.bᵀ with e = entries[slot[t]], for every row t of T whose
   slot[t] >= 0 (−1: no adapter); one shrink and one expand launch whatever the adapters.
   Device pointers (the entries' a/b too); u [T, max_rank] scratch, max_rank >= every rank. */
HC_CUDA_API int hc_cuda_dev_lora(float* out, const float* x, const HcLoraEntry* entries, const int32_t* slot, float* u,
                                 int64_t T, int64_t N, int64_t K, int64_t max_rank);
/* The same on host arrays (the op test): n adapters, a[e] rank[e] rows lda[e] apart (the first
   K floats of each read: (rank[e] − 1)·lda[e] + K in all), b[e] [N, rank[e]]. */
HC_CUDA_API int hc_cuda_lora(float* out, const float* x, const int32_t* slot, int64_t T, int64_t N, int64_t K,
                             int64_t n, const float* const* a, const int64_t* lda, const float* const* b,
                             const int32_t* rank, const float* scale);

/* ---- CUDA graphs of the forward's stream (graph.cu) ---- */
/* Starts capturing the calling thread's forward stream: the hc_cuda_dev_* ops after it are
   recorded, not run, until hc_cuda_graph_end, which instantiates them as *exec (the capture's
   error, e.g. cudaErrorStreamCaptureUnsupported after a synchronous copy or an allocation,
   when it failed). hc_cuda_graph_launch replays it on that stream. */
HC_CUDA_API int hc_cuda_graph_begin(void);
HC_CUDA_API int hc_cuda_graph_end(void** exec);
HC_CUDA_API int hc_cuda_graph_launch(void* exec);
HC_CUDA_API int hc_cuda_graph_destroy(void* exec);
/* changes whenever the library freed a buffer of its own that a captured graph may use */
HC_CUDA_API int64_t hc_cuda_graph_buffers_epoch(void);

#ifdef __cplusplus
}
#endif

/* Every entry point above, for the loader's symbol table: X(name). */
#define HC_CUDA_ENTRY_POINTS(X)                                                                                    \
  X(hc_cuda_last_error_code)                                                                                       \
  X(hc_cuda_last_error_message)                                                                                    \
  X(hc_cuda_device_count)                                                                                          \
  X(hc_cuda_device_name)                                                                                           \
  X(hc_cuda_device_memory)                                                                                         \
  X(hc_cuda_matmul)                                                                                                \
  X(hc_cuda_rmsnorm)                                                                                               \
  X(hc_cuda_rope)                                                                                                  \
  X(hc_cuda_attention)                                                                                             \
  X(hc_cuda_swiglu)                                                                                                \
  X(hc_cuda_embedding)                                                                                             \
  X(hc_cuda_residual)                                                                                              \
  X(hc_cuda_to_f32)                                                                                                \
  X(hc_cuda_from_f32)                                                                                              \
  X(hc_cuda_rmsnorm_backward)                                                                                      \
  X(hc_cuda_rope_backward)                                                                                         \
  X(hc_cuda_attention_train_forward)                                                                               \
  X(hc_cuda_attention_backward)                                                                                    \
  X(hc_cuda_swiglu_backward)                                                                                       \
  X(hc_cuda_embedding_backward)                                                                                    \
  X(hc_cuda_logprob)                                                                                               \
  X(hc_cuda_logprob_backward)                                                                                      \
  X(hc_cuda_matmul_backward)                                                                                       \
  X(hc_cuda_set_device)                                                                                            \
  X(hc_cuda_malloc)                                                                                                \
  X(hc_cuda_free)                                                                                                  \
  X(hc_cuda_upload)                                                                                                \
  X(hc_cuda_download)                                                                                              \
  X(hc_cuda_synchronize)                                                                                           \
  X(hc_cuda_dev_gemm)                                                                                              \
  X(hc_cuda_dev_rmsnorm)                                                                                           \
  X(hc_cuda_dev_rope_tables)                                                                                       \
  X(hc_cuda_dev_rope)                                                                                              \
  X(hc_cuda_dev_embedding)                                                                                         \
  X(hc_cuda_dev_residual)                                                                                          \
  X(hc_cuda_dev_swiglu)                                                                                            \
  X(hc_cuda_dev_kv_write)                                                                                          \
  X(hc_cuda_dev_paged_attention)                                                                                   \
  X(hc_cuda_dev_gather_rows)                                                                                       \
  X(hc_cuda_dev_linear_backward)                                                                                   \
  X(hc_cuda_dev_rmsnorm_backward)                                                                                  \
  X(hc_cuda_dev_rope_backward)                                                                                     \
  X(hc_cuda_dev_attention_train_forward)                                                                           \
  X(hc_cuda_dev_attention_backward)                                                                                \
  X(hc_cuda_dev_swiglu_backward)                                                                                   \
  X(hc_cuda_dev_embedding_backward)                                                                                \
  X(hc_cuda_dev_logprob)                                                                                           \
  X(hc_cuda_dev_logprob_backward)                                                                                  \
  X(hc_cuda_dev_dropout_mask)                                                                                      \
  X(hc_cuda_dev_mul)                                                                                               \
  X(hc_cuda_dev_value_head)                                                                                        \
  X(hc_cuda_dev_value_head_backward)                                                                               \
  X(hc_cuda_dev_copy)                                                                                              \
  X(hc_cuda_dev_zero)                                                                                              \
  X(hc_cuda_dev_sum_squares)                                                                                       \
  X(hc_cuda_dev_adamw)                                                                                             \
  X(hc_cuda_gemm_backend)                                                                                          \
  X(hc_cuda_blas_path)                                                                                             \
  X(hc_cuda_blas_searched)                                                                                         \
  X(hc_cuda_blas_error)                                                                                            \
  X(hc_cuda_blas_version)                                                                                          \
  X(hc_cuda_dev_fill)                                                                                              \
  X(hc_cuda_paged_attention)                                                                                       \
  X(hc_cuda_attention_splits)                                                                                      \
  X(hc_cuda_residual_rmsnorm)                                                                                      \
  X(hc_cuda_rope_qk)                                                                                               \
  X(hc_cuda_dev_residual_rmsnorm)                                                                                  \
  X(hc_cuda_dev_rope_qk)                                                                                           \
  X(hc_cuda_dev_lora)                                                                                              \
  X(hc_cuda_lora)                                                                                                  \
  X(hc_cuda_graph_begin)                                                                                           \
  X(hc_cuda_graph_end)                                                                                             \
  X(hc_cuda_graph_launch)                                                                                          \
  X(hc_cuda_graph_destroy)                                                                                         \
  X(hc_cuda_graph_buffers_epoch)

#endif
