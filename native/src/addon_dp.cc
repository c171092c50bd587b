// The group's calls run synchronously on the JS thread (each rank on its own thread meanwhile):
// a step is one pass over the trainable tensors, and no model may run while it does.
#include "addon_dp.h"

#include "addon.h"
#include "model_dp.h"

namespace hc::addon {

namespace {

struct Group {
  std::shared_ptr<DataParallelGroup> dp;
  std::vector<std::shared_ptr<std::atomic<bool>>> busy;
  void check_idle(Napi::Env env) const {
    for (auto& b : busy)
      if (b->load()) throw js_error(env, "busy", "a data parallel rank is running a forward, backward or step");
  }
};

Napi::Object memory_object(Napi::Env env, const TrainingMemory& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("params", static_cast<double>(m.params));
  o.Set("grads", static_cast<double>(m.grads));
  o.Set("optimizer", static_cast<double>(m.optimizer));
  return o;
}

}  // namespace

Napi::Value DataParallel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsArray()) throw Error("invalid_argument", "dataParallel(models, zeroStage)");
    Napi::Array arr = info[0].As<Napi::Array>();
    auto g = std::make_shared<Group>();
    std::vector<std::shared_ptr<Model>> models;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      if (!v.IsObject()) throw Error("invalid_argument", "dataParallel: models must be NativeModel objects");
      ModelWrap* w = ModelWrap::Unwrap(v.As<Napi::Object>());
      if (!w) throw Error("invalid_argument", "dataParallel: models must be NativeModel objects");
      models.push_back(w->shared_idle(env));
      g->busy.push_back(w->busy_flag());
    }
    for (size_t i = 0; i < models.size(); i++)
      for (size_t j = 0; j < i; j++)
        if (models[i] == models[j]) throw Error("invalid_argument", "dataParallel: each rank needs its own model");
    const int64_t stage = int_arg(info, 1, "zeroStage");
    g->dp = std::make_shared<DataParallelGroup>(std::move(models), static_cast<int>(stage));

    Napi::Object o = Napi::Object::New(env);
    o.Set("size", g->dp->size());
    o.Set("zeroStage", g->dp->stage());
    o.Set("step", Napi::Function::New(env, [g](const Napi::CallbackInfo& ci) -> Napi::Value {
      Napi::Env e = ci.Env();
      g->check_idle(e);
      return guard(e, [&]() -> Napi::Value {
        const StepResult r = g->dp->step(optimizer_step_arg(ci.Length() < 1 ? e.Undefined() : ci[0]));
        Napi::Object res = Napi::Object::New(e);
        res.Set("gradNorm", r.grad_norm);
        res.Set("step", static_cast<double>(r.step));
        return res;
      });
    }));
    o.Set("gather", Napi::Function::New(env, [g](const Napi::CallbackInfo& ci) {
      g->check_idle(ci.Env());
      guard(ci.Env(), [&] { g->dp->gather(); });
    }));
    o.Set("release", Napi::Function::New(env, [g](const Napi::CallbackInfo& ci) {
      g->check_idle(ci.Env());
      guard(ci.Env(), [&] { g->dp->release(); });
    }));
    o.Set("gathered", Napi::Function::New(env, [g](const Napi::CallbackInfo& ci) -> Napi::Value {
      return Napi::Boolean::New(ci.Env(), g->dp->gathered());
    }));
    o.Set("optimizerState", Napi::Function::New(env, [g](const Napi::CallbackInfo& ci) -> Napi::Value {
      Napi::Env e = ci.Env();
      g->check_idle(e);
      return guard(e, [&]() -> Napi::Value {
        const DataParallelGroup::State st = g->dp->optimizer_state();
        Napi::Object o = Napi::Object::New(e);
        o.Set("step", static_cast<double>(st.step));
        Napi::Array ts = Napi::Array::New(e, st.names.size());
        for (uint32_t i = 0; i < st.names.size(); i++) {
          Napi::Object t = Napi::Object::New(e);
          t.Set("name", st.names[i]);
          t.Set("expAvg", f32_array(e, st.exp_avg[i]));
          t.Set("expAvgSq", f32_array(e, st.exp_avg_sq[i]));
          ts.Set(i, t);
        }
        o.Set("tensors", ts);
        return o;
      });
    }));
    o.Set("trainingMemory", Napi::Function::New(env, [g](const Napi::CallbackInfo& ci) -> Napi::Value {
      const auto mem = g->dp->memory();
      Napi::Array a = Napi::Array::New(ci.Env(), mem.size());
      for (uint32_t r = 0; r < mem.size(); r++) a.Set(r, memory_object(ci.Env(), mem[r]));
      return a;
    }));
    return o;
  });
}

}  // namespace hc::addon
