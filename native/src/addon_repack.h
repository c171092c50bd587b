// Test hooks for the repacked block-format weights (cpu/quant_repack.h): the products of
// ops().matmul and matmulGroup run over weights repacked as a model repacks them at load.
#pragma once
#include <napi.h>

namespace hc::addon {

// matmulRepacked(threads, x, M, K, [{out, w, dtype, N, bias?}], group) → bytes repacked: each w
// repacked for the call, then cpu::matmul_group (group) or one cpu::matmul each with its copy
Napi::Value MatmulRepacked(const Napi::CallbackInfo& info);
// repackRoundTrip(w, dtype, N, K) → the blocks repacked and unpacked again (a new Uint8Array)
Napi::Value RepackRoundTrip(const Napi::CallbackInfo& info);

}  // namespace hc::addon
