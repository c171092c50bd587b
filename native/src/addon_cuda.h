// The CUDA backend as the addon sees it: libhybridchat_cuda.so, dlopened at run time
// so the addon itself never links CUDA and loads on machines without it.
#pragma once
#include <napi.h>

#include <cstdint>

#include "cpu/matmul_kernels.h"
#include "cuda_library.h"
#include "dtype.h"

namespace hc {

// JS: cudaStatus() → {built, loaded, devices, deviceName, error}
Napi::Value CudaStatus(const Napi::CallbackInfo& info);
// JS: cudaMemory(device) → {freeBytes, totalBytes} now; throws backend_unavailable without a device
Napi::Value CudaMemory(const Napi::CallbackInfo& info);

// The GPU twin of addon.cc's CpuOps: host arrays in and out, a failure thrown as
// hc::Error with the library's code.
struct CudaOps {
  // precision: only Highest (the CUDA kernels keep x in fp32)
  static void matmul(Napi::Env, float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M,
                     int64_t N, int64_t K, cpu::MatmulPrecision precision);
  static void rmsnorm(Napi::Env, float* out, const float* x, const float* w, int64_t M, int64_t C, float eps);
  static void rope(Napi::Env, float* x, const int32_t* pos, const float* inv, int64_t T, int64_t H, int64_t HD,
                   float scaling);
  static void rope_qk(Napi::Env, float* q, float* k, const int32_t* pos, const float* inv, int64_t T, int64_t NH,
                      int64_t NKV, int64_t HD, float scaling);
  static void residual_rmsnorm(Napi::Env, float* x, float* out, const float* b, const float* w, int64_t M, int64_t C,
                               float eps);
  static void attention(Napi::Env, float* out, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                        int64_t NH, int64_t NKV, int64_t HD, int64_t window);
  static void paged_attention(Napi::Env, float* out, const float* q, const void* kp, const void* vp, int64_t elems,
                              DType dt, const int32_t* tables, int64_t nseq, int64_t max_blocks, const int32_t* seq_of,
                              const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t block_size,
                              int64_t window, int splits);
  static void swiglu(Napi::Env, float* out, const float* g, const float* u, int64_t N);
  static void lora(Napi::Env, float* out, const float* x, const int32_t* slot, int64_t T, int64_t N, int64_t K,
                   int64_t n, const float* const* a, const int64_t* lda, const float* const* b, const int32_t* rank,
                   const float* scale);
  static void to_f32(Napi::Env, float* out, const void* src, DType dt, int64_t n);
  static void from_f32(Napi::Env, void* out, const float* src, DType dt, int64_t n);
  static void rmsnorm_backward(Napi::Env, float* dx, float* dw, const float* dout, const float* x, const float* w,
                               int64_t M, int64_t C, float eps);
  static void rope_backward(Napi::Env, float* dx, const int32_t* pos, const float* inv, int64_t T, int64_t H,
                            int64_t HD, float scaling);
  static void attention_train_forward(Napi::Env, float* out, float* lse, const float* q, const float* k,
                                      const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window);
  static void attention_backward(Napi::Env, float* dq, float* dk, float* dv, const float* dout, const float* q,
                                 const float* k, const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV,
                                 int64_t HD, int64_t window);
  static void swiglu_backward(Napi::Env, float* dg, float* du, const float* dout, const float* g, const float* u,
                              int64_t N);
  static void embedding_backward(Napi::Env, float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                 int64_t C, int64_t V);
  static void matmul_backward(Napi::Env, float* dx, float* dw, float* db, const float* dout, const float* x,
                              const void* w, DType dt, int64_t M, int64_t N, int64_t K);
  static void logprob(Napi::Env, float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V);
  static void logprob_backward(Napi::Env, float* dlogits, const float* dlogp, const float* logits,
                               const int32_t* targets, int64_t T, int64_t V);
};

}  // namespace hc
