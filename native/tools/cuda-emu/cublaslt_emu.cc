// A stand-in libcublasLt for the host emulator: the same C ABI as the slice of cuBLASLt
// that native/src/cuda/cublaslt.cu declares (handle, matmul descriptor with TRANSA/TRANSB,
// column-major matrix layouts, cublasLtMatmul), computing D = alpha·op(A)·op(B) + beta·C
// with a host GEMM (double accumulation) on the "device" memory, which under the
// emulator is host memory. build.sh puts it beside the emulated CUDA library as
// libcublasLt.so.12, where the library's search finds it. It refuses, as cuBLASLt
// would, what the engine must never ask: other compute/scale types, A and B of
// different types, C/D not fp32, a leading dimension shorter than a column, C ≠ D. On a
// stream that captures a graph (stream_abi.h) a matmul is recorded, not run, as on a GPU.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "stream_abi.h"

namespace {

enum Status { kSuccess = 0, kNotInitialized = 1, kInvalidValue = 7, kNotSupported = 15 };
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14, kCompute32F = 68;

struct Desc {
  int compute, scale;
  int32_t transa = 0, transb = 0;
};
struct Layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
};

float half_to_f32(uint16_t h) {
  _Float16 f;
  std::memcpy(&f, &h, 2);
  return static_cast<float>(f);
}
float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// element (r, c) of a column-major matrix stored as `type`
double at(const void* p, int type, int64_t ld, uint64_t r, uint64_t c) {
  const int64_t i = static_cast<int64_t>(c) * ld + static_cast<int64_t>(r);
  if (type == kR32F) return static_cast<const float*>(p)[i];
  const uint16_t h = static_cast<const uint16_t*>(p)[i];
  return type == kR16BF ? bf16_to_f32(h) : half_to_f32(h);
}
bool known(int type) { return type == kR32F || type == kR16F || type == kR16BF; }

// One validated cublasLtMatmul, everything it reads copied (a graph node replays it).
struct Call {
  Desc d;
  Layout a, b, o;
  float al, be;
  const void *A, *B;
  float* D;
  uint64_t m, n, k;
};
void run(const Call& c) {
  for (uint64_t j = 0; j < c.n; j++)
    for (uint64_t i = 0; i < c.m; i++) {
      double s = 0;
      for (uint64_t l = 0; l < c.k; l++)
        s += (c.d.transa ? at(c.A, c.a.type, c.a.ld, l, i) : at(c.A, c.a.type, c.a.ld, i, l)) *
             (c.d.transb ? at(c.B, c.b.type, c.b.ld, j, l) : at(c.B, c.b.type, c.b.ld, l, j));
      float& y = c.D[static_cast<int64_t>(j) * c.o.ld + static_cast<int64_t>(i)];
      y = static_cast<float>(c.al * s + (c.be != 0.0f ? c.be * static_cast<double>(y) : 0.0));
    }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) size_t cublasLtGetVersion(void) { return 120000; }

__attribute__((visibility("default"))) int cublasLtCreate(void** handle) {
  *handle = new (std::nothrow) char[1];
  return *handle ? kSuccess : kNotInitialized;
}
__attribute__((visibility("default"))) int cublasLtDestroy(void* handle) {
  delete[] static_cast<char*>(handle);
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmulDescCreate(void** desc, int compute, int scale) {
  *desc = new Desc{compute, scale};
  return kSuccess;
}
__attribute__((visibility("default"))) int cublasLtMatmulDescDestroy(void* desc) {
  delete static_cast<Desc*>(desc);
  return kSuccess;
}
__attribute__((visibility("default"))) int cublasLtMatmulDescSetAttribute(void* desc, int attr, const void* buf,
                                                                          size_t bytes) {
  Desc* d = static_cast<Desc*>(desc);
  if (bytes != sizeof(int32_t)) return kInvalidValue;
  if (attr == 3) std::memcpy(&d->transa, buf, 4);
  else if (attr == 4) std::memcpy(&d->transb, buf, 4);
  else return kNotSupported;  // the engine sets no other attribute
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatrixLayoutCreate(void** layout, int type, uint64_t rows,
                                                                      uint64_t cols, int64_t ld) {
  if (!known(type)) return kNotSupported;
  if (ld < static_cast<int64_t>(rows) || ld < 1) return kInvalidValue;
  *layout = new Layout{type, rows, cols, ld};
  return kSuccess;
}
__attribute__((visibility("default"))) int cublasLtMatrixLayoutDestroy(void* layout) {
  delete static_cast<Layout*>(layout);
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmul(void* handle, void* desc, const void* alpha, const void* A,
                                                          void* Adesc, const void* B, void* Bdesc, const void* beta,
                                                          const void* C, void* Cdesc, void* D, void* Ddesc,
                                                          const void*, void*, size_t, void* stream) {
  if (!handle) return kNotInitialized;
  const Desc& d = *static_cast<Desc*>(desc);
  const Layout &a = *static_cast<Layout*>(Adesc), &b = *static_cast<Layout*>(Bdesc), &c = *static_cast<Layout*>(Cdesc),
               &o = *static_cast<Layout*>(Ddesc);
  if (d.compute != kCompute32F || d.scale != kR32F || a.type != b.type || c.type != kR32F || o.type != kR32F)
    return kNotSupported;
  if (C != D || c.rows != o.rows || c.cols != o.cols || c.ld != o.ld) return kNotSupported;
  // op(A) is m×k, op(B) k×n, D m×n
  const uint64_t m = d.transa ? a.cols : a.rows, k = d.transa ? a.rows : a.cols;
  const uint64_t kb = d.transb ? b.cols : b.rows, n = d.transb ? b.rows : b.cols;
  if (k != kb || m != o.rows || n != o.cols) return kInvalidValue;
  // descriptors and scalars copied: the caller frees them once the call is queued
  const Call call{d, a, b, o, *static_cast<const float*>(alpha), *static_cast<const float*>(beta), A, B,
                  static_cast<float*>(D), m, n, k};
  if (hc_emu_stream_abi* s = hc_emu_capturing(stream))  // a node of the graph being captured
    s->record(s, [](void* p) { run(*static_cast<const Call*>(p)); }, &call, sizeof call);
  else
    run(call);
  return kSuccess;
}

}  // extern "C"
