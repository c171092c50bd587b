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

// With s = sigmoid(g): d silu(g)/dg = s·(1 + g·(1 − s)).
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                       int64_t n) {
  HC_FOR_EACH_ELEMENT(e, n) {
    const float g = gate[e], u = up[e], d = dout[e];
    const float s = 1.0f / (1.0f + expf(-g));
    dgate[e] = d * u * s * (1.0f + g * (1.0f - s));
    dup[e] = d * g * s;
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N,
                     cudaStream_t stream) {
  if (N <= 0) return;
  swiglu_backward_kernel<<<elem_grid(N), kElemThreads, 0, stream>>>(dgate, dup, dout, gate, up, N);
  HC_CUDA_LAUNCHED("swiglu_backward_kernel");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_swiglu(float* out, const float* gate, const float* up, int64_t N) {
  return hc::cuda::binary_entry(out, gate, up, N, hc::cuda::swiglu_forward);
}

extern "C" int hc_cuda_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, int64_t N) {
  using namespace hc::cuda;
  return entry([&] {
    Buffer<float> d_dout(dout, N), d_g(gate, N), d_u(up, N), d_dg(N), d_du(N);
    swiglu_backward(d_dg.get(), d_du.get(), d_dout.get(), d_g.get(), d_u.get(), N, 0);
    d_dg.download(dgate);
    d_du.download(dup);
  });
}
