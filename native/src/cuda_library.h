// libhybridchat_cuda.so as the engine sees it: found (HYBRIDCHAT_CUDA_LIB, else beside
// the addon), dlopened once per process, every entry point of cuda/ops_cuda.h resolved.
// The addon never links CUDA, so it loads on machines without it; whatever fails is kept
// as the reason (and the paths searched) that cudaStatus() and --device cuda report.
#pragma once
#include <string>
#include <vector>

#include "cuda/ops_cuda.h"

namespace hc {

struct CudaLibrary {
#define HC_FIELD(name) decltype(&::name) name = nullptr;
  HC_CUDA_ENTRY_POINTS(HC_FIELD)
#undef HC_FIELD
  bool built = false;
  bool loaded = false;
  int devices = 0;
  std::string device_name;         // of device 0, "" when none
  std::vector<std::string> searched;  // the library paths tried, in order
  std::string error;               // empty when usable
  // the GEMM behind the device's linears (cuda/cublaslt.cu): "cublaslt" or "builtin"
  std::string gemm;
  std::string blas_path;                   // the libcublasLt loaded, "" when none
  std::vector<std::string> blas_searched;  // the cuBLASLt paths tried, in order
  std::string blas_error;                  // why none loaded ("" when one did)
  int blas_version = 0;
};

const CudaLibrary& cuda_library();
// True when the library loaded and at least one device answers.
bool cuda_usable();
// Throws Error("backend_unavailable", why + the paths searched) unless cuda_usable().
void cuda_require_usable();
// A library call's result code → hc::Error with the library's code and message.
void cuda_call(int rc);

}  // namespace hc
