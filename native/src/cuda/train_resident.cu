// The device-pointer half of the training ops (ops_cuda.h, "training on DEVICE
// pointers"): the backward launchers of the other .cu files wrapped for resident memory,
// plus the few kernels only the device training path needs — dropout masks drawn on the
// device (the same stateless stream as ../train/adapter.cc, so both draw the same mask),
// element-wise products, the value head, and AdamW with the global-norm's Σg².
#include <algorithm>

#include "attention.cuh"
#include "common.cuh"
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

// ../train/adapter.cc's splitmix64 stream, on the device: mask element i depends only on
// (seed, counter, layer, target, i).
__device__ __forceinline__ uint64_t drop_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// mask[i·cols + j] is element e = i·ld + c0 + j's of the whole [rows, ld] input's mask
__global__ void dropout_mask_kernel(float* mask, int64_t n, int64_t cols, int64_t ld, int64_t c0, double p,
                                    uint64_t key, float keep) {
  HC_FOR_EACH_ELEMENT(i, n) {
    const int64_t e = (i / cols) * ld + c0 + i % cols;
    const double u = static_cast<double>(drop_mix(key ^ drop_mix(static_cast<uint64_t>(e))) >> 11) * 0x1.0p-53;
    mask[i] = u < p ? 0.0f : keep;
  }
}

__global__ void fill_kernel(float* p, int64_t n, float value) {
  HC_FOR_EACH_ELEMENT(i, n) p[i] = value;
}

__global__ void mul_kernel(float* out, const float* a, const float* b, int64_t n, int accumulate) {
  HC_FOR_EACH_ELEMENT(i, n) out[i] = accumulate ? out[i] + a[i] * b[i] : a[i] * b[i];
}

// values[t] = Σ_i xf[t,i]·vh[i], in double as the CPU's loop: one block per row.
__global__ void value_head_kernel(float* values, const float* xf, const float* vh, int64_t C) {
  const float* x = xf + static_cast<int64_t>(blockIdx.x) * C;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += static_cast<double>(vh[i]) * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) values[blockIdx.x] = static_cast<float>(s);
}

// dxf[t,i] += g[t]·vh[i]; dvh[i] += Σ_t g[t]·xf[t,i] (rows in order): one thread per column.
__global__ void value_head_backward_kernel(float* dxf, float* dvh, const float* g, const float* xf, const float* vh,
                                           int64_t T, int64_t C) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= C) return;
  float acc = 0.0f;
  for (int64_t t = 0; t < T; t++) {
    dxf[t * C + i] += g[t] * vh[i];
    acc += g[t] * xf[t * C + i];
  }
  if (dvh) dvh[i] += acc;
}

constexpr int kSumBlocks = 256, kSumThreads = 256;

// partials[b] = Σ g² over block b's grid-stride share, in double
__global__ void sum_squares_partial_kernel(double* partials, const float* g, int64_t n) {
  double s = 0.0;
  HC_FOR_EACH_ELEMENT(i, n) s += static_cast<double>(g[i]) * g[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}
__global__ void sum_squares_total_kernel(double* acc, const double* partials, unsigned nblocks) {
  const double s = block_sum(threadIdx.x < nblocks ? partials[threadIdx.x] : 0.0);
  if (threadIdx.x == 0) *acc += s;
}

// ../train/params.cc AdamW::update, element for element (fp32 arithmetic), grad zeroed
__global__ void adamw_kernel(float* data, float* grad, float* m, float* v, int64_t n, float clip, float decay, float b1,
                             float b2, float step_size, float bc2_sqrt, float eps) {
  HC_FOR_EACH_ELEMENT(i, n) {
    const float g = grad[i] * clip;
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    data[i] = data[i] * decay - step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    grad[i] = 0.0f;
  }
}

}  // namespace hc::cuda

using hc::cuda::entry;

