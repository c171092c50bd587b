// The model's layer kernels other than matmul (see matmul.h), llm.c style:
// <op>_forward(out, ..., inp, weights..., dims, pool). Shape letters:
// M rows (tokens), C channels, I intermediate, T tokens, H heads, NH query heads,
// NKV key/value heads, HD head dim, V vocab, S key positions.
// `<op>_backward(dinp, dweights..., dout, saved..., dims, pool)` sits beside each forward:
// gradients first, then the upstream gradient, then what the forward saved. Weight
// gradients accumulate (+=) so micro-batches add up; input gradients are overwritten.
// All take fp32 activations; `out` may alias the input where noted.
#pragma once
#include <cstdint>

#include "../cuda/ops_cuda.h"
#include "../dtype.h"
#include "../threadpool.h"

namespace hc::cpu {

// out[M,C] = inp[M,C] / sqrt(mean(inp²) + eps) * weight[C]   (out may alias inp)
void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t C, float eps,
                     ThreadPool& pool);
// dinp[M,C] = ∂L/∂inp (may alias dout), dweight[C] += ∂L/∂weight (null: frozen, skipped);
// deterministic for any thread count.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      int64_t M, int64_t C, float eps, ThreadPool& pool);

// cos/sin tables for RoPE: cos,sin[T,HD/2] = cos/sin(pos[t] * invFreq[i]) * scaling.
// Built once per forward and shared by every layer, q and k.
void rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq, int64_t T,
                 int64_t half, float scaling);
// In place on x[T,H,HD], HF rotate_half: pairs (i, i+HD/2) rotate by the tables' angle of row t.
void rope_forward(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                  ThreadPool& pool);
// In place on dx[T,H,HD] (the gradient of rope_forward's output on entry, of its input
// on return): the transposed rotation, with the same tables.
void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                   ThreadPool& pool);

// Where one sequence's keys and values for one layer live: either contiguous
// [S,NKV,HD] arrays or blocks of a paged cache, elements of `dtype` (f32, bf16 or f16:
// kv_elem.h; every span of one call the same). Key j of kv head g is at element
//   k + blocks[j / block_size] * block_stride + g * head_stride + (j % block_size) * token_stride.
struct KVSpan {
  const void* k;
  const void* v;
  const int32_t* blocks;
  int64_t block_stride;
  int64_t head_stride;
  int64_t token_stride;
  int64_t block_size;
  DType dtype = DType::F32;
};

// out[T,NH,HD] = causal GQA attention with softmax(q·kᵀ/sqrt(HD)) over keys [0, npos[t])
// of span spans[seq_of[t]] — or, with a sliding window W > 0, over the last W of them
// (keys [npos[t] − W, npos[t]); earlier blocks are never read, so they may be freed);
// query head h reads kv head h / (NH/NKV). Online softmax.
void attention_forward(float* out, const float* q, const KVSpan* spans, const int32_t* seq_of,
                       const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window,
                       ThreadPool& pool);

// Training attention over ONE sequence at positions 0..T-1 (a batch of sequences is
// one call per sequence), contiguous q[T,NH,HD], k,v[T,NKV,HD]:
// out[T,NH,HD] as attention_forward computes it, plus lse[T,NH] = logsumexp of each
// query/head's scaled scores, which is all attention_backward needs besides q, k, v.
// window W > 0: query i sees keys [i − W + 1, i] only (0: all of [0, i]).
void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T,
                             int64_t NH, int64_t NKV, int64_t HD, int64_t window, ThreadPool& pool);
// dq[T,NH,HD], dk[T,NKV,HD], dv[T,NKV,HD] (all overwritten; dk/dv summed over the query
// heads of each kv group) from dout[T,NH,HD] and the forward's q, k, v, lse[T,NH].
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                        int64_t window, ThreadPool& pool);

// out[M,I] = silu(gate[M,I]) * up[M,I]   (out may alias gate or up)
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, ThreadPool& pool);
// dgate[N], dup[N] from dout[N] and the forward's gate[N], up[N] (any may alias any)
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N,
                     ThreadPool& pool);

// out[T,C] = table[tokens[t], :] converted to fp32 (table [V,C] stored as dtype)
void embedding_forward(float* out, const int32_t* tokens, const void* table, DType dtype, int64_t T,
                       int64_t C);
// dtable[V,C] += dout[T,C] scattered to rows tokens[T] (fp32 gradient whatever the table's dtype)
void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C);

// The training head (DESIGN.md's boundary): logp[T] = log softmax(logits[T,V])[targets[t]];
// a negative target masks its row (logp 0, zero gradient).
void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                     ThreadPool& pool);
// dlogits[T,V] = dlogp[t] · (onehot(targets[t]) − softmax(logits[t])) (overwritten; may alias logits)
void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets, int64_t T,
                      int64_t V, ThreadPool& pool);

// out[N] = a[N] + b[N]   (out may alias a or b)
void residual_forward(float* out, const float* a, const float* b, int64_t N);

// Row conversions between storage types and fp32 (round to nearest even; q8_0/q4_0 as
// llama.cpp quantizes, n a multiple of 32).
void to_f32(float* out, const void* src, DType dtype, int64_t n);
void from_f32(void* out, const float* src, DType dtype, int64_t n);

// True when this CPU runs the *_avx2.cc kernels (AVX2 + FMA + F16C).
bool use_avx2();

// One adapter's LoRA on one linear (A [rank, K] of row stride lda, B [N, rank]; the C struct the CUDA twin reads too).
using LoraEntry = HcLoraEntry;
// out[t,:] += e.scale·(x[t,:]·e.aᵀ)·e.bᵀ, e = entries[slot[t]], for every row t with slot[t] >= 0
// (batched multi-adapter LoRA, lora.cc); u [T, max_rank] scratch, max_rank >= every entry's rank
void lora_batched(float* out, const float* x, const LoraEntry* entries, const int32_t* slot, float* u, int64_t T,
                  int64_t N, int64_t K, int64_t max_rank, ThreadPool& pool);

}  // namespace hc::cpu
