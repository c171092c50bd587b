// dataParallel(models, zeroStage): a DataParallelGroup (model_dp.h) as a JS object.
#pragma once
#include <napi.h>

namespace hc::addon {

Napi::Value DataParallel(const Napi::CallbackInfo& info);

}  // namespace hc::addon
