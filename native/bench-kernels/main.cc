// bench-kernels: the CPU matmul kernels, validated against a float64 reference
// on every path before anything is timed (llm.c style).
//   ./bench-kernels check            every variant × path × shape × dtype × threads
//   ./bench-kernels bench [quick]    probes, prefill GEMM and decode GEMV timings, crossover
//   ./bench-kernels qgemm M N K q8_0|q4_0|q4_k VARIANT   one block-format kernel, one thread, CPU time
//   ./bench-kernels attn B S NH NKV HD [reps]   one decode step's attention, one thread, CPU time (attn.cc)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/gemm.h"
#include "cpu/matmul.h"
#include "cpu/matmul_kernels.h"
#include "cpu/quant_repack.h"
#include "cpu/ops.h"
#include "cpu/quant_dot.h"
#include "cpu/quant_gemm.h"
#include "dtype.h"
#include "threadpool.h"

using namespace hc;
using namespace hc::cpu;

namespace {

// threadpool.cc's workers read the start generation when they first run, so a
// region started before they are scheduled is missed (reported to native-core);
// give them time to start until that is fixed.
struct Pool : ThreadPool {
  explicit Pool(int n) : ThreadPool(n) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }
};

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>((next() >> 40) * (2.0 / 16777216.0) - 1.0); }
};

// B as stored (raw bytes of btype) plus its exact fp32 values, for the reference.
struct Weights {
  std::vector<float> f32;      // values the kernel must see (already rounded)
  std::vector<uint16_t> half;  // storage for bf16/f16
  std::vector<uint8_t> blocks;  // storage for q8_0/q4_0
  DType type;
  const void* data() const {
    return type == DType::F32 ? static_cast<const void*>(f32.data())
           : is_quantized(type) ? static_cast<const void*>(blocks.data()) : half.data();
  }
  size_t bytes() const { return dtype_bytes(type, f32.size()); }
};

// n % 32 == 0 for the block types
Weights make_weights(size_t n, DType t, Rng& rng, float scale = 1.f) {
  Weights w;
  w.type = t;
  w.f32.resize(n);
  if (is_quantized(t)) {
    for (auto& v : w.f32) v = rng.uniform() * scale;
    w.blocks.resize(dtype_bytes(t, n));
    from_f32(w.blocks.data(), w.f32.data(), t, n);
    to_f32(w.f32.data(), w.blocks.data(), t, n);
    return w;
  }
  if (t != DType::F32) w.half.resize(n);
  for (size_t i = 0; i < n; i++) {
    float v = rng.uniform() * scale;
    if (t == DType::BF16) {
      w.half[i] = f32_to_bf16(v);
      v = bf16_to_f32(w.half[i]);
    } else if (t == DType::F16) {
      w.half[i] = f32_to_f16(v);
      v = f16_to_f32(w.half[i]);
    }
    w.f32[i] = v;
  }
  return w;
}

std::vector<float> random_vec(size_t n, Rng& rng) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform();
  return v;
}

// One output element of the reference, with the scale of its terms (the
// 2-norm of the products) for the tolerance, and for block weights streamed against x
// (quant_dot.h: x rounded to int8 per block of 32, |x − d·q| <= amax(block)/254) the
// bound Σ_k |b_k|·amax(x's block)/254 that rounding can move the sum by.
struct RefVal {
  double v, scale, int8 = 0;
};
RefVal ref_at(const GemmArgs& g, const float* Bf, const float* C0, int64_t m, int64_t n) {
  double s = 0, s2 = 0, q8 = 0;
  for (int64_t k = 0; k < g.K; k++) {
    const double a = g.ta ? g.A[k * g.lda + m] : g.A[m * g.lda + k];
    const double b = g.tb ? Bf[n * g.ldb + k] : Bf[k * g.ldb + n];
    s += a * b;
    s2 += (a * b) * (a * b);
  }
  if (is_quantized(g.btype) && !g.ta && g.tb)
    for (int64_t k0 = 0; k0 < g.K; k0 += 32) {
      double amax = 0, wsum = 0;
      for (int64_t k = k0; k < k0 + 32 && k < g.K; k++) {
        amax = std::max(amax, std::abs(double(g.A[m * g.lda + k])));
        wsum += std::abs(double(Bf[n * g.ldb + k]));
      }
      q8 += amax / 254 * wsum;
    }
  double v = g.alpha * s;
  if (g.beta != 0.f) v += double(g.beta) * C0[m * g.ldc + n];
  if (g.bias) v += g.bias[n];
  return {v, std::abs(g.alpha) * std::sqrt(s2) + (g.beta != 0.f ? std::abs(C0[m * g.ldc + n]) : 0.0) + 1e-30,
          std::abs(g.alpha) * q8};
}

