// The residual add: out = a + b (out may alias a or b).
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

__global__ void residual_kernel(float* out, const float* a, const float* b, int64_t n) {
  HC_FOR_EACH_ELEMENT(e, n) out[e] = a[e] + b[e];
}

void residual_forward(float* out, const float* a, const float* b, int64_t N, cudaStream_t stream) {
  if (N <= 0) return;
  residual_kernel<<<elem_grid(N), kElemThreads, 0, stream>>>(out, a, b, N);
  HC_CUDA_LAUNCHED("residual_kernel");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_residual(float* out, const float* a, const float* b, int64_t N) {
  return hc::cuda::binary_entry(out, a, b, N, hc::cuda::residual_forward);
}
