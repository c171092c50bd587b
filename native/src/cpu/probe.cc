// Machine probes for the benchmarks' roofline: memory bandwidth (a STREAM-like
// triad over arrays far larger than the last-level cache), the peak of our
// own fp32 GEMM, and the instruction ceilings the GEMMs are fractions of
// (vfmadd231ps and vdpbf16ps on zmm, dependency free).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <memory>
#include <vector>

#include "matmul.h"
#include "dispatch.h"
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

namespace {

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// `iters` × 24 independent instructions on zmm0..23 (zmm30/31 the operands): 24 chains cover any
// latency × throughput product of a 2-pipe core (Zen 5: 2 per cycle, latency 4–6). Inline asm in a
// function of its own target, so the portable translation unit needs no AVX-512 flags; called only
// where the CPU has the instruction. Returns the calling thread's CPU seconds (immune to the machine's other tenants).
#define HC_X24(op)                                                                                            \
  op " %%zmm30, %%zmm31, %%zmm0\n\t" op " %%zmm30, %%zmm31, %%zmm1\n\t" op " %%zmm30, %%zmm31, %%zmm2\n\t" \
  op " %%zmm30, %%zmm31, %%zmm3\n\t" op " %%zmm30, %%zmm31, %%zmm4\n\t" op " %%zmm30, %%zmm31, %%zmm5\n\t"     \
  op " %%zmm30, %%zmm31, %%zmm6\n\t" op " %%zmm30, %%zmm31, %%zmm7\n\t" op " %%zmm30, %%zmm31, %%zmm8\n\t"     \
  op " %%zmm30, %%zmm31, %%zmm9\n\t" op " %%zmm30, %%zmm31, %%zmm10\n\t" op " %%zmm30, %%zmm31, %%zmm11\n\t"   \
  op " %%zmm30, %%zmm31, %%zmm12\n\t" op " %%zmm30, %%zmm31, %%zmm13\n\t" op " %%zmm30, %%zmm31, %%zmm14\n\t"  \
  op " %%zmm30, %%zmm31, %%zmm15\n\t" op " %%zmm30, %%zmm31, %%zmm16\n\t" op " %%zmm30, %%zmm31, %%zmm17\n\t"  \
  op " %%zmm30, %%zmm31, %%zmm18\n\t" op " %%zmm30, %%zmm31, %%zmm19\n\t" op " %%zmm30, %%zmm31, %%zmm20\n\t"  \
  op " %%zmm30, %%zmm31, %%zmm21\n\t" op " %%zmm30, %%zmm31, %%zmm22\n\t" op " %%zmm30, %%zmm31, %%zmm23\n\t"
#define HC_ZMM_CLOBBERS                                                                                           \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
      "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31"

__attribute__((target("avx512f"))) double run_x24(bool bf16, int64_t iters) {
  const double t0 = thread_cpu_s();
  __asm__ volatile("vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31" ::: "xmm30", "xmm31");
  for (int64_t i = 0; i < iters; i++) {
    if (bf16)
      __asm__ volatile(HC_X24("vdpbf16ps") ::: HC_ZMM_CLOBBERS);
    else
      __asm__ volatile(HC_X24("vfmadd231ps") ::: HC_ZMM_CLOBBERS);
  }
  __asm__ volatile("vzeroupper" ::: "memory");
  return thread_cpu_s() - t0;
}
#undef HC_X24
#undef HC_ZMM_CLOBBERS

}  // namespace

double instr_peak_gflops(bool bf16, int reps, ThreadPool& pool) {
  if (cpu_level() < (bf16 ? KernelLevel::Avx512Bf16 : KernelLevel::Avx512)) return 0;
  constexpr int64_t kIters = 2'000'000;  // 48 M instructions: ≈ 7 ms a rep at 2 per cycle, 3.6 GHz
  // flops an instruction: 16 lanes × (multiply + add), and vdpbf16ps does two of each a lane
  const double flops = 24.0 * kIters * 16 * 2 * (bf16 ? 2 : 1);
  std::vector<double> best(static_cast<size_t>(pool.size()), 1e30);
  for (int rep = 0; rep < std::max(1, reps); rep++)
    pool.run([&](int r, int) { best[static_cast<size_t>(r)] = std::min(best[static_cast<size_t>(r)], run_x24(bf16, kIters)); });
  double total = 0;
  for (double t : best) total += flops / t / 1e9;
  return total;
}

const char* cpu_features() { return active_kernels().name; }

}  // namespace hc::cpu