// |got - ref| <= rtol·(|ref| + scale) + int8, rtol = 1e-5·sqrt(K) (fp32 accumulation of
// K terms; bf16/f16 B is compared with the reference on the same rounded values).
bool within(float got, RefVal r, int64_t K, double* worst) {
  const double rtol = 1e-5 * std::sqrt(double(std::max<int64_t>(K, 1)));
  const double err = std::abs(double(got) - r.v);
  const double tol = rtol * (std::abs(r.v) + r.scale) + r.int8;
  *worst = std::max(*worst, err / tol);
  return err <= tol && std::isfinite(got);
}

int failures = 0;
int checks = 0;

// Runs one product and checks every element (or `samples` random ones) against the reference.
void check_one(const CpuKernels& kern, GemmPath path, ThreadPool& pool, bool ta, bool tb, int64_t M,
               int64_t N, int64_t K, DType bt, bool bias, float alpha, float beta, int64_t pad,
               Rng& rng) {
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const int64_t arows = ta ? K : M, brows = tb ? N : K;
  std::vector<float> A = random_vec(arows * lda, rng);
  Weights B = make_weights(brows * ldb, bt, rng);
  std::vector<float> bvec = random_vec(N, rng);
  std::vector<float> C0 = random_vec(M * ldc, rng);
  if (beta == 0.f)
    for (auto& c : C0) c = NAN;  // beta == 0 must never read C
  std::vector<float> C = C0;
  GemmArgs g{ta, tb, M, N, K, alpha, A.data(), lda, B.data(), bt, ldb, beta, C.data(), ldc,
             bias ? bvec.data() : nullptr};
  gemm_run(kern, g, pool, path);
  double worst = 0;
  int bad = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      if (!within(C[m * ldc + n], ref_at(g, B.f32.data(), C0.data(), m, n), K, &worst)) bad++;
    }
  // padding columns of C must be untouched
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = N; n < ldc; n++)
      if (std::memcmp(&C[m * ldc + n], &C0[m * ldc + n], 4) != 0) bad++;
  checks++;
  if (bad) {
    failures++;
    std::printf("FAIL %s path=%d threads=%d ta=%d tb=%d M=%ld N=%ld K=%ld %s bias=%d alpha=%g beta=%g pad=%ld: %d bad, worst err/tol %.3g\n",
                kern.name, int(path), pool.size(), ta, tb, long(M), long(N), long(K), dtype_name(bt), bias,
                alpha, beta, long(pad), bad, worst);
  }
}

