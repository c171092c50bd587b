// The device GEMM through cuBLASLt, loaded at run time (as ../dist/comm_nccl.cc loads
// NCCL): the few types, enums and entry points used are declared here from cuBLASLt's
// stable C ABI (cublasLt.h of CUDA 12/13), so the build needs neither its headers nor
// the library. Where it is found, f32/bf16/f16 weights go through cublasLtMatmul
// (bf16/f16: the activations rounded to the weight's type by a small kernel, tensor-core
// inputs, fp32 compute and fp32 output, as vLLM/llama.cpp's cuBLAS path; f32: fp32
// compute, TF32 off, so it holds the CPU's 1e-4); without it — or for llama.cpp's block
// types, which cuBLASLt cannot read — the library's own tiled GEMM (gemm.cuh) serves.
// Absence is a fallback, not an error: the reason and every path searched are kept for
// cudaStatus() / the start-up line / GET /health (hc_cuda_blas_*).
#include <dlfcn.h>
#include <glob.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "elementwise.cuh"
#include "gemm.cuh"
#include "launch.cuh"

namespace hc::cuda::lt {

// ---- cublasLt.h, by hand (values of cublas_api.h / library_types.h) ----
using Status = int;  // CUBLAS_STATUS_SUCCESS = 0
using Handle = void*;
using MatmulDesc = void*;
using Layout = void*;
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14;  // cudaDataType
constexpr int kCompute32F = 68;                   // CUBLAS_COMPUTE_32F: fp32 math, no TF32
constexpr int kDescTransA = 3, kDescTransB = 4;   // cublasLtMatmulDescAttributes_t
constexpr int32_t kOpN = 0, kOpT = 1;             // cublasOperation_t

struct Api {
  Status (*Create)(Handle*);
  size_t (*GetVersion)();
  Status (*MatmulDescCreate)(MatmulDesc*, int compute, int scale_type);
  Status (*MatmulDescDestroy)(MatmulDesc);
  Status (*MatmulDescSetAttribute)(MatmulDesc, int attr, const void* buf, size_t bytes);
  Status (*MatrixLayoutCreate)(Layout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*MatrixLayoutDestroy)(Layout);
  Status (*Matmul)(Handle, MatmulDesc, const void* alpha, const void* A, Layout, const void* B, Layout,
                   const void* beta, const void* C, Layout, void* D, Layout, const void* algo, void* workspace,
                   size_t workspace_bytes, cudaStream_t);
};

struct Loaded {
  Api api{};
  bool ok = false;
  std::string path, searched, error;  // searched: one path a line
  size_t version = 0;
};

const char* const kSonames[] = {"libcublasLt.so.13", "libcublasLt.so.12"};

// the folder this library was loaded from (a packager may put cuBLASLt beside it; the
// emulator's build.sh puts its stand-in there)
std::string own_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&own_dir), &info) && info.dli_fname) {
    const std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) return self.substr(0, slash);
  }
  return ".";
}

// Candidates in search order: HYBRIDCHAT_CUBLASLT_LIB alone when set; else beside this
// library, the CUDA toolkit, the loader's own search (LD_LIBRARY_PATH, ld.so.cache) by
// soname, and the nvidia-cublas wheels of every site-packages. Globs that match nothing
// are listed as the pattern, so the report names every place looked at.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  auto in_dir = [&](const std::string& dir) {
    for (const char* so : kSonames) out.push_back(dir + "/" + so);
  };
  auto in_glob = [&](const std::string& pattern) {
    glob_t g{};
    if (glob(pattern.c_str(), 0, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++) in_dir(g.gl_pathv[i]);
    else
      in_dir(pattern);
    globfree(&g);
  };
  in_dir(own_dir());
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"})
    if (const char* h = std::getenv(var); h && *h) {
      in_dir(std::string(h) + "/lib64");
      in_dir(std::string(h) + "/targets/x86_64-linux/lib");
    }
  in_glob("/usr/local/cuda*/lib64");
  in_glob("/usr/local/cuda*/targets/x86_64-linux/lib");
  for (const char* so : kSonames) out.push_back(so);  // dlopen's own search: LD_LIBRARY_PATH, ld.so.cache
  std::vector<std::string> sites = {"/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages",
                                    "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages"};
  if (const char* home = std::getenv("HOME"); home && *home)
    sites.push_back(std::string(home) + "/.local/lib/python3*/site-packages");
  if (const char* venv = std::getenv("VIRTUAL_ENV"); venv && *venv)
    sites.push_back(std::string(venv) + "/lib/python3*/site-packages");
  for (const std::string& s : sites) in_glob(s + "/nvidia/cublas/lib");
  return out;
}

