// RMSNorm as HF LlamaRMSNorm computes it in fp32: x · 1/sqrt(mean(x²) + eps) · weight,
// alone or fused with the residual add before it. One block per row; the sum of squares is
// a block reduction. The backward runs three
// passes so that dinp may alias dout: the rows' 1/rms, then dweight (reading dout), then
// dinp (overwriting it).
#include "common.cuh"
#include "launch.cuh"

namespace hc::cuda {

constexpr int kRmsThreads = 256;

// out = rmsnorm(x)·weight, row by row. With `add` (the fused residual pre-norm) x += add
// first, written back, and the norm is of the sum: the residual stream is read once for
// both instead of once by the add and again by the norm. out may alias x only without add
// (every element is read by the thread that later writes it).
__global__ void rmsnorm_kernel(float* out, float* inp, const float* add, const float* weight, int64_t C, float eps) {
  float* x = inp + static_cast<int64_t>(blockIdx.x) * C;
  const float* a = add ? add + static_cast<int64_t>(blockIdx.x) * C : nullptr;
  float* o = out + static_cast<int64_t>(blockIdx.x) * C;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float v = x[i];
    if (a) x[i] = v = v + a[i];
    s = fmaf(v, v, s);
  }
  const float r = 1.0f / sqrtf(block_sum(s) / static_cast<float>(C) + eps);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) o[i] = x[i] * r * weight[i];
}

void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t C, float eps,
                     cudaStream_t stream) {
  if (M <= 0 || C <= 0) return;
  // inp is only read without `add`
  rmsnorm_kernel<<<static_cast<unsigned>(M), kRmsThreads, 0, stream>>>(out, const_cast<float*>(inp), nullptr, weight, C, eps);
  HC_CUDA_LAUNCHED("rmsnorm_kernel");
}

void residual_rmsnorm_forward(float* x, float* out, const float* add, const float* weight, int64_t M, int64_t C,
                              float eps, cudaStream_t stream) {
  if (M <= 0 || C <= 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(M), kRmsThreads, 0, stream>>>(out, x, add, weight, C, eps);
  HC_CUDA_LAUNCHED("rmsnorm_kernel");
}

// rinv[row] = 1/sqrt(mean(x²) + eps)
__global__ void rmsnorm_rinv_kernel(float* rinv, const float* inp, int64_t C, float eps) {
  const float* x = inp + static_cast<int64_t>(blockIdx.x) * C;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s = fmaf(x[i], x[i], s);
  s = block_sum(s);
  if (threadIdx.x == 0) rinv[blockIdx.x] = 1.0f / sqrtf(s / static_cast<float>(C) + eps);
}

// dweight[i] += Σ_m dy[m,i]·x[m,i]·r[m]: one thread per column, rows in order (deterministic).
__global__ void rmsnorm_dweight_kernel(float* dweight, const float* dout, const float* inp, const float* rinv,
                                       int64_t M, int64_t C) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= C) return;
  float s = 0.0f;
  for (int64_t m = 0; m < M; m++) s = fmaf(dout[m * C + i] * inp[m * C + i], rinv[m], s);
  dweight[i] += s;
}

// dx = r·(dy∘w) − x·r³/C·Σ(dy∘w∘x); dy is fully read (the reduction) before dx is written.
__global__ void rmsnorm_dinp_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                    const float* rinv, int64_t C) {
  const int64_t off = static_cast<int64_t>(blockIdx.x) * C;
  const float *x = inp + off, *dy = dout + off;
  float* dx = dinp + off;
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) dot = fmaf(dy[i] * weight[i], x[i], dot);
  dot = block_sum(dot);
  const float r = rinv[blockIdx.x], k = dot * r * r * r / static_cast<float>(C);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) dx[i] = r * dy[i] * weight[i] - x[i] * k;
}

void rmsnorm_backward(float* dinp, float* dweight, float* rinv, const float* dout, const float* inp,
                      const float* weight, int64_t M, int64_t C, float eps, cudaStream_t stream) {
  if (M <= 0 || C <= 0) return;
  rmsnorm_rinv_kernel<<<static_cast<unsigned>(M), kRmsThreads, 0, stream>>>(rinv, inp, C, eps);
  HC_CUDA_LAUNCHED("rmsnorm_rinv_kernel");
  if (dweight) {  // null: a frozen weight (the training forward on a device passes one)
    rmsnorm_dweight_kernel<<<blocks_for(C, kRmsThreads), kRmsThreads, 0, stream>>>(dweight, dout, inp, rinv, M, C);
    HC_CUDA_LAUNCHED("rmsnorm_dweight_kernel");
  }
  rmsnorm_dinp_kernel<<<static_cast<unsigned>(M), kRmsThreads, 0, stream>>>(dinp, dout, inp, weight, rinv, C);
  HC_CUDA_LAUNCHED("rmsnorm_dinp_kernel");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_rmsnorm(float* out, const float* x, const float* weight, int64_t M, int64_t C, float eps) {
  using namespace hc::cuda;
  return entry([&] {
    Buffer<float> d_x(x, M * C), d_w(weight, C);
    rmsnorm_forward(d_x.get(), d_x.get(), d_w.get(), M, C, eps, 0);
    d_x.download(out);
  });
}

extern "C" int hc_cuda_residual_rmsnorm(float* x, float* out, const float* add, const float* weight, int64_t M,
                                        int64_t C, float eps) {
  using namespace hc::cuda;
  return entry([&] {
    Buffer<float> d_x(x, M * C), d_add(add, M * C), d_w(weight, C), d_out(M * C);
    residual_rmsnorm_forward(d_x.get(), d_out.get(), d_add.get(), d_w.get(), M, C, eps, 0);
    d_x.download(x);
    d_out.download(out);
  });
}

extern "C" int hc_cuda_rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x,
                                        const float* weight, int64_t M, int64_t C, float eps) {
  using namespace hc::cuda;
  return entry([&] {
    Buffer<float> d_dout(dout, M * C), d_x(x, M * C), d_w(weight, C), d_dw(dweight, C), d_rinv(M);
    rmsnorm_backward(d_dout.get(), d_dw.get(), d_rinv.get(), d_dout.get(), d_x.get(), d_w.get(), M, C, eps, 0);
    d_dout.download(dx);
    d_dw.download(dweight);
  });
}
