// matmul()/gemm() entry points: pick the kernel variant once, split the work
// over the pool's ranks. Also the portable variant, which compiles anywhere.
#include "matmul.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "../errors.h"
#include "dispatch.h"
#include "gemm.h"
#include "matmul_driver.h"
#include "matmul_kernels.h"
#include "ops.h"

namespace hc::cpu {
namespace {

// Plain C++ tile (the compiler vectorises it with whatever the target has).
struct PortableMicro {
  static constexpr int64_t MR = 4, NR = 8, KC = 256, MC = 128, NC = 2048;
  static float half(uint16_t h) { return f16_to_f32(h); }
  template <DType DT>
  static bool pack_bt(const void*, int64_t, int64_t, int64_t, int64_t, float*) {
    return false;
  }
  static void tile(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, float alpha,
                   float beta, const float* bias) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; k++, Ap += MR, Bp += NR)
      for (int64_t i = 0; i < MR; i++)
        for (int64_t j = 0; j < NR; j++) acc[i][j] += Ap[i] * Bp[j];
    for (int64_t i = 0; i < MR; i++)
      for (int64_t j = 0; j < NR; j++) {
        float v = alpha * acc[i][j];
        if (beta != 0.f) v += beta * C[i * ldc + j];
        if (bias) v += bias[j];
        C[i * ldc + j] = v;
      }
  }
};

// Converts (dequantizes) each B row to fp32 once, then dots it with every row of A.
void portable_gemv(const GemmArgs& g, int64_t n0, int64_t n1) {
  thread_local std::vector<float> row;
  row.resize(g.K);
  for (int64_t n = n0; n < n1; n++) {
    to_f32(row.data(), static_cast<const char*>(g.B) + dtype_bytes(g.btype, n * g.ldb), g.btype, g.K);
    for (int64_t m = 0; m < g.M; m++) {
      const float* a = g.A + m * g.lda;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t k = 0;
      for (; k + 4 <= g.K; k += 4) {
        s0 += a[k] * row[k];
        s1 += a[k + 1] * row[k + 1];
        s2 += a[k + 2] * row[k + 2];
        s3 += a[k + 3] * row[k + 3];
      }
      for (; k < g.K; k++) s0 += a[k] * row[k];
      float v = g.alpha * ((s0 + s1) + (s2 + s3));
      float* c = g.C + m * g.ldc + n;
      if (g.beta != 0.f) v += g.beta * *c;
      if (g.bias) v += g.bias[n];
      *c = v;
    }
  }
}

const CpuKernels kPortable = {"portable", 2 * PortableMicro::MR, 2 * PortableMicro::NR, 16, &driver::gemm_tile<PortableMicro>,
                               &portable_gemv, &driver::gemm_chunk<PortableMicro>, false};

// [begin, end) of rank r's share of n items, cut at multiples of `align`.
inline void split(int64_t n, int r, int nranks, int64_t align, int64_t& b, int64_t& e) {
  const int64_t units = (n + align - 1) / align;
  b = std::min(n, units * r / nranks * align);
  e = std::min(n, units * (r + 1) / nranks * align);
}

}  // namespace

const CpuKernels& portable_kernels() { return kPortable; }

// The AVX2 and AVX-512 translation units are only built (HC_HAVE_AVX2_TU,
// HC_HAVE_AVX512_TU) on x86.
const CpuKernels* kernels_for(int level) {
  switch (static_cast<KernelLevel>(level)) {
    case KernelLevel::Portable: return &kPortable;
#if defined(HC_HAVE_AVX2_TU)
    case KernelLevel::Avx2: return avx2_kernels();
#endif
#if defined(HC_HAVE_AVX512_TU)
    case KernelLevel::Avx512:
    case KernelLevel::Avx512Vnni:
    case KernelLevel::Avx512Bf16: return avx512_kernels(static_cast<KernelLevel>(level));
#endif
    default: return nullptr;
  }
}

uint64_t next_region_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// One decision for every kernel family (dispatch.h: CPU flags, HYBRIDCHAT_KERNELS).
const CpuKernels& active_kernels() {
  static const CpuKernels* k = [] {
    // a level whose TU this compiler could not build falls back to the one below
    for (int l = static_cast<int>(kernel_level()); l > 0; l--)
      if (const CpuKernels* v = kernels_for(l)) return v;
    return &kPortable;
  }();
  return *k;
}

