// RMSNorm as HF LlamaRMSNorm computes it in fp32: x * rsqrt(mean(x²) + eps) * weight.
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "simd_avx2.h"

namespace hc::cpu {

static void rmsnorm_rows(float* out, const float* inp, const float* weight, int64_t rows, int64_t C, float eps) {
  for (int64_t m = 0; m < rows; m++) {
    const float* x = inp + m * C;
    float* o = out + m * C;
    // 4 partial sums: shorter dependency chain, and a little less rounding error
    float s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= C; i += 4)
      for (int j = 0; j < 4; j++) s[j] += x[i + j] * x[i + j];
    for (; i < C; i++) s[0] += x[i] * x[i];
    const float r = 1.0f / std::sqrt((s[0] + s[1] + s[2] + s[3]) / static_cast<float>(C) + eps);
    for (i = 0; i < C; i++) o[i] = x[i] * r * weight[i];
  }
}

void rmsnorm_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t C, float eps,
                     ThreadPool& pool) {
  // a row of the 260K model is 64 floats: waking a thread costs more than the row
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1));
  pool.parallel_for(M, grain, [&](int64_t b, int64_t e) {
#ifdef HC_HAVE_AVX2_TU
    if (use_avx2()) return avx2::rmsnorm_rows(out + b * C, inp + b * C, weight, e - b, C, eps);
#endif
    rmsnorm_rows(out + b * C, inp + b * C, weight, e - b, C, eps);
  });
}

}  // namespace hc::cpu
