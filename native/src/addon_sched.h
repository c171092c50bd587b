// Test hooks for the CPU scheduling (threadpool.h's run_chunks, cpu::matmul_group): the
// checks run in C++ on a pool of the asked size and report what they saw.
#pragma once
#include <napi.h>

namespace hc::addon {

// poolStress({threads, n, align, minChunk, rounds}) → {miscovered, misaligned, chunks, regionMisses}
Napi::Value PoolStress(const Napi::CallbackInfo& info);
// poolShutdown(threads, times) → times: pools built, run one region, destroyed while spinning
Napi::Value PoolShutdown(const Napi::CallbackInfo& info);
// matmulGroup(threads, x, M, K, [{out, w, dtype, N, bias?}]): cpu::matmul_group into each out
void MatmulGroup(const Napi::CallbackInfo& info);

}  // namespace hc::addon
