// Causal grouped-query attention over contiguous or paged keys/values, one query row
// at a time with an online softmax (running max and sum), so no [T,S] score matrix
// is ever stored. Work items are (token, head) pairs spread over the pool.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "../errors.h"
#include "ops.h"
#include "simd_avx2.h"

namespace hc::cpu {

static constexpr int64_t kMaxHD = 1024;
static constexpr int64_t kChunk = 16;

// Keys are scored kChunk at a time so the running max (and the rescale of the
// accumulator it may cause) is handled once per chunk.
static void attention_row(float* out, const float* q, const float* k, const float* v, const int32_t* blocks,
                          int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t npos,
                          int64_t HD, float scale) {
  float acc[kMaxHD];
  float sc[kChunk];
  const float* vp[kChunk];
  for (int64_t d = 0; d < HD; d++) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < npos; j0 += block_size) {
    const int64_t off = static_cast<int64_t>(blocks[j0 / block_size]) * block_stride;
    const int64_t nb = std::min(block_size, npos - j0);  // keys in this block
    for (int64_t j = 0; j < nb; j += kChunk) {
      const int64_t n = std::min(kChunk, nb - j);
      float cm = -INFINITY;
      for (int64_t i = 0; i < n; i++) {
        const float* kj = k + off + (j + i) * token_stride;
        vp[i] = v + off + (j + i) * token_stride;
        float s = 0.0f;
        for (int64_t d = 0; d < HD; d++) s += q[d] * kj[d];
        sc[i] = s * scale;
        cm = std::max(cm, sc[i]);
      }
      if (cm > m) {
        const float c = std::exp(m - cm);  // rescale what was accumulated under the old max
        l *= c;
        for (int64_t d = 0; d < HD; d++) acc[d] *= c;
        m = cm;
      }
      for (int64_t i = 0; i < n; i++) {
        const float p = std::exp(sc[i] - m);
        l += p;
        for (int64_t d = 0; d < HD; d++) acc[d] += p * vp[i][d];
      }
    }
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t d = 0; d < HD; d++) out[d] = acc[d] * inv;
}

void attention_forward(float* out, const float* q, const KVSpan* spans, const int32_t* seq_of,
                       const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, ThreadPool& pool) {
  if (HD > kMaxHD) throw Error("unsupported", "head_dim above 1024 is not supported");
  if (NKV <= 0 || NH % NKV != 0) throw Error("bad_shape", "attention: NH must be a multiple of NKV");
  const int64_t group = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  // estimated work, to keep tiny decode steps on the calling thread
  int64_t work = 0;
  for (int64_t t = 0; t < T; t++) work += static_cast<int64_t>(npos[t]) * NH * HD;
  const int64_t items = T * NH;
#ifdef HC_HAVE_AVX2_TU
  const bool simd = use_avx2() && HD % 8 == 0;
#endif
  auto row = [&](int64_t it) {
    const int64_t t = it / NH, h = it % NH, g = h / group;
    const KVSpan& sp = spans[seq_of[t]];
    const float* k = sp.k + g * sp.head_stride;
    const float* v = sp.v + g * sp.head_stride;
#ifdef HC_HAVE_AVX2_TU
    if (simd)
      return avx2::attention_row(out + it * HD, q + it * HD, k, v, sp.blocks, sp.block_stride, sp.token_stride,
                                 sp.block_size, npos[t], HD, scale);
#endif
    attention_row(out + it * HD, q + it * HD, k, v, sp.blocks, sp.block_stride, sp.token_stride, sp.block_size,
                  npos[t], HD, scale);
  };
  if (work < 65536 || pool.size() == 1) {  // a decode step of a small model: not worth a wake-up
    for (int64_t it = 0; it < items; it++) row(it);
    return;
  }
  // Rows differ in cost (causal: later queries see more keys), so ranks take small
  // chunks from a shared counter instead of fixed ranges, heaviest (last) rows first.
  std::atomic<int64_t> next{0};
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(NH, items / (pool.size() * 16)));
  pool.run([&](int, int) {
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= items) return;
      const int64_t e = std::min(items, b + chunk);
      for (int64_t it = b; it < e; it++) row(items - 1 - it);
    }
  });
}

}  // namespace hc::cpu