int cmd_check() {
  // every variant this CPU runs
  std::vector<const CpuKernels*> variants;
  for (int l = 0; l <= static_cast<int>(cpu_level()); l++)
    if (const CpuKernels* v = kernels_for(l)) variants.push_back(v);
  const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 8, 16, 17, 64, 130};
  const int64_t NKs[][2] = {{37, 173}, {173, 769}, {769, 37}, {16, 16}, {1, 7}, {48, 8}, {300, 520}, {70, 32}, {33, 47}};
  const DType dts[] = {DType::F32, DType::BF16, DType::F16};
  Rng rng(42);
  for (int threads : {1, 2}) {
    Pool pool(threads);
    for (const CpuKernels* kern : variants) {
      // the forward (matmul.h's case) on every path
      for (int64_t M : Ms)
        for (auto& nk : NKs)
          for (DType dt : dts)
            for (bool bias : {false, true}) {
              check_one(*kern, GemmPath::Auto, pool, false, true, M, nk[0], nk[1], dt, bias, 1.f, 0.f, 0, rng);
              check_one(*kern, GemmPath::Packed, pool, false, true, M, nk[0], nk[1], dt, bias, 1.f, 0.f, 0, rng);
              if (M <= 130)
                check_one(*kern, GemmPath::Stream, pool, false, true, M, nk[0], nk[1], dt, bias, 1.f, 0.f, 0, rng);
            }
      // the training shapes: transposes, strides, alpha/beta accumulation, K beyond one KC block (1024)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (int64_t M : {int64_t(1), int64_t(7), int64_t(130)})
            for (DType dt : {DType::F32, DType::BF16})
              for (float beta : {0.f, 1.f, -0.5f}) {
                check_one(*kern, GemmPath::Auto, pool, ta, tb, M, 45, 1100, dt, beta != 0.f, 0.75f, beta, 3, rng);
                check_one(*kern, GemmPath::Auto, pool, ta, tb, 33, M, 300, dt, false, 1.f, beta, 0, rng);
              }
      // q8_0 / q4_0 / q4_k weights: rows of multiples of the block, every path, both transposes of B
      for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
        const bool k256 = dt == DType::Q4_K;  // super-blocks of 256
        for (int64_t M : Ms)
          for (int64_t NK : {int64_t(k256 ? 256 : 32), int64_t(k256 ? 512 : 96), int64_t(768)})
            for (bool bias : {false, true}) {
              check_one(*kern, GemmPath::Auto, pool, false, true, M, 37, NK, dt, bias, 1.f, 0.f, 0, rng);
              check_one(*kern, GemmPath::Packed, pool, false, true, M, 37, NK, dt, bias, 1.f, 0.f, 0, rng);
              if (M <= 32) check_one(*kern, GemmPath::Stream, pool, false, true, M, 37, NK, dt, bias, 1.f, 0.f, 0, rng);
            }
        // the backward's dx = dY·W (tb = false), beta accumulation, padded rows of 32 more
        for (int64_t M : {int64_t(1), int64_t(7), int64_t(130)}) {
          check_one(*kern, GemmPath::Auto, pool, false, false, M, k256 ? 256 : 64, 45, dt, false, 1.f, 0.f, k256 ? 0 : 32, rng);
          check_one(*kern, GemmPath::Auto, pool, false, true, M, 45, k256 ? 512 : 320, dt, true, 0.75f, -0.5f, k256 ? 256 : 32, rng);
        }
      }
      // more rows than one rank's packed A holds (kPackedABytes: 512 rows of K = 4096): row blocks
      check_one(*kern, GemmPath::Auto, pool, false, true, 600, 608, 4096, DType::BF16, true, 1.f, 0.f, 0, rng);
      // K = 0 leaves beta·C + bias
      check_one(*kern, GemmPath::Auto, pool, false, true, 3, 5, 0, DType::F32, true, 1.f, 0.5f, 0, rng);
    }
  }
  // the public entry point, on whatever variant this CPU runs
  {
    Pool pool(2);
    Rng r2(7);
    std::vector<float> x = random_vec(5 * 769, r2), out(5 * 37), bias = random_vec(37, r2);
    Weights w = make_weights(37 * 769, DType::BF16, r2);
    matmul(out.data(), x.data(), w.data(), DType::BF16, bias.data(), 5, 37, 769, pool);
    GemmArgs g{false, true, 5, 37, 769, 1.f, x.data(), 769, w.data(), DType::BF16, 769, 0.f, out.data(), 37, bias.data()};
    double worst = 0;
    int bad = 0;
    for (int m = 0; m < 5; m++)
      for (int n = 0; n < 37; n++)
        if (!within(out[m * 37 + n], ref_at(g, w.f32.data(), nullptr, m, n), 769, &worst)) bad++;
    checks++;
    if (bad) failures++, std::printf("FAIL matmul() public entry: %d bad\n", bad);
  }
  std::printf("check: %d products, %d failed (variants:", checks, failures);
  for (auto* v : variants) std::printf(" %s", v->name);
  std::printf("; active %s)\n", cpu_features());
  return failures ? 1 : 0;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Validates a sample of outputs, then times: returns {best, mean} seconds.
struct Timing {
  double best, mean, best_cpu;  // best_cpu: the calling thread's CPU time (immune to preemption)
};
double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
// --matmul-precision's kernels for bf16 weights (MATMUL_PRECISION=high|medium in `shape`), else the active ones
const CpuKernels& kernels_at(const GemmArgs& g) {
  const CpuKernels* k = g.precision != MatmulPrecision::Highest && g.btype == DType::BF16 ? avx512_dp_kernels(g.precision) : nullptr;
  return k ? *k : active_kernels();
}