extern "C" {

int hc_cuda_dev_linear_backward(float* dx, float beta, float* dw, float* dbias, const float* dout, const float* x,
                                const void* w, int dtype, int64_t M, int64_t N, int64_t K) {
  return entry([&] {
    if (dw || dbias) hc::cuda::matmul_backward(nullptr, dw, dbias, dout, x, w, dtype, M, N, K, 0);
    if (dx) hc::cuda::gemm_launch(dx, dout, w, dtype, nullptr, M, K, N, N, K, K, false, false, 1.0f, beta, 0);
  });
}
int hc_cuda_dev_rmsnorm_backward(float* dx, float* dweight, float* rinv, const float* dout, const float* x,
                                 const float* weight, int64_t M, int64_t C, float eps) {
  return entry([&] { hc::cuda::rmsnorm_backward(dx, dweight, rinv, dout, x, weight, M, C, eps, 0); });
}
int hc_cuda_dev_rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) {
  return entry([&] { hc::cuda::rope_backward(dx, cos_t, sin_t, T, H, HD, 0); });
}
int hc_cuda_dev_attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                        int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window) {
  return entry([&] { hc::cuda::attention_forward(out, lse, q, k, v, T, T, NH, NKV, HD, window, 0); });
}
int hc_cuda_dev_attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* q,
                                   const float* k, const float* v, const float* lse, int64_t T, int64_t NH,
                                   int64_t NKV, int64_t HD, int64_t window) {
  return entry([&] {
    hc::cuda::check_attention_shapes(T, T, NH, NKV, HD);
    hc::cuda::attention_backward(dq, dk, dv, delta, dout, q, k, v, lse, T, NH, NKV, HD, window, 0);
  });
}
int hc_cuda_dev_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                int64_t N) {
  return entry([&] { hc::cuda::swiglu_backward(dgate, dup, dout, gate, up, N, 0); });
}
int hc_cuda_dev_embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C) {
  return entry([&] { hc::cuda::embedding_backward(dtable, dout, tokens, T, C, 0); });
}
int hc_cuda_dev_logprob(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) {
  return entry([&] { hc::cuda::logprob_forward(logp, logits, targets, T, V, 0); });
}
int hc_cuda_dev_logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets,
                                 int64_t T, int64_t V) {
  return entry([&] { hc::cuda::logprob_backward(dlogits, dlogp, logits, targets, T, V, 0); });
}
int hc_cuda_dev_dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p,
                             uint64_t key, float keep) {
  return entry([&] {
    const int64_t n = rows * cols;
    if (n <= 0) return;
    using namespace hc::cuda;
    dropout_mask_kernel<<<elem_grid(n), kElemThreads, 0, 0>>>(mask, n, cols, ld, c0, p, key, keep);
    HC_CUDA_LAUNCHED("dropout_mask_kernel");
  });
}
int hc_cuda_dev_mul(float* out, const float* a, const float* b, int64_t n, int accumulate) {
  return entry([&] {
    if (n <= 0) return;
    using namespace hc::cuda;
    mul_kernel<<<elem_grid(n), kElemThreads, 0, 0>>>(out, a, b, n, accumulate);
    HC_CUDA_LAUNCHED("mul_kernel");
  });
}
int hc_cuda_dev_value_head(float* values, const float* xf, const float* vh, int64_t T, int64_t C) {
  return entry([&] {
    if (T <= 0) return;
    using namespace hc::cuda;
    value_head_kernel<<<static_cast<unsigned>(T), 256, 0, 0>>>(values, xf, vh, C);
    HC_CUDA_LAUNCHED("value_head_kernel");
  });
}
int hc_cuda_dev_value_head_backward(float* dxf, float* dvh, const float* g, const float* xf, const float* vh,
                                    int64_t T, int64_t C) {
  return entry([&] {
    if (C <= 0) return;
    using namespace hc::cuda;
    value_head_backward_kernel<<<blocks_for(C, 256), 256, 0, 0>>>(dxf, dvh, g, xf, vh, T, C);
    HC_CUDA_LAUNCHED("value_head_backward_kernel");
  });
}
int hc_cuda_dev_copy(void* dst, const void* src, size_t bytes) {
  return entry([&] {
    if (bytes) HC_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
  });
}
int hc_cuda_dev_zero(void* p, size_t bytes) {
  return entry([&] {
    if (bytes) HC_CUDA_CHECK(cudaMemset(p, 0, bytes));
  });
}
int hc_cuda_dev_sum_squares(double* acc, double* partials, const float* g, int64_t n) {
  return entry([&] {
    using namespace hc::cuda;
    if (n <= 0) return;
    // as many blocks as the tensor fills (a small one is one block), at most kSumBlocks
    const unsigned blocks = std::min<unsigned>(kSumBlocks, blocks_for(n, kSumThreads));
    sum_squares_partial_kernel<<<blocks, kSumThreads, 0, 0>>>(partials, g, n);
    HC_CUDA_LAUNCHED("sum_squares_partial_kernel");
    sum_squares_total_kernel<<<1, kSumBlocks, 0, 0>>>(acc, partials, blocks);
    HC_CUDA_LAUNCHED("sum_squares_total_kernel");
  });
}
int hc_cuda_dev_adamw(float* data, float* grad, float* m, float* v, int64_t n, float clip, float decay, float b1,
                      float b2, float step_size, float bc2_sqrt, float eps) {
  return entry([&] {
    if (n <= 0) return;
    using namespace hc::cuda;
    adamw_kernel<<<elem_grid(n), kElemThreads, 0, 0>>>(data, grad, m, v, n, clip, decay, b1, b2, step_size, bc2_sqrt,
                                                       eps);
    HC_CUDA_LAUNCHED("adamw_kernel");
  });
}

int hc_cuda_dev_fill(float* p, int64_t n, float value) {
  return entry([&] {
    if (n <= 0) return;
    using namespace hc::cuda;
    fill_kernel<<<elem_grid(n), kElemThreads, 0, 0>>>(p, n, value);
    HC_CUDA_LAUNCHED("fill_kernel");
  });
}

}  // extern "C"
