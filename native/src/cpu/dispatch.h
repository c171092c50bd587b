// Which instruction-set variant of the CPU kernels runs: decided once per process
// from the CPU's flags, this build's translation units, and HYBRIDCHAT_KERNELS.
#pragma once
#include <string>
#include <vector>

namespace hc::cpu {

// Ordered: each level runs everything the levels below it run.
//   Avx512     AVX-512 F/BW/VL/DQ (+ FMA, F16C)
//   Avx512Vnni Avx512 plus AVX512-VNNI (vpdpbusd): int8 dot products for the block
//              formats (quant_dot_avx512.cc)
//   Avx512Bf16 Avx512Vnni plus AVX512-BF16 (vdpbf16ps) (every CPU with the second has
//              the first: Cooper Lake, Sapphire Rapids, Zen 4/5)
enum class KernelLevel : int { Portable = 0, Avx2 = 1, Avx512 = 2, Avx512Vnni = 3, Avx512Bf16 = 4 };

// The best level this CPU and build can run.
KernelLevel cpu_level();
// The level the kernels use: cpu_level() but at most Avx512Vnni (Avx512Bf16 trades activation
// precision for speed: matmul_avx512.cc), or what HYBRIDCHAT_KERNELS=portable|avx2|avx512|
// avx512vnni|avx512bf16 asks for (a level above cpu_level() is refused on stderr).
KernelLevel kernel_level();
const char* level_name(KernelLevel l);
// Every level this CPU and build can run, lowest first (for the tests and the benchmark).
std::vector<std::string> runnable_levels();
// Whether the AVX2 level's int8 GEMM (quant_gemm.h) runs as AVX-VNNI (ymm vpdpbusd): the CPU has
// avx_vnni, this build has its TU, and HYBRIDCHAT_AVX_VNNI is not "0" (the tests' switch to
// check plain AVX2 on such a CPU).
bool use_avx_vnni();

}  // namespace hc::cpu
