// Devices and the per-thread last error of the C API.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include "common.cuh"

namespace hc::cuda {

namespace {
thread_local const char* last_code = "";
thread_local char last_message[512] = "";
}  // namespace

int fail(const char* code, const char* message) {
  last_code = code;
  std::snprintf(last_message, sizeof last_message, "%s", message);
  return 1;
}

}  // namespace hc::cuda

using hc::cuda::entry;

extern "C" {

const char* hc_cuda_last_error_code(void) { return hc::cuda::last_code; }
const char* hc_cuda_last_error_message(void) { return hc::cuda::last_message; }

int hc_cuda_device_count(int* count) {
  *count = 0;
  return entry([&] {
    const cudaError_t e = cudaGetDeviceCount(count);
    // cudart says "driver version is insufficient" also when there is no driver at all
    if (e == cudaErrorInsufficientDriver && !dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD) &&
        !dlopen("libcuda.so.1", RTLD_LAZY)) {
      cudaGetLastError();
      throw hc::cuda::Failure("cuda_unavailable", "no CUDA driver on this machine (libcuda.so.1 cannot be loaded)");
    }
    HC_CUDA_CHECK(e);
  });
}

int hc_cuda_device_name(int device, char* name, size_t len) {
  return entry([&] {
    cudaDeviceProp p;
    HC_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    std::snprintf(name, len, "%s", p.name);
  });
}

int hc_cuda_device_memory(int device, size_t* free_bytes, size_t* total_bytes) {
  return entry([&] {
    HC_CUDA_CHECK(cudaSetDevice(device));
    HC_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
  });
}

}  // extern "C"
