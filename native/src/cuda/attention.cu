// Causal grouped-query attention over contiguous k,v[S,NKV,HD], one warp per
// (query, head) row with an online softmax (running max and sum), so no score matrix
// is stored. Lane l holds dims l, l+32, …: HD up to 32·NR in registers. The same kernel
// serves inference (query t at position S−T+t) and the training forward (S = T, and
// the row's logsumexp saved for the backward).
#include "attention.cuh"
#include "launch.cuh"

namespace hc::cuda {

template <int NR>
__global__ void __launch_bounds__(kAttnThreads)
attention_kernel(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T, int64_t NH,
                 int64_t NKV, int HD, int64_t offset, int64_t window, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kAttnThreads / 32) + (threadIdx.x >> 5);
  if (row >= T * NH) return;  // whole warps leave together
  const int64_t t = row / NH, h = row % NH, g = h / (NH / NKV), npos = offset + t + 1;
  float qr[NR], acc[NR];
  load_row<NR>(qr, q + row * HD, HD, lane);
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = window > 0 && npos > window ? npos - window : 0; j < npos; j++) {
    const int64_t kv = (j * NKV + g) * HD;
    online_softmax_step<NR>(acc, m, l, row_dot<NR>(qr, k + kv, HD, lane) * scale, v + kv, HD, lane);
  }
  store_softmax_row<NR>(out + row * HD, acc, l, HD, lane);
  if (lse && lane == 0) lse[row] = m + logf(l);
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                       int64_t NH, int64_t NKV, int64_t HD, int64_t window, cudaStream_t stream) {
  check_attention_shapes(T, S, NH, NKV, HD);
  require(window >= 0, "invalid_argument", "attention: window must be >= 0");
  if (T == 0 || NH == 0) return;
  const unsigned grid = blocks_for(T * NH, kAttnThreads / 32);
  const float scale = 1.0f / sqrtf(static_cast<float>(HD));
  const int hd = static_cast<int>(HD);
  switch (attention_regs(HD)) {
#define HC_ATTN_CASE(NR)                                                                                    \
  case NR:                                                                                                  \
    attention_kernel<NR><<<grid, kAttnThreads, 0, stream>>>(out, lse, q, k, v, T, NH, NKV, hd, S - T, window, scale); \
    break;
    HC_ATTN_CASE(1) HC_ATTN_CASE(2) HC_ATTN_CASE(4) HC_ATTN_CASE(8) HC_ATTN_CASE(16)
#undef HC_ATTN_CASE
  }
  HC_CUDA_LAUNCHED("attention_kernel");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_attention(float* out, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                                 int64_t NH, int64_t NKV, int64_t HD, int64_t window) {
  using namespace hc::cuda;
  return entry([&] {
    check_attention_shapes(T, S, NH, NKV, HD);
    Buffer<float> d_q(q, T * NH * HD), d_k(k, S * NKV * HD), d_v(v, S * NKV * HD), d_out(T * NH * HD);
    attention_forward(d_out.get(), nullptr, d_q.get(), d_k.get(), d_v.get(), T, S, NH, NKV, HD, window, 0);
    d_out.download(out);
  });
}

extern "C" int hc_cuda_attention_train_forward(float* out, float* lse, const float* q, const float* k,
                                               const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                               int64_t window) {
  using namespace hc::cuda;
  return entry([&] {
    check_attention_shapes(T, T, NH, NKV, HD);
    Buffer<float> d_q(q, T * NH * HD), d_k(k, T * NKV * HD), d_v(v, T * NKV * HD), d_out(T * NH * HD),
        d_lse(T * NH);
    attention_forward(d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), T, T, NH, NKV, HD, window, 0);
    d_out.download(out);
    d_lse.download(lse);
  });
}