void gemm_run(const CpuKernels& k, const GemmArgs& g, ThreadPool& pool, GemmPath path) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {  // empty sum: only beta·C and the bias remain
    for (int64_t m = 0; m < g.M; m++)
      for (int64_t n = 0; n < g.N; n++) {
        float& c = g.C[m * g.ldc + n];
        c = (g.beta != 0.f ? g.beta * c : 0.f) + (g.bias ? g.bias[n] : 0.f);
      }
    return;
  }
  const bool gemv = path == GemmPath::Auto ? streams(k, g) : path == GemmPath::Stream && !g.ta && g.tb;
  if (!gemv && g.N >= g.M && chunks_packed(k, g)) return gemm_packed(k, &g, 1, pool);  // balanced column chunks
  // split the larger output dimension, in whole register tiles
  const bool by_n = gemv || g.N >= g.M;
  auto body = [&](int r, int nranks) {
    int64_t b, e;
    if (by_n) {
      split(g.N, r, nranks, k.nr, b, e);
      if (b >= e) return;
      if (gemv)
        k.gemv_cols(g, b, e);
      else
        k.gemm_tile(g, 0, g.M, b, e);
    } else {
      split(g.M, r, nranks, k.mr, b, e);
      if (b < e) k.gemm_tile(g, b, e, 0, g.N);
    }
  };
  if (pool.size() == 1 || 2 * g.M * g.N * g.K < kParallelMinFlops)
    body(0, 1);
  else if (gemv) {  // bound by memory: balanced by chunks from a shared counter, not by halves (threadpool.h)
    GemmArgs gx = g;
    gx.x_id = next_region_id();  // x prepared once per rank, not once per chunk
    pool.run_chunks(g.N, k.nr, stream_chunk(k, g), [&](int64_t b, int64_t e) { k.gemv_cols(gx, b, e); });
  }
  else
    pool.run(body);
}

// (else Highest: never less precise than asked)
const CpuKernels& kernels_of(const GemmArgs& g) {
#if defined(HC_HAVE_AVX512_TU)
  if (g.precision != MatmulPrecision::Highest && g.btype == DType::BF16 && !g.ta && g.tb &&
      kernel_level() >= KernelLevel::Avx512 && cpu_level() >= KernelLevel::Avx512Bf16)
    if (const CpuKernels* k = avx512_dp_kernels(g.precision)) return *k;
#endif
  return active_kernels();
}

MatmulPrecision matmul_precision_of(const std::string& name) {
  if (name == "highest") return MatmulPrecision::Highest;
  if (name == "high") return MatmulPrecision::High;
  if (name == "medium") return MatmulPrecision::Medium;
  throw Error("invalid_argument", "matmulPrecision must be highest, high or medium, not \"" + name + "\"");
}

namespace {
void gemm_checked(const GemmArgs& g, ThreadPool& pool) {
  // blocks never span rows of B, and the streaming kernels step a block at a time
  const int64_t be = block_elems(g.btype);
  if (g.ldb % be != 0 || (g.tb ? g.K : g.N) % be != 0)
    throw Error("invalid_argument", "quantized weights need rows of a multiple of " + std::to_string(be) + " (K = " +
                                        std::to_string(g.tb ? g.K : g.N) + ", ldb = " + std::to_string(g.ldb) + ")");
  gemm_run(kernels_of(g), g, pool);
}
}  // namespace

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const void* B, DType btype, int64_t ldb, float beta, float* C, int64_t ldc,
          const float* bias, ThreadPool& pool, MatmulPrecision precision, bool exact_x) {
  gemm_checked(GemmArgs{ta, tb, M, N, K, alpha, A, lda, B, btype, ldb, beta, C, ldc, bias, precision, exact_x}, pool);
}

void matmul(float* out, const float* x, const void* w, DType wtype, const float* bias, int64_t M,
            int64_t N, int64_t K, ThreadPool& pool, MatmulPrecision precision, bool exact_x,
            const RepackedWeight* packed) {
  gemm_checked(GemmArgs{false, true, M, N, K, 1.f, x, K, w, wtype, K, 0.f, out, N, bias, precision, exact_x, packed},
               pool);
}

bool reads_repacked_weights() { return active_kernels().repacked; }

void matmul_backward(float* dx, float* dw, float* dbias, const float* dout, const float* x, const void* w,
                     DType wtype, int64_t M, int64_t N, int64_t K, ThreadPool& pool) {
  if (dx) gemm(false, false, M, K, N, 1.f, dout, N, w, wtype, K, 0.f, dx, K, nullptr, pool);
  if (dw) gemm(true, false, N, K, M, 1.f, dout, N, x, DType::F32, K, 1.f, dw, K, nullptr, pool);
  if (dbias)  // each column summed in row order: deterministic whatever the split
    pool.parallel_for(N, 1024, [&](int64_t b, int64_t e) {
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = b; n < e; n++) dbias[n] += dout[m * N + n];
    });
}

}  // namespace hc::cpu
