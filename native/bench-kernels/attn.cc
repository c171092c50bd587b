// bench-kernels attn: one decode step's attention (attention_forward, one query per
// sequence) over a paged cache of shuffled 16-key blocks, on one thread: checked against a
// float64 reference, then timed by this thread's CPU time. The kernel is the one
// HYBRIDCHAT_KERNELS picks (avx2: the one-row kernel; avx512: the decode kernel), so an
// A/B is two runs of this command with the variable set each way; the pool's element type
// (f32, bf16 or f16: cpu/kv_elem.h) is the next argument, the reference fed the same rounding.
// With `threads` > 1 or `cold`, each call is timed by the wall clock instead (min and median
// of `reps` calls), on a pool of that many ranks; `cold` first evicts the cache (reads 64 MiB,
// as a decode step's weight stream does between two layers' attention).
//   ./bench-kernels attn B S NH NKV HD [reps] [f32|bf16|f16] [threads] [cold]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <ctime>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/kv_elem.h"
#include "cpu/ops.h"
#include "threadpool.h"

using namespace hc;
using namespace hc::cpu;

static double thread_cpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_attn(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: bench-kernels attn B S NH NKV HD [reps] [f32|bf16|f16]\n");
    return 2;
  }
  const int64_t B = std::atol(argv[2]), S = std::atol(argv[3]), NH = std::atol(argv[4]), NKV = std::atol(argv[5]),
                HD = std::atol(argv[6]);
  const int reps = argc > 7 ? std::atoi(argv[7]) : 200;
  const DType dt = parse_dtype(argc > 8 ? argv[8] : "f32");
  const int threads = argc > 9 ? std::atoi(argv[9]) : 1;
  const bool cold = argc > 10 && std::string(argv[10]) == "cold";
  const int64_t bs = 16, per = (S + bs - 1) / bs, nblocks = B * per;
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> k(nblocks * NKV * bs * HD), v(k.size()), q(B * NH * HD), out(q.size());
  for (auto& x : k) x = u(gen);
  for (auto& x : v) x = u(gen);
  for (auto& x : q) x = u(gen);
  // the pool as the kernels read it: k, v rounded to dt (the reference reads the rounded values)
  std::vector<uint16_t> k16(k.size()), v16(k.size());
  if (dt != DType::F32) {
    for (size_t i = 0; i < k.size(); i++) {
      k16[i] = dt == DType::BF16 ? f32_to_bf16(k[i]) : f32_to_f16(k[i]);
      v16[i] = dt == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      k[i] = dt == DType::BF16 ? bf16_to_f32(k16[i]) : f16_to_f32(k16[i]);
      v[i] = dt == DType::BF16 ? bf16_to_f32(v16[i]) : f16_to_f32(v16[i]);
    }
  }
  const void* kp = dt == DType::F32 ? static_cast<const void*>(k.data()) : k16.data();
  const void* vp = dt == DType::F32 ? static_cast<const void*>(v.data()) : v16.data();
  std::vector<int32_t> ids(nblocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), gen);
  std::vector<KVSpan> spans(B);
  std::vector<int32_t> seq_of(B), npos(B, static_cast<int32_t>(S));
  for (int64_t s = 0; s < B; s++) {
    spans[s] = KVSpan{kp, vp, ids.data() + s * per, NKV * bs * HD, bs * HD, HD, bs, dt};
    seq_of[s] = static_cast<int32_t>(s);
  }
  ThreadPool pool(threads);
  attention_forward(out.data(), q.data(), spans.data(), seq_of.data(), npos.data(), B, NH, NKV, HD, 0, pool);
  // float64 reference
  double worst = 0;
  const int64_t group = NH / NKV;
  for (int64_t s = 0; s < B; s++)
    for (int64_t h = 0; h < NH; h++) {
      const int64_t g = h / group;
      auto at = [&](int64_t j) { return (static_cast<int64_t>(ids[s * per + j / bs]) * NKV + g) * bs * HD + (j % bs) * HD; };
      std::vector<double> sc(S);
      double m = -INFINITY;
      for (int64_t j = 0; j < S; j++) {
        double d = 0;
        for (int64_t e = 0; e < HD; e++) d += double(q[(s * NH + h) * HD + e]) * k[at(j) + e];
        sc[j] = d / std::sqrt(double(HD));
        m = std::max(m, sc[j]);
      }
      double l = 0;
      for (auto& x : sc) l += x = std::exp(x - m);
      for (int64_t e = 0; e < HD; e++) {
        double a = 0;
        for (int64_t j = 0; j < S; j++) a += sc[j] * v[at(j) + e];
        worst = std::max(worst, std::abs(a / l - out[(s * NH + h) * HD + e]) / (2e-6 + 1e-5 * std::abs(a / l)));
      }
    }
  if (worst > 1) {
    std::fprintf(stderr, "attn: off the float64 reference by %.2f× the tolerance\n", worst);
    return 1;
  }
  const double flops = 4.0 * B * NH * S * HD;
  if (threads > 1 || cold) {
    std::vector<float> evict(cold ? (64 << 20) / sizeof(float) : 0, 1.0f);
    std::vector<double> ts;
    float sink = 0;
    for (int i = 0; i < reps; i++) {
      // every rank reads its share, as a GEMV region would: the workers stay awake (spinning)
      std::vector<float> part(static_cast<size_t>(threads), 0.0f);
      pool.run([&](int r, int n) {
        const size_t b = evict.size() * r / n, e = evict.size() * (r + 1) / n;
        for (size_t j = b; j < e; j += 16) part[r] += evict[j];
      });
      for (float x : part) sink += x;
      const auto t0 = std::chrono::steady_clock::now();
      attention_forward(out.data(), q.data(), spans.data(), seq_of.data(), npos.data(), B, NH, NKV, HD, 0, pool);
      ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ts.begin(), ts.end());
    std::printf("attn %-10s %-4s B=%-3ld S=%-5ld NH=%-3ld NKV=%-3ld HD=%-4ld threads=%d%s wall min %.1f us  p50 %.1f us%s\n",
                level_name(kernel_level()), dtype_name(dt), long(B), long(S), long(NH), long(NKV), long(HD), threads,
                cold ? " cold" : "", ts[0] * 1e6, ts[ts.size() / 2] * 1e6, sink == 0 ? " " : "");
    return 0;
  }
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    const double c0 = thread_cpu();
    for (int i = 0; i < reps; i++)
      attention_forward(out.data(), q.data(), spans.data(), seq_of.data(), npos.data(), B, NH, NKV, HD, 0, pool);
    best = std::min(best, (thread_cpu() - c0) / reps);
  }
  std::printf("attn %-10s %-4s B=%-3ld S=%-5ld NH=%-3ld NKV=%-3ld HD=%-4ld cpu %.1f us  %.1f GFLOP/s\n",
              level_name(kernel_level()), dtype_name(dt), long(B), long(S), long(NH), long(NKV), long(HD), best * 1e6,
              flops / best / 1e9);
  return 0;
}
