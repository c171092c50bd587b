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

}  // namespace hc::cpu