Timing time_product(const GemmArgs& g, const float* Bf, ThreadPool& pool, GemmPath path, double min_s) {
  gemm_run(kernels_at(g), g, pool, path);
  Rng rng(99);
  double worst = 0;
  for (int i = 0; i < 256; i++) {
    const int64_t m = rng.next() % g.M, n = rng.next() % g.N;
    // below Highest x is rounded (docs/serving.md's bounds); only the timing is wanted there
    if (g.precision == MatmulPrecision::Highest && !within(g.C[m * g.ldc + n], ref_at(g, Bf, nullptr, m, n), g.K, &worst)) {
      std::printf("VALIDATION FAILED M=%ld N=%ld K=%ld at (%ld,%ld)\n", long(g.M), long(g.N), long(g.K), long(m), long(n));
      std::exit(1);
    }
  }
  double best = 1e30, total = 0, best_cpu = 1e30;
  int reps = 0;
  const double start = now_s();
  while (reps < 3 || now_s() - start < min_s) {
    const double t0 = now_s(), c0 = thread_cpu_s();
    gemm_run(kernels_at(g), g, pool, path);
    const double t = now_s() - t0;
    best_cpu = std::min(best_cpu, thread_cpu_s() - c0);
    best = std::min(best, t);
    total += t;
    reps++;
  }
  return {best, total / reps, best_cpu};
}

// Weights out of cache, as in a decode step of a model larger than L3: cycles
// through copies of B totalling 512 MiB and times each product alone (best and mean).
Timing time_cold(GemmArgs g, const Weights& w, ThreadPool& pool, GemmPath path) {
  const int64_t copies = std::max<int64_t>(2, (int64_t(512) << 20) / int64_t(w.bytes()));
  std::vector<std::vector<char>> ws(copies, std::vector<char>(w.bytes()));
  for (auto& c : ws) std::memcpy(c.data(), w.data(), w.bytes());
  double best = 1e30, total = 0;
  int n = 0;
  for (int rep = 0; rep < 4; rep++)
    for (auto& c : ws) {
      g.B = c.data();
      const double t0 = now_s();
      gemm_run(kernels_at(g), g, pool, path);
      const double t = now_s() - t0;
      best = std::min(best, t);
      total += t;
      n++;
    }
  return {best, total / n, best};
}

// OpenBLAS sgemm N=2048 and STREAM triad on this machine class (shared/BENCH_ANCHORS.md), best.
constexpr double kBlasGflops[3] = {0, 81.5, 149.3};

