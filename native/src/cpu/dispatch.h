// Which instruction-set variant of the CPU kernels runs: decided once per process
// from the CPU's flags, this build's translation units, and HYBRIDCHAT_KERNELS.
#pragma once
#include <string>
#include <vector>

namespace hc::cpu {

// Ordered: each level runs everything the levels below it run.
//   Avx512     AVX-512 F/BW/VL/DQ (+ FMA, F16C)
//   Avx512Bf16 Avx512 plus AVX512-BF16 (vdpbf16ps) and AVX512-VNNI (every CPU with
//              the first has the second: Cooper Lake, Sapphire Rapids, Zen 4/5)
enum class KernelLevel : int { Portable = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3 };

// The best level this CPU and build can run.
KernelLevel cpu_level();
// The level the kernels use: cpu_level() but at most Avx512 (Avx512Bf16 trades activation
// precision for speed: matmul_avx512.cc), or what HYBRIDCHAT_KERNELS=portable|avx2|avx512|
// avx512bf16 asks for (a level above cpu_level() is refused on stderr).
KernelLevel kernel_level();
const char* level_name(KernelLevel l);
// Every level this CPU and build can run, lowest first (for the tests and the benchmark).
std::vector<std::string> runnable_levels();

}  // namespace hc::cpu
