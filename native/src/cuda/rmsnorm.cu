// RMSNorm as HF LlamaRMSNorm computes it in fp32: x · 1/sqrt(mean(x²) + eps) · weight.
// One block per row; the sum of squares is a block reduction.
#include "common.cuh"
#include "launch.cuh"

namespace hc::cuda {

constexpr int kRmsThreads = 256;

// out may alias inp: every element is read by the thread that later writes it.
__global__ void rmsnorm_kernel(float* out, const float* inp, const float* weight, int64_t C, float eps) {
  const float* x = inp + static_cast<int64_t>(blockIdx.x) * C;
  float* o = out + static_cast<int64_t>(blockIdx.x) * C;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s = fmaf(x[i], x[i], s);
  const float r = 1.0f / sqrtf(block_sum(s) / static_cast<float>(C) + eps);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) o[i] = x[i] * r * weight[i];
}

void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t C, float eps,
                     cudaStream_t stream) {
  if (M <= 0 || C <= 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(M), kRmsThreads, 0, stream>>>(out, inp, weight, C, eps);
  HC_CUDA_LAUNCHED("rmsnorm_kernel");
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
