#include "cuda_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "errors.h"

namespace hc {

namespace {

std::string beside_addon() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&beside_addon), &info) && info.dli_fname) {
    std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) return self.substr(0, slash + 1) + "libhybridchat_cuda.so";
  }
  return "libhybridchat_cuda.so";
}

CudaLibrary load() {
  CudaLibrary lib;
  const char* env = std::getenv("HYBRIDCHAT_CUDA_LIB");
  const std::string path = env && *env ? std::string(env) : beside_addon();
  lib.searched.push_back(path);
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
  } else {
    char name[256] = "";
    if (lib.hc_cuda_device_name(0, name, sizeof name) == 0) lib.device_name = name;
    // cuBLASLt is searched once, here, so start-up can say which GEMM serves
    lib.gemm = lib.hc_cuda_gemm_backend();
    lib.blas_path = lib.hc_cuda_blas_path();
    lib.blas_error = lib.hc_cuda_blas_error();
    lib.blas_version = lib.hc_cuda_blas_version();
    const std::string searched = lib.hc_cuda_blas_searched();
    for (size_t at = 0; at < searched.size();) {
      const size_t nl = std::min(searched.find('\n', at), searched.size());
      lib.blas_searched.push_back(searched.substr(at, nl - at));
      at = nl + 1;
    }
  }
  return lib;
}

}  // namespace

const CudaLibrary& cuda_library() {
  static const CudaLibrary lib = load();
  return lib;
}

bool cuda_usable() { return cuda_library().loaded && cuda_library().devices > 0; }

void cuda_require_usable() {
  if (cuda_usable()) return;
  std::string paths;
  for (const std::string& p : cuda_library().searched) paths += (paths.empty() ? "" : ", ") + p;
  throw Error("backend_unavailable", "backend 'cuda' is unavailable: " + cuda_library().error +
                                         " (library paths searched: " + paths +
                                         "; set HYBRIDCHAT_CUDA_LIB to name another)");
}

void cuda_call(int rc) {
  if (rc != 0) throw Error(cuda_library().hc_cuda_last_error_code(), cuda_library().hc_cuda_last_error_message());
}

}  // namespace hc
