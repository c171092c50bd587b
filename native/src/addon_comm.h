// The communicator as JS sees it: a test surface that runs one collective across N
// in-process thread ranks, and NCCL's load status.
#pragma once
#include <napi.h>

namespace hc::addon {

// JS: commRun(op, dtype, buffers, {root?, inPlace?}) → one output array per rank
Napi::Value CommRun(const Napi::CallbackInfo& info);
// JS: ncclStatus() → {loaded, version, error}
Napi::Value NcclStatusJs(const Napi::CallbackInfo& info);
// JS: ncclUniqueId() → Uint8Array(128), a fresh ncclUniqueId (ncclGetUniqueId: a real NCCL call
// that needs no GPU); throws code nccl_unavailable, with the reason, where NCCL did not load
Napi::Value NcclUniqueIdJs(const Napi::CallbackInfo& info);

}  // namespace hc::addon
