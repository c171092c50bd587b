// The head of the training boundary (DESIGN.md): the log-prob of each target token, and
// its backward through d logp / d logits = onehot(target) − softmax(logits), so the
// native side never needs the loss itself, only dL/dlogp per token.
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "simd_avx2.h"

namespace hc::cpu {

// log Σ exp(x[0..V)), shifted by the max so large logits cannot overflow.
static float row_logsumexp(const float* x, int64_t V) {
#ifdef HC_HAVE_AVX2_TU
  if (use_avx2()) return avx2::logsumexp(x, V);
#endif
  float m = -INFINITY;
  for (int64_t i = 0; i < V; i++) m = std::max(m, x[i]);
  double s = 0.0;  // V can be 10^5: a double sum keeps the low terms
  for (int64_t i = 0; i < V; i++) s += std::exp(x[i] - m);
  return m + static_cast<float>(std::log(s));
}

void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                     ThreadPool& pool) {
  pool.parallel_for(T, std::max<int64_t>(1, 32768 / std::max<int64_t>(V, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const float* x = logits + t * V;
      logp[t] = targets[t] < 0 ? 0.0f : x[targets[t]] - row_logsumexp(x, V);
    }
  });
}

void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets, int64_t T,
                      int64_t V, ThreadPool& pool) {
  pool.parallel_for(T, std::max<int64_t>(1, 32768 / std::max<int64_t>(V, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) {
      const float* x = logits + t * V;
      float* d = dlogits + t * V;
      if (targets[t] < 0) {
        std::fill(d, d + V, 0.0f);
        continue;
      }
      const float g = dlogp[t];
      const float lse = row_logsumexp(x, V);
#ifdef HC_HAVE_AVX2_TU
      if (use_avx2())
        avx2::scaled_softmax(d, x, V, lse, -g);
      else
#endif
        for (int64_t i = 0; i < V; i++) d[i] = -g * std::exp(x[i] - lse);
      d[targets[t]] += g;
    }
  });
}

}  // namespace hc::cpu