int cmd_bench(bool quick) {
  const double min_s = quick ? 0.2 : 0.6;
  std::printf("variant %s\n", cpu_features());
  double triad[3] = {0, 0, 0};
  for (int threads : {1, 2}) {
    Pool pool(threads);
    triad[threads] = triad_gbps(quick ? 128 : 256, quick ? 3 : 5, pool);
    const double peak = gemm_peak_gflops(quick ? 1024 : 2048, 3, pool);
    std::printf("probe threads=%d triad %.1f GB/s  gemm_peak(n=%d) %.1f GFLOP/s (%.0f%% of OpenBLAS %.1f)\n", threads,
                triad[threads], quick ? 1024 : 2048, peak, 100 * peak / kBlasGflops[threads], kBlasGflops[threads]);
    std::printf("probe threads=%d instruction peaks: vfmadd231ps %.1f GFLOP/s  vdpbf16ps %.1f GFLOP/s\n", threads,
                instr_peak_gflops(false, 5, pool), instr_peak_gflops(true, 5, pool));
  }
  const int64_t NKs[][2] = {{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}};
  std::printf("\nstream rows: weights cold (cycled through 512 MiB of copies); wGB/s = bytes of w / time\n"
              "packed rows: fraction of OpenBLAS (anchor); cpuGF = GFLOP/s per rank from rank 0's CPU time\n"
              "%-7s %-5s %-4s %5s %6s %6s %9s %9s %9s %9s %8s\n", "path", "dtype", "thr", "M", "N", "K", "ms(best)",
              "ms(mean)", "GFLOP/s", "wGB/s", "fraction");
  Rng rng(1);
  for (int threads : {1, 2}) {
    Pool pool(threads);
    for (DType dt : {DType::F32, DType::BF16, DType::F16})
      for (auto& nk : NKs) {
        const int64_t N = nk[0], K = nk[1];
        Weights w = make_weights(N * K, dt, rng, 0.05f);
        for (int64_t M : {1, 4, 8, 32, 128, 512, 2048}) {
          if (quick && (M == 2048 || M == 4 || M == 32)) continue;
          if (M == 2048 && N == 32000 && dt != DType::F32) continue;
          std::vector<float> x = random_vec(M * K, rng), out(M * N);
          GemmArgs g{false, true, M, N, K, 1.f, x.data(), K, w.data(), dt, K, 0.f, out.data(), N, nullptr};
          const bool stream = M <= active_kernels().stream_max_m;
          Timing t = time_product(g, w.f32.data(), pool, GemmPath::Auto, min_s);
          if (stream) t = time_cold(g, w, pool, GemmPath::Auto);
          const double gf = 2.0 * M * N * K / t.best / 1e9, gbs = w.bytes() / t.best / 1e9;
          std::printf("%-7s %-5s %-4d %5ld %6ld %6ld %9.3f %9.3f %9.1f %9.1f %7.0f%% %s", stream ? "stream" : "packed",
                      dtype_name(dt), threads, long(M), long(N), long(K), t.best * 1e3, t.mean * 1e3, gf, gbs,
                      100 * (stream ? gbs / triad[threads] : gf / kBlasGflops[threads]),
                      stream ? "of triad" : "of OpenBLAS");
          if (!stream) std::printf("  cpuGF %.1f", 2.0 * M * N * K / t.best_cpu / 1e9 / threads);
          std::printf("\n");
        }
      }
  }
  // crossover: where the packed kernel overtakes streaming (2 threads, the MLP up shape)
  std::printf("\ncrossover (2 threads, N=2048 K=768): M  stream-ms  packed-ms\n");
  Pool pool(2);
  for (DType dt : {DType::F32, DType::BF16}) {
    Weights w = make_weights(2048 * 768, dt, rng, 0.05f);
    for (int64_t M : {1, 4, 8, 16, 24, 32, 48, 64}) {
      std::vector<float> x = random_vec(M * 768, rng), out(M * 2048);
      GemmArgs g{false, true, M, 2048, 768, 1.f, x.data(), 768, w.data(), dt, 768, 0.f, out.data(), 2048, nullptr};
      const Timing s = time_product(g, w.f32.data(), pool, GemmPath::Stream, 0.1);
      const Timing p = time_product(g, w.f32.data(), pool, GemmPath::Packed, 0.1);
      std::printf("  %-5s M=%-3ld %8.3f %8.3f %s\n", dtype_name(dt), long(M), s.best * 1e3, p.best * 1e3,
                  s.best < p.best ? "stream" : "packed");
    }
  }
  return 0;
}

// One shape, many short repetitions (the best one is what a quiet machine gives).
int cmd_shape(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: bench-kernels shape M N K f32|bf16|f16 threads [stream|packed]\n");
    return 2;
  }
  const int64_t M = std::atol(argv[2]), N = std::atol(argv[3]), K = std::atol(argv[4]);
  const DType dt = parse_dtype(argv[5]);
  const int threads = std::atoi(argv[6]);
  const std::string p = argc > 7 ? argv[7] : "auto";
  const GemmPath path = p == "stream" ? GemmPath::Stream : p == "packed" ? GemmPath::Packed : GemmPath::Auto;
  Rng rng(3);
  Pool pool(threads);
  Weights w = make_weights(N * K, dt, rng, 0.05f);
  std::vector<float> x = random_vec(M * K, rng), out(M * N);
  GemmArgs g{false, true, M, N, K, 1.f, x.data(), K, w.data(), dt, K, 0.f, out.data(), N, nullptr};
  if (const char* mp = std::getenv("MATMUL_PRECISION")) g.precision = matmul_precision_of(mp);
  Timing t = time_product(g, w.f32.data(), pool, path, 1.0);
  if (std::getenv("COLD")) {
    t = time_cold(g, w, pool, path);
    std::printf("(cold) ");
  }
  std::printf("M=%ld N=%ld K=%ld %s threads=%d %s: best %.3f ms mean %.3f ms  %.1f GFLOP/s  %.1f wGB/s"
              "  (rank-0 CPU time %.3f ms: %.1f GFLOP/s)\n", long(M),
              long(N), long(K), dtype_name(dt), threads, p.c_str(), t.best * 1e3, t.mean * 1e3,
              2.0 * M * N * K / t.best / 1e9, w.bytes() / t.best / 1e9, t.best_cpu * 1e3,
              2.0 * M * N * K / t.best_cpu / 1e9 / threads);
  return 0;
}

