// Batched multi-adapter LoRA on the CPU, the twin of cuda/lora.cu: every row of a packed
// batch adds its own adapter's scale·(x·Aᵀ)·Bᵀ (or nothing), whatever the mix of
// adapters in the batch. Shrink over (row, rank) pairs, then expand over (row, output)
// pairs, both split among the pool's threads, so one decode row spreads as well as many.
#include <algorithm>

#include "ops.h"

namespace hc::cpu {

namespace {

// Σ a[i]·b[i] in 8 independent partial sums (a vectorisable reduction without -ffast-math)
float dot(const float* a, const float* b, int64_t n) {
  float s[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
  for (; i < n; i++) s[0] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace

void lora_batched(float* out, const float* x, const LoraEntry* entries, const int32_t* slot, float* u, int64_t T,
                  int64_t N, int64_t K, int64_t max_rank, ThreadPool& pool) {
  if (T <= 0 || N <= 0 || max_rank <= 0) return;
  pool.parallel_for(T * max_rank, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const int64_t t = i / max_rank, r = i % max_rank;
      if (slot[t] < 0) continue;
      const LoraEntry& en = entries[slot[t]];
      if (r < en.rank) u[i] = dot(x + t * K, en.a + r * en.lda, K);
    }
  });
  pool.parallel_for(T * N, std::max<int64_t>(1, 16384 / max_rank), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const int64_t t = i / N, n = i % N;
      if (slot[t] < 0) continue;
      const LoraEntry& en = entries[slot[t]];
      if (en.rank > 0) out[i] += en.scale * dot(u + t * max_rank, en.b + n * en.rank, en.rank);
    }
  });
}

}  // namespace hc::cpu
