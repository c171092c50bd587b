// Grid-stride launches for the element-wise ops (swiglu, residual, conversions,
// embedding): a capped grid whose threads stride over all n elements.
#pragma once
#include "common.cuh"

namespace hc::cuda {

constexpr int kElemThreads = 256;

inline unsigned elem_grid(int64_t n) {
  const unsigned b = blocks_for(n, kElemThreads);
  return b < 65536u ? b : 65536u;
}

#define HC_FOR_EACH_ELEMENT(e, n)                                                              \
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < (n); \
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)

// The entry point of an op out[N] = f(a[N], b[N]) on host arrays (out may alias a or b).
template <typename Launch>
int binary_entry(float* out, const float* a, const float* b, int64_t N, Launch launch) {
  return entry([&] {
    Buffer<float> d_a(a, N), d_b(b, N);
    launch(d_a.get(), d_a.get(), d_b.get(), N, cudaStream_t{});
    d_a.download(out);
  });
}

}  // namespace hc::cuda