// The block formats' kernels one at a time, one thread, the calling thread's CPU time (immune to
// the other tenants of a shared machine): int8 GEMM variants (quant_gemm.h), the streamed int8
// dot products (quant_dot.h: dot512, dot2, dotvnni) and the fp32 dequantizing packed GEMM (level avx512 or
// avx2; their pack_b dequantizes B per call).
using RepackedGemm = bool (*)(const GemmArgs&, int64_t, int64_t, int64_t, int64_t);

// The repacked int8 GEMM a variant name stands for (rep512, repvnni, rep2); null for any other name.
RepackedGemm repacked_gemm(const std::string& v) {
  if (v == "rep512") return quant_gemm_repacked_avx512vnni;
  if (v == "repvnni") return quant_gemm_repacked_avxvnni;
  if (v == "rep2") return quant_gemm_repacked_avx2;
  return nullptr;
}

int cmd_qgemm(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: bench-kernels qgemm M N K q8_0|q4_0|q4_k avx512vnni|avxvnni|avx2|rep512|repvnni|rep2|dot512|dot2|dotvnni|fp32packed|fp32packed-avx2\n");
    return 2;
  }
  const int64_t M = std::atol(argv[2]), N = std::atol(argv[3]), K = std::atol(argv[4]);
  const DType dt = parse_dtype(argv[5]);
  const std::string v = argv[6];
  Rng rng(5);
  Pool pool(1);
  Weights w = make_weights(N * K, dt, rng, 0.05f);
  std::vector<float> x = random_vec(M * K, rng), out(M * N);
  GemmArgs g{false, true, M, N, K, 1.f, x.data(), K, w.data(), dt, K, 0.f, out.data(), N, nullptr};
  // rep*: the same product over the weights repacked as a model repacks them at load (quant_repack.h)
  RepackSet repacked;
  if (v.rfind("rep", 0) == 0 && !(g.packed = repacked.add(w.data(), dt, N, K, pool))) {
    std::fprintf(stderr, "%s weights of %ld rows are not repacked (N a multiple of 16)\n", dtype_name(dt), long(N));
    return 2;
  }
  const RepackedGemm rep = repacked_gemm(v);
  auto once = [&] {
    if (v == "avx512vnni") quant_gemm_avx512vnni(g, 0, M, 0, N);
    else if (rep) rep(g, 0, M, 0, N);
    else if (v == "avxvnni") quant_gemm_avxvnni(g, 0, M, 0, N);
    else if (v == "avx2") quant_gemm_avx2(g, 0, M, 0, N);
    else if (v == "dot512") quant_dot_avx512vnni(g, 0, N);
    else if (v == "dot2") quant_dot_avx2(g, 0, N);
    else if (v == "dotvnni") quant_dot_avxvnni(g, 0, N);
    else if (v == "fp32packed-avx2") gemm_run(*kernels_for(static_cast<int>(KernelLevel::Avx2)), g, pool, GemmPath::Packed);
    else gemm_run(*kernels_for(static_cast<int>(KernelLevel::Avx512)), g, pool, GemmPath::Packed);
  };
  once();
  double worst = 0;
  for (int i = 0; i < 256; i++) {
    const int64_t m = rng.next() % M, n = rng.next() % N;
    if (!within(out[m * N + n], ref_at(g, w.f32.data(), nullptr, m, n), K, &worst)) {
      std::printf("VALIDATION FAILED %s M=%ld N=%ld K=%ld at (%ld,%ld)\n", v.c_str(), long(M), long(N), long(K), long(m), long(n));
      return 1;
    }
  }
  double best = 1e30;
  const double start = now_s();
  for (int reps = 0; reps < 5 || now_s() - start < 1.0; reps++) {
    const double c0 = thread_cpu_s();
    once();
    best = std::min(best, thread_cpu_s() - c0);
  }
  std::printf("qgemm %-10s %-4s M=%-4ld N=%-5ld K=%-5ld cpu %.3f ms  %.1f GOP/s\n", v.c_str(), dtype_name(dt), long(M),
              long(N), long(K), best * 1e3, 2.0 * M * N * K / best / 1e9);
  return 0;
}

}  // namespace

