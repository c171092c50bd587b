// Finds and dlopens libhybridchat_cuda.so (HYBRIDCHAT_CUDA_LIB, else beside this addon),
// resolves every entry point of cuda/ops_cuda.h, and counts devices, once per process.
// Whatever fails is kept as the reason cudaStatus() reports and ops("cuda") throws.
#include "addon_cuda.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "cuda/ops_cuda.h"
#include "errors.h"

namespace hc {

namespace {

struct CudaLibrary {
#define HC_FIELD(name) decltype(&::name) name = nullptr;
  HC_CUDA_ENTRY_POINTS(HC_FIELD)
#undef HC_FIELD
  bool built = false;
  bool loaded = false;
  int devices = 0;
  std::string error;  // empty when usable
};

std::string library_path() {
  if (const char* p = std::getenv("HYBRIDCHAT_CUDA_LIB"); p && *p) return p;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&library_path), &info) && info.dli_fname) {
    std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) return self.substr(0, slash + 1) + "libhybridchat_cuda.so";
  }
  return "libhybridchat_cuda.so";
}

CudaLibrary load() {
  CudaLibrary lib;
  const std::string path = library_path();
  lib.built = access(path.c_str(), R_OK) == 0;
  if (!lib.built) {
    lib.error = "the CUDA library was not built (no " + path + "; nvcc was not found at build time)";
    return lib;
  }
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept open for the process's life
  if (!h) {
    const char* e = dlerror();
    lib.error = std::string("cannot load ") + path + ": " + (e ? e : "unknown error");
    return lib;
  }
#define HC_RESOLVE(name)                                                              \
  lib.name = reinterpret_cast<decltype(lib.name)>(dlsym(h, #name));                   \
  if (!lib.name) {                                                                    \
    lib.error = path + " lacks the entry point " #name " (built from older sources?)"; \
    return lib;                                                                       \
  }
  HC_CUDA_ENTRY_POINTS(HC_RESOLVE)
#undef HC_RESOLVE
  lib.loaded = true;
  if (lib.hc_cuda_device_count(&lib.devices) != 0) {
    lib.devices = 0;
    lib.error = std::string("no usable CUDA device: ") + lib.hc_cuda_last_error_message();
  } else if (lib.devices == 0) {
    lib.error = "no CUDA device";
  }
  return lib;
}

const CudaLibrary& library() {
  static const CudaLibrary lib = load();
  return lib;
}

// The library's result code → hc::Error with its code and message.
void call(int rc) {
  if (rc != 0) throw Error(library().hc_cuda_last_error_code(), library().hc_cuda_last_error_message());
}

// HC_CUDA_* share hc::DType's values; the block types are matmul weights only (wdt)
int dt(DType t) {
  if (is_quantized(t)) throw Error("unsupported_dtype", std::string(dtype_name(t)) + " is a matmul weight format: no CUDA conversion to or from it");
  return static_cast<int>(t);
}
int wdt(DType t) { return static_cast<int>(t); }

}  // namespace

bool cuda_usable() { return library().loaded && library().devices > 0; }

void cuda_require_usable() {
  if (!cuda_usable()) throw Error("backend_unavailable", "backend 'cuda' is unavailable: " + library().error);
}

Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaLibrary& lib = library();
  Napi::Object o = Napi::Object::New(env);
  o.Set("built", lib.built);
  o.Set("loaded", lib.loaded);
  o.Set("devices", lib.devices);
  o.Set("error", lib.error.empty() ? env.Null() : Napi::String::New(env, lib.error));
  return o;
}

void CudaOps::matmul(Napi::Env, float* out, const float* x, const void* w, DType t, const float* bias, int64_t M,
                     int64_t N, int64_t K) {
  call(library().hc_cuda_matmul(out, x, w, wdt(t), bias, M, N, K));
}
void CudaOps::rmsnorm(Napi::Env, float* out, const float* x, const float* w, int64_t M, int64_t C, float eps) {
  call(library().hc_cuda_rmsnorm(out, x, w, M, C, eps));
}
void CudaOps::rope(Napi::Env, float* x, const int32_t* pos, const float* inv, int64_t T, int64_t H, int64_t HD,
                   float scaling) {
  call(library().hc_cuda_rope(x, pos, inv, T, H, HD, scaling));
}
void CudaOps::attention(Napi::Env, float* out, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                        int64_t NH, int64_t NKV, int64_t HD, int64_t window) {
  call(library().hc_cuda_attention(out, q, k, v, T, S, NH, NKV, HD, window));
}
void CudaOps::swiglu(Napi::Env, float* out, const float* g, const float* u, int64_t N) {
  call(library().hc_cuda_swiglu(out, g, u, N));
}
void CudaOps::to_f32(Napi::Env, float* out, const void* src, DType t, int64_t n) {
  call(library().hc_cuda_to_f32(out, static_cast<const uint16_t*>(src), dt(t), n));
}
void CudaOps::from_f32(Napi::Env, void* out, const float* src, DType t, int64_t n) {
  call(library().hc_cuda_from_f32(static_cast<uint16_t*>(out), src, dt(t), n));
}
void CudaOps::rmsnorm_backward(Napi::Env, float* dx, float* dw, const float* dout, const float* x, const float* w,
                               int64_t M, int64_t C, float eps) {
  call(library().hc_cuda_rmsnorm_backward(dx, dw, dout, x, w, M, C, eps));
}
void CudaOps::rope_backward(Napi::Env, float* dx, const int32_t* pos, const float* inv, int64_t T, int64_t H,
                            int64_t HD, float scaling) {
  call(library().hc_cuda_rope_backward(dx, pos, inv, T, H, HD, scaling));
}
void CudaOps::attention_train_forward(Napi::Env, float* out, float* lse, const float* q, const float* k,
                                      const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                      int64_t window) {
  call(library().hc_cuda_attention_train_forward(out, lse, q, k, v, T, NH, NKV, HD, window));
}
void CudaOps::attention_backward(Napi::Env, float* dq, float* dk, float* dv, const float* dout, const float* q,
                                 const float* k, const float* v, const float* lse, int64_t T, int64_t NH,
                                 int64_t NKV, int64_t HD, int64_t window) {
  call(library().hc_cuda_attention_backward(dq, dk, dv, dout, q, k, v, lse, T, NH, NKV, HD, window));
}
void CudaOps::swiglu_backward(Napi::Env, float* dg, float* du, const float* dout, const float* g, const float* u,
                              int64_t N) {
  call(library().hc_cuda_swiglu_backward(dg, du, dout, g, u, N));
}
void CudaOps::embedding_backward(Napi::Env, float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                 int64_t C, int64_t V) {
  call(library().hc_cuda_embedding_backward(dtable, dout, tokens, T, C, V));
}
void CudaOps::matmul_backward(Napi::Env, float* dx, float* dw, float* db, const float* dout, const float* x,
                              const void* w, DType t, int64_t M, int64_t N, int64_t K) {
  call(library().hc_cuda_matmul_backward(dx, dw, db, dout, x, w, wdt(t), M, N, K));
}
void CudaOps::logprob(Napi::Env, float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) {
  call(library().hc_cuda_logprob(logp, logits, targets, T, V));
}
void CudaOps::logprob_backward(Napi::Env, float* dlogits, const float* dlogp, const float* logits,
                               const int32_t* targets, int64_t T, int64_t V) {
  call(library().hc_cuda_logprob_backward(dlogits, dlogp, logits, targets, T, V));
}

}  // namespace hc
