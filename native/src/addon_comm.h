// The communicator as JS sees it: a test surface that runs one collective across N
// in-process thread ranks, and NCCL's load status.
#pragma once
#include <napi.h>

namespace hc::addon {

// JS: commRun(op, dtype, buffers, {root?, inPlace?}) → one output array per rank
Napi::Value CommRun(const Napi::CallbackInfo& info);
// JS: ncclStatus() → {loaded, version, error}
Napi::Value NcclStatusJs(const Napi::CallbackInfo& info);

}  // namespace hc::addon