// The decode step's int8 GEMMs of a model of L layers of width K, FFN width F, vocabulary V, on one
// thread, weights repacked (as a model loads them) and read from memory: each product's weights
// are its own copy and the whole stack (the 110M's: 62 MB) is larger than the L3, as in decode.
int cmd_qmodel(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench-kernels qmodel M q8_0|q4_0|q4_k rep512|repvnni|rep2 [layers K F V]\n");
    return 2;
  }
  const int64_t M = std::atol(argv[2]);
  const DType dt = parse_dtype(argv[3]);
  const std::string v = argv[4];
  const RepackedGemm rep = repacked_gemm(v);
  if (!rep) {
    std::fprintf(stderr, "qmodel: the variant is rep512, repvnni or rep2, not %s\n", v.c_str());
    return 2;
  }
  const int64_t L = argc > 5 ? std::atol(argv[5]) : 12, K = argc > 6 ? std::atol(argv[6]) : 768,
                F = argc > 7 ? std::atol(argv[7]) : 2048, V = argc > 8 ? std::atol(argv[8]) : 32000;
  Rng rng(7);
  Pool pool(1);
  struct Product {
    int64_t N, K;
    std::vector<uint8_t> w;
    const RepackedWeight* packed;
  };
  RepackSet set;
  std::vector<Product> ps;
  auto add = [&](int64_t N, int64_t Kp) {
    Weights w = make_weights(N * Kp, dt, rng, 0.05f);
    ps.push_back(Product{N, Kp, std::move(w.blocks), nullptr});
  };
  for (int64_t l = 0; l < L; l++) add(3 * K, K), add(K, K), add(2 * F, K), add(K, F);
  add(V, K);
  double bytes = 0;
  for (Product& p : ps) p.packed = set.add(p.w.data(), dt, p.N, p.K, pool), bytes += double(p.w.size());
  std::vector<float> x = random_vec(M * std::max(K, F), rng), out(M * V);
  auto pass = [&] {
    for (const Product& p : ps) {
      GemmArgs g{false, true, M, p.N, p.K, 1.f, x.data(), p.K, p.w.data(), dt, p.K, 0.f, out.data(), p.N, nullptr};
      g.packed = p.packed;
      rep(g, 0, M, 0, p.N);
    }
  };
  pass();
  std::vector<double> t;
  const double start = now_s();
  for (int reps = 0; reps < 5 || now_s() - start < 1.5; reps++) {
    const double c0 = thread_cpu_s();
    pass();
    t.push_back(thread_cpu_s() - c0);
  }
  std::sort(t.begin(), t.end());
  double macs = 0;
  for (const Product& p : ps) macs += double(M) * double(p.N) * double(p.K);
  std::printf("qmodel %-7s %-4s M=%-3ld %.0f MB  cpu best %.3f ms  p50 %.3f ms  %.1f GMAC/s  %.1f GB/s  %.3f ms a row\n", v.c_str(),
              dtype_name(dt), long(M), bytes / 1e6, t[0] * 1e3, t[t.size() / 2] * 1e3, macs / t[0] / 1e9, bytes / t[0] / 1e9,
              t[0] * 1e3 / double(M));
  return 0;
}

int cmd_attn(int argc, char** argv);  // attn.cc

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "check";
  if (cmd == "check") return cmd_check();
  if (cmd == "shape") return cmd_shape(argc, argv);
  if (cmd == "qgemm") return cmd_qgemm(argc, argv);
  if (cmd == "qmodel") return cmd_qmodel(argc, argv);
  if (cmd == "attn") return cmd_attn(argc, argv);
  if (cmd == "bench") {
    const bool quick = argc > 2 && std::string(argv[2]) == "quick";
    if (cmd_check() != 0) return 1;
    return cmd_bench(quick);
  }
  std::fprintf(stderr, "usage: bench-kernels check | bench [quick]\n");
  return 2;
}
