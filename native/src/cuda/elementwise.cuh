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

}  // namespace hc::cuda
