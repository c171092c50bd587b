// Backward of the training attention (one sequence at positions 0..T−1), with
// P = softmax(scale·q·kᵀ) rebuilt from the saved logsumexp and dP = dout·vᵀ:
//   dS = P∘(dP − D), D_i = Σ_j P_ij·dP_ij;
//   dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = Pᵀ·dout  (summed over a kv group's heads).
// Two kernels, warps as in the forward: one per (query, head) row computes D and dq;
// one per (key, kv head) row walks every query i >= j of every head of its group for dk
// and dv. No atomics: every sum has a fixed order.
#include "attention.cuh"
#include "launch.cuh"

namespace hc::cuda {

template <int NR>
__global__ void __launch_bounds__(kAttnThreads)
attention_dq_kernel(float* dq, float* delta, const float* dout, const float* q, const float* k, const float* v,
                    const float* lse, int64_t T, int64_t NH, int64_t NKV, int HD, int64_t window, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kAttnThreads / 32) + (threadIdx.x >> 5);
  if (row >= T * NH) return;
  const int64_t i = row / NH, h = row % NH, g = h / (NH / NKV);
  const int64_t lo = window > 0 && i >= window ? i - window + 1 : 0;  // the first key row i sees
  float qr[NR], dor[NR], acc[NR];
  load_row<NR>(qr, q + row * HD, HD, lane);
  load_row<NR>(dor, dout + row * HD, HD, lane);
  const float l = lse[row];
  float D = 0.0f;
  for (int64_t j = lo; j <= i; j++) {
    const int64_t kv = (j * NKV + g) * HD;
    const float p = expf(row_dot<NR>(qr, k + kv, HD, lane) * scale - l);
    D = fmaf(p, row_dot<NR>(dor, v + kv, HD, lane), D);
  }
#pragma unroll
  for (int r = 0; r < NR; r++) acc[r] = 0.0f;
  for (int64_t j = lo; j <= i; j++) {
    const int64_t kv = (j * NKV + g) * HD;
    const float p = expf(row_dot<NR>(qr, k + kv, HD, lane) * scale - l);
    const float ds = p * (row_dot<NR>(dor, v + kv, HD, lane) - D);
#pragma unroll
    for (int r = 0; r < NR; r++) {
      const int d = lane + 32 * r;
      if (d < HD) acc[r] = fmaf(ds, k[kv + d], acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < NR; r++) {
    const int d = lane + 32 * r;
    if (d < HD) dq[row * HD + d] = scale * acc[r];
  }
  if (lane == 0) delta[row] = D;
}

template <int NR>
__global__ void __launch_bounds__(kAttnThreads)
attention_dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                     const float* lse, const float* delta, int64_t T, int64_t NH, int64_t NKV, int HD, int64_t window,
                     float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kAttnThreads / 32) + (threadIdx.x >> 5);
  if (row >= T * NKV) return;
  const int64_t j = row / NKV, g = row % NKV, group = NH / NKV;
  const int64_t end = window > 0 && j + window < T ? j + window : T;  // the queries that see key j: [j, end)
  float kr[NR], vr[NR], dk_acc[NR], dv_acc[NR];
  load_row<NR>(kr, k + row * HD, HD, lane);
  load_row<NR>(vr, v + row * HD, HD, lane);
#pragma unroll
  for (int r = 0; r < NR; r++) dk_acc[r] = dv_acc[r] = 0.0f;
  for (int64_t h = g * group; h < (g + 1) * group; h++)
    for (int64_t i = j; i < end; i++) {
      const int64_t qrow = i * NH + h;
      const float* qi = q + qrow * HD;
      const float* doi = dout + qrow * HD;
      const float p = expf(row_dot<NR>(kr, qi, HD, lane) * scale - lse[qrow]);
      const float ds = p * (row_dot<NR>(vr, doi, HD, lane) - delta[qrow]);
#pragma unroll
      for (int r = 0; r < NR; r++) {
        const int d = lane + 32 * r;
        if (d < HD) {
          dv_acc[r] = fmaf(p, doi[d], dv_acc[r]);
          dk_acc[r] = fmaf(ds, qi[d], dk_acc[r]);
        }
      }
    }
#pragma unroll
  for (int r = 0; r < NR; r++) {
    const int d = lane + 32 * r;
    if (d < HD) {
      dk[row * HD + d] = scale * dk_acc[r];
      dv[row * HD + d] = dv_acc[r];
    }
  }
}

template <int NR>
static void attention_backward_launch(float* dq, float* dk, float* dv, float* delta, const float* dout,
                                      const float* q, const float* k, const float* v, const float* lse, int64_t T,
                                      int64_t NH, int64_t NKV, int HD, int64_t window, float scale,
                                      cudaStream_t stream) {
  attention_dq_kernel<NR><<<blocks_for(T * NH, kAttnThreads / 32), kAttnThreads, 0, stream>>>(
      dq, delta, dout, q, k, v, lse, T, NH, NKV, HD, window, scale);
  HC_CUDA_LAUNCHED("attention_dq_kernel");
  attention_dkv_kernel<NR><<<blocks_for(T * NKV, kAttnThreads / 32), kAttnThreads, 0, stream>>>(
      dk, dv, dout, q, k, v, lse, delta, T, NH, NKV, HD, window, scale);
  HC_CUDA_LAUNCHED("attention_dkv_kernel");
}

void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* q,
                        const float* k, const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV,
                        int64_t HD, int64_t window, cudaStream_t stream) {
  check_attention_shapes(T, T, NH, NKV, HD);
  require(window >= 0, "invalid_argument", "attention: window must be >= 0");
  if (T == 0 || NH == 0) return;
  const float scale = 1.0f / sqrtf(static_cast<float>(HD));
  const int hd = static_cast<int>(HD);
  switch (attention_regs(HD)) {
#define HC_ATTN_CASE(NR)                                                                                      \
  case NR:                                                                                                    \
    attention_backward_launch<NR>(dq, dk, dv, delta, dout, q, k, v, lse, T, NH, NKV, hd, window, scale, stream); \
    break;
    HC_ATTN_CASE(1) HC_ATTN_CASE(2) HC_ATTN_CASE(4) HC_ATTN_CASE(8) HC_ATTN_CASE(16)
#undef HC_ATTN_CASE
  }
}

}  // namespace hc::cuda

extern "C" int hc_cuda_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                          const float* k, const float* v, const float* lse, int64_t T, int64_t NH,
                                          int64_t NKV, int64_t HD, int64_t window) {
  using namespace hc::cuda;
  return entry([&] {
    check_attention_shapes(T, T, NH, NKV, HD);
    const int64_t nq = T * NH * HD, nkv = T * NKV * HD;
    Buffer<float> d_dout(dout, nq), d_q(q, nq), d_k(k, nkv), d_v(v, nkv), d_lse(lse, T * NH);
    Buffer<float> d_dq(nq), d_dk(nkv), d_dv(nkv), d_delta(T * NH);
    attention_backward(d_dq.get(), d_dk.get(), d_dv.get(), d_delta.get(), d_dout.get(), d_q.get(), d_k.get(),
                       d_v.get(), d_lse.get(), T, NH, NKV, HD, window, 0);
    d_dq.download(dq);
    d_dk.download(dk);
    d_dv.download(dv);
  });
}
