// SwiGLU gate of the Llama MLP: silu(gate) * up, silu(g) = g * sigmoid(g).
#include <cmath>

#include "ops.h"
#include "simd_avx2.h"

namespace hc::cpu {

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, ThreadPool& pool) {
  pool.parallel_for(N, 16384, [&](int64_t b, int64_t e) {
#ifdef HC_HAVE_AVX2_TU
    if (use_avx2()) return avx2::swiglu(out + b, gate + b, up + b, e - b);
#endif
    for (int64_t i = b; i < e; i++) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

// With s = sigmoid(g): d silu(g)/dg = s·(1 + g·(1 − s)).
// Each element is read before it is written, so any output may alias any input.
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N,
                     ThreadPool& pool) {
  pool.parallel_for(N, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const float g = gate[i], u = up[i], d = dout[i];
      const float s = 1.0f / (1.0f + std::exp(-g));
      dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
      dup[i] = d * g * s;
    }
  });
}

}  // namespace hc::cpu
