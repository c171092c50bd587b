// Decides once whether the AVX2/FMA/F16C kernel variants may run on this CPU.
#include <cstdlib>

#include "ops.h"

namespace hc::cpu {

bool use_avx2() {
#if defined(HC_HAVE_AVX2_TU) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = [] {
    // HYBRIDCHAT_SCALAR=1 forces the portable kernels (the op tests use it to check both variants)
    const char* force = std::getenv("HYBRIDCHAT_SCALAR");
    if (force && force[0] == '1') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return ok;
#else
  return false;
#endif
}

}  // namespace hc::cpu
