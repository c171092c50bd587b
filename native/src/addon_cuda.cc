// cudaStatus() and the op-test object of the CUDA library (cuda_library.h loads it).
#include "addon_cuda.h"

#include <string>

#include "addon.h"
#include "cuda_library.h"
#include "errors.h"

namespace hc {

namespace {

const CudaLibrary& library() { return cuda_library(); }
void call(int rc) { cuda_call(rc); }

// HC_CUDA_* share hc::DType's values; the block types are matmul weights only (wdt)
int dt(DType t) {
  if (is_quantized(t)) throw Error("unsupported_dtype", std::string(dtype_name(t)) + " is a matmul weight format: no CUDA conversion to or from it");
  return static_cast<int>(t);
}
int wdt(DType t) { return static_cast<int>(t); }

}  // namespace

Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaLibrary& lib = library();
  Napi::Object o = Napi::Object::New(env);
  o.Set("built", lib.built);
  o.Set("loaded", lib.loaded);
  o.Set("devices", lib.devices);
  o.Set("deviceName", lib.device_name.empty() ? env.Null() : Napi::String::New(env, lib.device_name));
  Napi::Array searched = Napi::Array::New(env, lib.searched.size());
  for (size_t i = 0; i < lib.searched.size(); i++) searched.Set(static_cast<uint32_t>(i), lib.searched[i]);
  o.Set("searched", searched);
  o.Set("error", lib.error.empty() ? env.Null() : Napi::String::New(env, lib.error));
  o.Set("gemm", lib.gemm.empty() ? env.Null() : Napi::String::New(env, lib.gemm));
  Napi::Object blas = Napi::Object::New(env);
  blas.Set("path", lib.blas_path.empty() ? env.Null() : Napi::String::New(env, lib.blas_path));
  blas.Set("version", lib.blas_version);
  Napi::Array bs = Napi::Array::New(env, lib.blas_searched.size());
  for (size_t i = 0; i < lib.blas_searched.size(); i++) bs.Set(static_cast<uint32_t>(i), lib.blas_searched[i]);
  blas.Set("searched", bs);
  blas.Set("error", lib.blas_error.empty() ? env.Null() : Napi::String::New(env, lib.blas_error));
  o.Set("cublasLt", blas);
  return o;
}

Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return addon::guard(env, [&]() -> Napi::Value {
    cuda_require_usable();
    const int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    size_t free_bytes = 0, total_bytes = 0;
    call(library().hc_cuda_device_memory(device, &free_bytes, &total_bytes));
    Napi::Object o = Napi::Object::New(env);
    o.Set("freeBytes", static_cast<double>(free_bytes));
    o.Set("totalBytes", static_cast<double>(total_bytes));
    return o;
  });
}

void CudaOps::matmul(Napi::Env, float* out, const float* x, const void* w, DType t, const float* bias, int64_t M,
                     int64_t N, int64_t K, cpu::MatmulPrecision precision) {
  if (precision != cpu::MatmulPrecision::Highest)
    throw Error("unsupported", "matmulPrecision high and medium run on the CPU only");
  call(library().hc_cuda_matmul(out, x, w, wdt(t), bias, M, N, K));
}
void CudaOps::rmsnorm(Napi::Env, float* out, const float* x, const float* w, int64_t M, int64_t C, float eps) {
  call(library().hc_cuda_rmsnorm(out, x, w, M, C, eps));
}
void CudaOps::rope(Napi::Env, float* x, const int32_t* pos, const float* inv, int64_t T, int64_t H, int64_t HD,
                   float scaling) {
  call(library().hc_cuda_rope(x, pos, inv, T, H, HD, scaling));
}
void CudaOps::rope_qk(Napi::Env, float* q, float* k, const int32_t* pos, const float* inv, int64_t T, int64_t NH,
                      int64_t NKV, int64_t HD, float scaling) {
  call(library().hc_cuda_rope_qk(q, k, pos, inv, T, NH, NKV, HD, scaling));
}
void CudaOps::residual_rmsnorm(Napi::Env, float* x, float* out, const float* b, const float* w, int64_t M, int64_t C,
                               float eps) {
  call(library().hc_cuda_residual_rmsnorm(x, out, b, w, M, C, eps));
}
void CudaOps::attention(Napi::Env, float* out, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                        int64_t NH, int64_t NKV, int64_t HD, int64_t window) {
  call(library().hc_cuda_attention(out, q, k, v, T, S, NH, NKV, HD, window));
}
void CudaOps::paged_attention(Napi::Env, float* out, const float* q, const void* kp, const void* vp, int64_t elems,
                              DType t, const int32_t* tables, int64_t nseq, int64_t max_blocks, const int32_t* seq_of,
                              const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t block_size,
                              int64_t window, int splits) {
  if (t == DType::F16) throw Error("unsupported", "an f16 KV pool runs on the CPU only: the device's is f32 or bf16");
  call(library().hc_cuda_paged_attention(out, q, kp, vp, elems, dt(t), tables, nseq, max_blocks, seq_of, npos, T, NH,
                                         NKV, HD, NKV * block_size * HD, block_size * HD, block_size, window, splits));
}
void CudaOps::swiglu(Napi::Env, float* out, const float* g, const float* u, int64_t N) {
  call(library().hc_cuda_swiglu(out, g, u, N));
}
void CudaOps::lora(Napi::Env, float* out, const float* x, const int32_t* slot, int64_t T, int64_t N, int64_t K,
                   int64_t n, const float* const* a, const int64_t* lda, const float* const* b, const int32_t* rank,
                   const float* scale) {
  call(library().hc_cuda_lora(out, x, slot, T, N, K, n, a, lda, b, rank, scale));
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
