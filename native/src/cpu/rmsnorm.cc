// RMSNorm as HF LlamaRMSNorm computes it in fp32: x * rsqrt(mean(x²) + eps) * weight.
#include <algorithm>
#include <cmath>
#include <vector>

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

// With r = 1/sqrt(mean(x²) + eps) and y = x·r·w, per row:
//   dx = r·(dy∘w) − x · r³/C · Σ(dy∘w∘x),   dw += dy∘x·r.
// Rows go in fixed chunks (a function of M and C only), each with its own dweight
// partial, summed in chunk order: the result does not depend on the thread count.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      int64_t M, int64_t C, float eps, ThreadPool& pool) {
  if (M <= 0 || C <= 0) return;
  const int64_t rows = std::max<int64_t>(8, 65536 / C);
  const int64_t chunks = (M + rows - 1) / rows;
  std::vector<float> partial(static_cast<size_t>(chunks * C), 0.0f);
  pool.parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t ch = b; ch < e; ch++) {
      float* dw = partial.data() + ch * C;
      for (int64_t m = ch * rows; m < std::min(M, (ch + 1) * rows); m++) {
        const float* x = inp + m * C;
        const float* dy = dout + m * C;
        float* dx = dinp + m * C;
        float ss = 0.0f, dot = 0.0f;
        for (int64_t i = 0; i < C; i++) {
          ss += x[i] * x[i];
          dot += dy[i] * weight[i] * x[i];
        }
        const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
        const float k = dot * r * r * r / static_cast<float>(C);
        // dy[i] is read before dx[i] is written: dinp may alias dout
        for (int64_t i = 0; i < C; i++) {
          const float g = dy[i];
          dw[i] += g * x[i] * r;
          dx[i] = r * g * weight[i] - x[i] * k;
        }
      }
    }
  });
  if (!dweight) return;  // frozen weight: only dinp was wanted
  pool.parallel_for(C, 256, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      float s = 0.0f;
      for (int64_t ch = 0; ch < chunks; ch++) s += partial[ch * C + i];
      dweight[i] += s;
    }
  });
}

}  // namespace hc::cpu
