// The model's layer kernels other than matmul (see matmul.h), llm.c style:
// <op>_forward(out, ..., inp, weights..., dims, pool). Shape letters:
// M rows (tokens), C channels, I intermediate, T tokens, H heads, NH query heads,
// NKV key/value heads, HD head dim, V vocab, S key positions.
// `<op>_backward(dinp, dweights..., dout, saved...)` will sit beside each forward.
// All take fp32 activations; `out` may alias the input where noted.
#pragma once
#include <cstdint>

#include "../dtype.h"
#include "../threadpool.h"

namespace hc::cpu {

// out[M,C] = inp[M,C] / sqrt(mean(inp²) + eps) * weight[C]   (out may alias inp)
void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t C, float eps,
                     ThreadPool& pool);

// cos/sin tables for RoPE: cos,sin[T,HD/2] = cos/sin(pos[t] * invFreq[i]) * scaling.
// Built once per forward and shared by every layer, q and k.
void rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq, int64_t T,
                 int64_t half, float scaling);
// In place on x[T,H,HD], HF rotate_half: pairs (i, i+HD/2) rotate by the tables' angle of row t.
void rope_forward(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                  ThreadPool& pool);

// Where one sequence's keys and values for one layer live: either contiguous
// [S,NKV,HD] arrays or blocks of a paged cache. Key j of kv head g is at
//   k + blocks[j / block_size] * block_stride + g * head_stride + (j % block_size) * token_stride.
struct KVSpan {
  const float* k;
  const float* v;
  const int32_t* blocks;
  int64_t block_stride;
  int64_t head_stride;
  int64_t token_stride;
  int64_t block_size;
};

// out[T,NH,HD] = causal GQA attention with softmax(q·kᵀ/sqrt(HD)) over keys [0, npos[t])
// of span spans[seq_of[t]]; query head h reads kv head h / (NH/NKV). Online softmax.
void attention_forward(float* out, const float* q, const KVSpan* spans, const int32_t* seq_of,
                       const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, ThreadPool& pool);

// out[M,I] = silu(gate[M,I]) * up[M,I]   (out may alias gate or up)
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, ThreadPool& pool);

// out[T,C] = table[tokens[t], :] converted to fp32 (table [V,C] stored as dtype)
void embedding_forward(float* out, const int32_t* tokens, const void* table, DType dtype, int64_t T,
                       int64_t C);

// out[N] = a[N] + b[N]   (out may alias a or b)
void residual_forward(float* out, const float* a, const float* b, int64_t N);

// Row conversions between storage types and fp32 (round to nearest even).
void to_f32(float* out, const void* src, DType dtype, int64_t n);
void from_f32(void* out, const float* src, DType dtype, int64_t n);

// True when this CPU runs the *_avx2.cc kernels (AVX2 + FMA + F16C).
bool use_avx2();

}  // namespace hc::cpu
