// Decides once which kernel variants may run on this CPU (dispatch.h).
#include "dispatch.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ops.h"

namespace hc::cpu {
namespace {

constexpr const char* kNames[] = {"portable", "avx2", "avx512", "avx512vnni", "avx512bf16"};
constexpr int kLevels = sizeof(kNames) / sizeof(kNames[0]);

KernelLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  KernelLevel l = KernelLevel::Portable;
#if defined(HC_HAVE_AVX2_TU)
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))) return l;
  l = KernelLevel::Avx2;
#endif
#if defined(HC_HAVE_AVX512_TU)
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
    return l;
  l = KernelLevel::Avx512;
  if (!__builtin_cpu_supports("avx512vnni")) return l;
  l = KernelLevel::Avx512Vnni;
  if (__builtin_cpu_supports("avx512bf16")) l = KernelLevel::Avx512Bf16;
#endif
  return l;
#else
  return KernelLevel::Portable;
#endif
}

}  // namespace

const char* level_name(KernelLevel l) { return kNames[static_cast<int>(l)]; }

KernelLevel cpu_level() {
  static const KernelLevel l = detect();
  return l;
}

KernelLevel kernel_level() {
  static const KernelLevel l = [] {
    const KernelLevel best = cpu_level();
    const char* want = std::getenv("HYBRIDCHAT_KERNELS");
    // avx512bf16 only when asked for: its GEMV keeps the activations to ~16 bits (hi + lo
    // bf16), elements off by up to ~1e-3 relative where avx512 is ~3e-5, for 0–15 % speed
    if (!want || !*want) return best == KernelLevel::Avx512Bf16 ? KernelLevel::Avx512Vnni : best;
    for (int i = 0; i < kLevels; i++)
      if (std::strcmp(want, kNames[i]) == 0) {
        if (i <= static_cast<int>(best)) return static_cast<KernelLevel>(i);
        std::fprintf(stderr, "hybridchat: HYBRIDCHAT_KERNELS=%s is not runnable here; using %s\n", want,
                     level_name(best));
        return best;
      }
    std::fprintf(stderr, "hybridchat: HYBRIDCHAT_KERNELS=%s is none of portable|avx2|avx512|avx512vnni|avx512bf16; using %s\n",
                 want, level_name(best));
    return best;
  }();
  return l;
}

std::vector<std::string> runnable_levels() {
  std::vector<std::string> out;
  for (int i = 0; i <= static_cast<int>(cpu_level()); i++) out.emplace_back(kNames[i]);
  return out;
}

bool use_avx_vnni() {
  static const bool on = [] {
#if defined(HC_HAVE_AVXVNNI_TU)
    __builtin_cpu_init();
    const char* env = std::getenv("HYBRIDCHAT_AVX_VNNI");
    return __builtin_cpu_supports("avxvnni") && cpu_level() >= KernelLevel::Avx2 && !(env && std::strcmp(env, "0") == 0);
#else
    return false;
#endif
  }();
  return on;
}

bool use_avx2() { return kernel_level() >= KernelLevel::Avx2; }

}  // namespace hc::cpu