bool resolve(Api& a, void* h, std::string& missing) {
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (!fn && missing.empty()) missing = name;
  };
  sym(a.Create, "cublasLtCreate");
  sym(a.GetVersion, "cublasLtGetVersion");
  sym(a.MatmulDescCreate, "cublasLtMatmulDescCreate");
  sym(a.MatmulDescDestroy, "cublasLtMatmulDescDestroy");
  sym(a.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
  sym(a.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
  sym(a.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
  sym(a.Matmul, "cublasLtMatmul");
  return missing.empty();
}

Loaded load() {
  Loaded l;
  const char* env = std::getenv("HYBRIDCHAT_CUBLASLT_LIB");
  if (env && std::string(env) == "none") {
    l.error = "cuBLASLt disabled by HYBRIDCHAT_CUBLASLT_LIB=none";
    return l;
  }
  const std::vector<std::string> paths = env && *env ? std::vector<std::string>{env} : candidates();
  std::string failures;
  for (const std::string& p : paths) {
    l.searched += (l.searched.empty() ? "" : "\n") + p;
    void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept open for the process's life
    if (!h) {
      // a file that exists but does not load is worth saying; "no such file" is the usual case
      const char* e = dlerror();
      if (e && !std::string(e).empty() && std::string(e).find("No such file") == std::string::npos &&
          std::string(e).find("cannot open shared object") == std::string::npos)
        failures += std::string("; ") + e;
      continue;
    }
    std::string missing;
    if (!resolve(l.api, h, missing)) {
      failures += "; " + p + " lacks " + missing;
      continue;
    }
    l.ok = true;
    l.path = p;
    l.version = l.api.GetVersion();
    return l;
  }
  l.error = (env && *env ? "HYBRIDCHAT_CUBLASLT_LIB=" + std::string(env) + " does not load"
                         : std::string("cuBLASLt (libcublasLt.so.13/.12) was not found")) +
            failures;
  return l;
}

const Loaded& loaded() {
  static const Loaded l = load();
  return l;
}

// A device's handle and workspace, and the buffer its activations are rounded into.
// One mutex per device: ops of one device are queued on its default stream in call
// order, so the buffer is free again once the matmul that read it is queued after it.
struct PerDevice {
  std::mutex mu;
  Handle handle = nullptr;
  void* workspace = nullptr;
  void* xbuf = nullptr;
  size_t xbytes = 0;
};
constexpr size_t kWorkspace = 32u << 20;

PerDevice& device_state() {
  static std::mutex mu;
  static std::map<int, PerDevice> all;  // never freed: lives as long as the process's handles
  int dev = 0;
  HC_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  PerDevice& d = all[dev];
  return d;
}

void ok(Status s, const char* what) {
  require(s == 0, "cuda_error", std::string(what) + " failed (cublasStatus " + std::to_string(s) + ")");
}

// dst[r, c] (contiguous, cols wide) = src[r·ld + c] rounded to bf16/f16
template <int Dt>
__global__ void round_rows_kernel(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  HC_FOR_EACH_ELEMENT(e, rows * cols) {
    const float v = src[e / cols * ld + e % cols];
    dst[e] = Dt == HC_CUDA_BF16 ? f32_to_bf16(v) : f32_to_f16(v);
  }
}

// out[i, j] += bias[j]
__global__ void add_bias_kernel(float* out, const float* bias, int64_t M, int64_t N, int64_t ldc) {
  HC_FOR_EACH_ELEMENT(e, M * N) out[e / N * ldc + e % N] += bias[e % N];
}

// Owns the descriptors of one call.
struct Descs {
  const Api& a;
  MatmulDesc desc = nullptr;
  Layout la = nullptr, lb = nullptr, lc = nullptr;
  ~Descs() {
    for (Layout l : {la, lb, lc})
      if (l) a.MatrixLayoutDestroy(l);
    if (desc) a.MatmulDescDestroy(desc);
  }
};

}  // namespace hc::cuda::lt

namespace hc::cuda {

bool blas_loaded() { return lt::loaded().ok; }

// Row-major C[M,N] = alpha·op(A)·op(B) + beta·C (+ bias) through cuBLASLt, which is
// column-major: the same memory is Cᵀ[N,M] = op(B)ᵀ·op(A)ᵀ, so B is cuBLASLt's "A"
// (transposed when B is stored [N,K], i.e. tb) and A its "B". A linear (w [N,K], tb)
// is the TN case tensor-core kernels favour.
void blas_gemm(float* C, const float* A, const void* B, int dtype, const float* bias, int64_t M, int64_t N, int64_t K,
               int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb, float alpha, float beta,
               cudaStream_t stream) {
  using namespace lt;
  const Api& a = loaded().api;
  if (M <= 0 || N <= 0) return;
  PerDevice& d = device_state();
  std::lock_guard<std::mutex> lock(d.mu);
  if (!d.handle) {
    ok(a.Create(&d.handle), "cublasLtCreate");
    HC_CUDA_CHECK(cudaMalloc(&d.workspace, kWorkspace));
  }
  const void* act = A;
  int type = kR32F;
  if (dtype != HC_CUDA_F32) {
    // the activations as stored: [M,K] (or [K,M] when ta) with leading dimension lda
    const int64_t rows = ta ? K : M, cols = ta ? M : K;
    const size_t bytes = static_cast<size_t>(rows * cols) * 2;
    if (d.xbytes < bytes) {
      if (d.xbuf) HC_CUDA_CHECK(cudaFree(d.xbuf)), buffers_epoch()++;
      d.xbuf = nullptr, d.xbytes = 0;
      HC_CUDA_CHECK(cudaMalloc(&d.xbuf, bytes));
      d.xbytes = bytes;
    }
    uint16_t* x = static_cast<uint16_t*>(d.xbuf);
    if (dtype == HC_CUDA_BF16)
      round_rows_kernel<HC_CUDA_BF16><<<elem_grid(rows * cols), kElemThreads, 0, stream>>>(x, A, rows, cols, lda);
    else
      round_rows_kernel<HC_CUDA_F16><<<elem_grid(rows * cols), kElemThreads, 0, stream>>>(x, A, rows, cols, lda);
    HC_CUDA_LAUNCHED("round_rows_kernel");
    act = x;
    lda = cols;
    type = dtype == HC_CUDA_BF16 ? kR16BF : kR16F;
  }
  Descs s{a};
  ok(a.MatmulDescCreate(&s.desc, kCompute32F, kR32F), "cublasLtMatmulDescCreate");
  const int32_t opa = tb ? kOpT : kOpN, opb = ta ? kOpT : kOpN;
  ok(a.MatmulDescSetAttribute(s.desc, kDescTransA, &opa, sizeof opa), "cublasLtMatmulDescSetAttribute(TRANSA)");
  ok(a.MatmulDescSetAttribute(s.desc, kDescTransB, &opb, sizeof opb), "cublasLtMatmulDescSetAttribute(TRANSB)");
  // cuBLASLt's A = B as stored: [N,K] row-major (tb) is K×N column-major, else [K,N] is N×K
  ok(a.MatrixLayoutCreate(&s.la, type, tb ? K : N, tb ? N : K, ldb), "cublasLtMatrixLayoutCreate(A)");
  ok(a.MatrixLayoutCreate(&s.lb, type, ta ? M : K, ta ? K : M, lda), "cublasLtMatrixLayoutCreate(B)");
  ok(a.MatrixLayoutCreate(&s.lc, kR32F, N, M, ldc), "cublasLtMatrixLayoutCreate(C)");
  ok(a.Matmul(d.handle, s.desc, &alpha, B, s.la, act, s.lb, &beta, C, s.lc, C, s.lc, nullptr, d.workspace, kWorkspace,
              stream),
     "cublasLtMatmul");
  if (bias) {
    add_bias_kernel<<<elem_grid(M * N), kElemThreads, 0, stream>>>(C, bias, M, N, ldc);
    HC_CUDA_LAUNCHED("add_bias_kernel");
  }
}

}  // namespace hc::cuda

extern "C" {

const char* hc_cuda_gemm_backend(void) { return hc::cuda::blas_loaded() ? "cublaslt" : "builtin"; }
const char* hc_cuda_blas_path(void) { return hc::cuda::lt::loaded().path.c_str(); }
const char* hc_cuda_blas_searched(void) { return hc::cuda::lt::loaded().searched.c_str(); }
const char* hc_cuda_blas_error(void) { return hc::cuda::lt::loaded().error.c_str(); }
int hc_cuda_blas_version(void) { return static_cast<int>(hc::cuda::lt::loaded().version); }

}  // extern "C"
