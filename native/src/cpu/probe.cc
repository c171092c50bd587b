// Machine probes for the benchmarks' roofline: memory bandwidth (a STREAM-like
// triad over arrays far larger than the last-level cache) and the peak of our
// own fp32 GEMM.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include "matmul.h"
#include "matmul_kernels.h"

namespace hc::cpu {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct FreeDeleter {
  void operator()(double* p) const { std::free(p); }
};

}  // namespace

// a[i] = b[i] + s*c[i] over three arrays of `megabytes` MiB each (doubles, as
// STREAM); each rank owns one contiguous slice and touches it first, so its
// pages sit where that rank runs. Counts 3 arrays' bytes per pass, as STREAM does.
double triad_gbps(int64_t megabytes, int reps, ThreadPool& pool) {
  const int64_t n = std::max<int64_t>(1, megabytes) * (int64_t(1) << 20) / sizeof(double);
  const size_t bytes = (n * sizeof(double) + 63) / 64 * 64;
  std::unique_ptr<double, FreeDeleter> a(static_cast<double*>(std::aligned_alloc(64, bytes)));
  std::unique_ptr<double, FreeDeleter> b(static_cast<double*>(std::aligned_alloc(64, bytes)));
  std::unique_ptr<double, FreeDeleter> c(static_cast<double*>(std::aligned_alloc(64, bytes)));
  if (!a || !b || !c) throw std::bad_alloc();
  double* pa = a.get();
  double* pb = b.get();
  double* pc = c.get();
  auto slice = [n](int r, int nr, int64_t& lo, int64_t& hi) {
    lo = n * r / nr;
    hi = n * (r + 1) / nr;
  };
  pool.run([&](int r, int nr) {
    int64_t lo, hi;
    slice(r, nr, lo, hi);
    for (int64_t i = lo; i < hi; i++) {
      pa[i] = 0.0;
      pb[i] = 1.0;
      pc[i] = 2.0;
    }
  });
  const double s = 3.0;
  double best = 1e30;
  for (int rep = 0; rep < std::max(1, reps); rep++) {
    const double t0 = now_s();
    pool.run([&](int r, int nr) {
      int64_t lo, hi;
      slice(r, nr, lo, hi);
      for (int64_t i = lo; i < hi; i++) pa[i] = pb[i] + s * pc[i];
    });
    best = std::min(best, now_s() - t0);
  }
  // keep the stores observable
  volatile double sink = pa[n / 2];
  (void)sink;
  return 3.0 * n * sizeof(double) / best / 1e9;
}

double gemm_peak_gflops(int64_t n, int reps, ThreadPool& pool) {
  n = std::max<int64_t>(1, n);
  std::vector<float> x(n * n), w(n * n), out(n * n);
  for (int64_t i = 0; i < n * n; i++) {
    x[i] = static_cast<float>((i * 7 + 3) % 13) / 13.f - 0.5f;
    w[i] = static_cast<float>((i * 5 + 1) % 11) / 11.f - 0.5f;
  }
  matmul(out.data(), x.data(), w.data(), DType::F32, nullptr, n, n, n, pool);  // warm up, pack buffers
  double best = 1e30;
  for (int rep = 0; rep < std::max(1, reps); rep++) {
    const double t0 = now_s();
    matmul(out.data(), x.data(), w.data(), DType::F32, nullptr, n, n, n, pool);
    best = std::min(best, now_s() - t0);
  }
  return 2.0 * n * n * n / best / 1e9;
}

const char* cpu_features() { return active_kernels().name; }

}  // namespace hc::cpu
