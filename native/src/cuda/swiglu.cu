// SwiGLU gate of the Llama MLP: silu(gate)·up, silu(g) = g·sigmoid(g); and its backward.
// Each element is read before it is written, so outputs may alias inputs.
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

__global__ void swiglu_kernel(float* out, const float* gate, const float* up, int64_t n) {
  HC_FOR_EACH_ELEMENT(e, n) {
    const float g = gate[e];
    out[e] = g / (1.0f + expf(-g)) * up[e];
  }
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, cudaStream_t stream) {
  if (N <= 0) return;
  swiglu_kernel<<<elem_grid(N), kElemThreads, 0, stream>>>(out, gate, up, N);
  HC_CUDA_LAUNCHED("swiglu_kernel");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_swiglu(float* out, const float* gate, const float* up, int64_t N) {
  using namespace hc::cuda;
  return entry([&] {
    Buffer<float> d_g(gate, N), d_u(up, N);
    swiglu_forward(d_g.get(), d_g.get(), d_u.get(), N, 0);
    d_g.download(out);
  });
}
