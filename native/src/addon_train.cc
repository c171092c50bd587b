// The training boundary of native/index.ts (adapters, trainForward/trainBackward/step,
// parameters, optimizer state, merge). The three heavy calls run on the model's own thread under
// the busy flag they share with forward; the rest are synchronous and refused while busy.
#include "addon.h"

#include <utility>

namespace hc::addon {

namespace {


std::string str_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsString()) throw Error("invalid_argument", std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// An adapter name or null (the base), as the parameter methods take it.
bool adapter_arg(const Napi::CallbackInfo& info, size_t i, std::string& name) {
  if (i < info.Length() && absent(info[i])) return false;
  name = str_arg(info, i, "adapter");
  return true;
}

hc::AdapterSpec parse_adapter_spec(Napi::Value v) {
  if (!v.IsObject()) throw Error("invalid_argument", "addAdapter(name, spec) needs a spec object");
  Napi::Object o = v.As<Napi::Object>();
  hc::AdapterSpec s;
  s.value_head = flag(o, "valueHead");
  Napi::Value lv = o.Get("lora");
  if (absent(lv)) return s;
  if (!lv.IsObject()) throw Error("invalid_argument", "spec.lora must be an object or null");
  Napi::Object l = lv.As<Napi::Object>();
  s.has_lora = true;
  s.lora.rank = int_of(l, "rank");
  s.lora.alpha = num(l, "alpha");
  s.lora.dropout = num(l, "dropout");
  s.lora.seed = static_cast<uint64_t>(int_of(l, "seed"));
  Napi::Value tv = l.Get("targets");
  if (!tv.IsArray()) throw Error("invalid_argument", "spec.lora.targets must be an array");
  Napi::Array ta = tv.As<Napi::Array>();
  for (uint32_t i = 0; i < ta.Length(); i++) {
    Napi::Value e = ta.Get(i);
    const int t = e.IsString() ? hc::parse_target(e.As<Napi::String>().Utf8Value()) : -1;
    if (t < 0)
      throw Error("invalid_adapter", "spec.lora.targets[" + std::to_string(i) + "] is not one of q,k,v,o,gate,up,down");
    s.lora.targets[t] = true;
  }
  return s;
}

}  // namespace

void ModelWrap::AddAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] { m.add_adapter(str_arg(info, 0, "name"), parse_adapter_spec(info[1])); });
}

void ModelWrap::RemoveAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] { m.remove_adapter(str_arg(info, 0, "name")); });
}

Napi::Value ModelWrap::Adapters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::vector<std::string> names = live(env).adapter_names();
  Napi::Array a = Napi::Array::New(env, names.size());
  for (uint32_t i = 0; i < names.size(); i++) a.Set(i, names[i]);
  return a;
}

void ModelWrap::SetTrainable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] {
    if (info.Length() < 1 || absent(info[0])) return m.set_trainable(hc::TrainKind::None, "");
    if (!info[0].IsObject()) throw Error("invalid_argument", "setTrainable takes {adapter}, {base: true} or null");
    Napi::Object o = info[0].As<Napi::Object>();
    if (o.Get("base").IsBoolean() && o.Get("base").As<Napi::Boolean>().Value())
      return m.set_trainable(hc::TrainKind::Base, "");
    if (!o.Get("adapter").IsString())
      throw Error("invalid_argument", "setTrainable takes {adapter}, {base: true} or null");
    m.set_trainable(hc::TrainKind::Adapter, o.Get("adapter").As<Napi::String>().Utf8Value());
  });
}

Napi::Value ModelWrap::TrainForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!model_) return rejected(env, "disposed", "the model has been disposed");
  if (busy_->load()) return rejected(env, "busy", "the model is running a forward, backward or step");
  auto batch = std::make_shared<hc::TrainBatch>();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw Error("invalid_argument", "trainForward(batch) needs an object");
    Napi::Object o = info[0].As<Napi::Object>();
    batch->tokens = copy_of<int32_t>(o.Get("tokens"), "tokens");
    batch->counts = copy_of<int32_t>(o.Get("counts"), "counts");
    batch->targets = copy_of<int32_t>(o.Get("targets"), "targets");
    Napi::Value ad = o.Get("adapter");
    if (!absent(ad) && !ad.IsString()) throw Error("invalid_argument", "batch.adapter must be a name or null");
    batch->adapter = absent(ad) ? std::string() : ad.As<Napi::String>().Utf8Value();
    batch->values = flag(o, "values");
    batch->grad = flag(o, "grad");
    batch->checkpoint = flag(o, "checkpoint");
  } catch (const Error& e) {
    return rejected(env, e.code(), e.what());
  }
  busy_->store(true);
  auto result = std::make_shared<hc::TrainResult>();
  return run_step(
      env, [batch, result](hc::Model& m) { m.train_forward(*batch, *result); },
      [batch, result](Napi::Env e) -> Napi::Value {
        Napi::Object o = Napi::Object::New(e);
        o.Set("logp", f32_array(e, result->logp));
        o.Set("values", batch->values ? Napi::Value(f32_array(e, result->values)) : e.Null());
        return o;
      });
}

Napi::Value ModelWrap::TrainBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!model_) return rejected(env, "disposed", "the model has been disposed");
  if (busy_->load()) return rejected(env, "busy", "the model is running a forward, backward or step");
  auto dlogp = std::make_shared<std::vector<float>>();
  std::shared_ptr<std::vector<float>> dvalues;
  try {
    if (info.Length() < 1) throw Error("invalid_argument", "trainBackward(dlogp, dvalues) needs dlogp");
    *dlogp = copy_of<float>(info[0], "dlogp");
    if (info.Length() > 1 && !absent(info[1]))
      dvalues = std::make_shared<std::vector<float>>(copy_of<float>(info[1], "dvalues"));
  } catch (const Error& e) {
    return rejected(env, e.code(), e.what());
  }
  busy_->store(true);
  return run_step(
      env, [dlogp, dvalues](hc::Model& m) { m.train_backward(*dlogp, dvalues.get()); },
      [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
}

Napi::Value ModelWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!model_) return rejected(env, "disposed", "the model has been disposed");
  if (busy_->load()) return rejected(env, "busy", "the model is running a forward, backward or step");
  hc::OptimizerStep opt;
  try {
    opt = optimizer_step_arg(info.Length() < 1 ? info.Env().Undefined() : info[0]);
  } catch (const Error& e) {
    return rejected(env, e.code(), e.what());
  }
  busy_->store(true);
  auto result = std::make_shared<hc::StepResult>();
  return run_step(
      env, [opt, result](hc::Model& m) { *result = m.step(opt); },
      [result](Napi::Env e) -> Napi::Value {
        Napi::Object o = Napi::Object::New(e);
        o.Set("gradNorm", result->grad_norm);
        o.Set("step", static_cast<double>(result->step));
        return o;
      });
}

void ModelWrap::ZeroGrad(const Napi::CallbackInfo& info) { idle(info.Env()).zero_grad(); }

Napi::Value ModelWrap::Parameters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  return guard(env, [&]() -> Napi::Value {
    std::string name;
    const bool ad = adapter_arg(info, 0, name);
    const auto list = m.parameters(ad ? &name : nullptr);
    Napi::Array out = Napi::Array::New(env, list.size());
    for (uint32_t i = 0; i < list.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", list[i].first);
      Napi::Array sh = Napi::Array::New(env, list[i].second.size());
      for (uint32_t j = 0; j < list[i].second.size(); j++) sh.Set(j, static_cast<double>(list[i].second[j]));
      o.Set("shape", sh);
      out.Set(i, o);
    }
    return out;
  });
}

Napi::Value ModelWrap::ReadParameter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  return guard(env, [&]() -> Napi::Value {
    std::string name;
    const bool ad = adapter_arg(info, 0, name);
    return f32_array(env, m.read_parameter(ad ? &name : nullptr, str_arg(info, 1, "name")));
  });
}

void ModelWrap::WriteParameter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] {
    std::string name;
    const bool ad = adapter_arg(info, 0, name);
    m.write_parameter(ad ? &name : nullptr, str_arg(info, 1, "name"), copy_of<float>(info[2], "data"));
  });
}

Napi::Value ModelWrap::OptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& model = idle(env);
  model.sync_to_host();  // moments trained on a device come back explicitly
  const hc::ParamSet& set = std::as_const(model).trainable();
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", static_cast<double>(set.steps()));
  Napi::Array ts = Napi::Array::New(env, set.params().size());
  for (uint32_t i = 0; i < set.params().size(); i++) {
    const hc::Param& p = set.params()[i];
    Napi::Object t = Napi::Object::New(env);
    t.Set("name", p.name);
    t.Set("expAvg", f32_array(env, p.exp_avg));
    t.Set("expAvgSq", f32_array(env, p.exp_avg_sq));
    ts.Set(i, t);
  }
  o.Set("tensors", ts);
  return o;
}

void ModelWrap::LoadOptimizerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] {
    if (info.Length() < 1 || !info[0].IsObject()) throw Error("invalid_argument", "loadOptimizerState(state) needs an object");
    Napi::Object o = info[0].As<Napi::Object>();
    const int64_t step = int_of(o, "step");
    if (!o.Get("tensors").IsArray()) throw Error("invalid_argument", "state.tensors must be an array");
    Napi::Array ts = o.Get("tensors").As<Napi::Array>();
    std::vector<std::string> names;
    std::vector<std::vector<float>> m1, m2;
    for (uint32_t i = 0; i < ts.Length(); i++) {
      Napi::Value e = ts.Get(i);
      if (!e.IsObject() || !e.As<Napi::Object>().Get("name").IsString())
        throw Error("invalid_argument", "state.tensors[" + std::to_string(i) + "] needs name, expAvg, expAvgSq");
      Napi::Object t = e.As<Napi::Object>();
      names.push_back(t.Get("name").As<Napi::String>().Utf8Value());
      m1.push_back(copy_of<float>(t.Get("expAvg"), "expAvg"));
      m2.push_back(copy_of<float>(t.Get("expAvgSq"), "expAvgSq"));
    }
    m.load_optimizer_state(step, names, m1, m2);
  });
}

void ModelWrap::MergeAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] { m.merge_adapter(str_arg(info, 0, "name")); });
}

void ModelWrap::UnmergeAdapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = idle(env);
  guard(env, [&] { m.unmerge_adapter(); });
}

Napi::Value ModelWrap::WeightBytesMoved(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(live(info.Env()).weight_bytes_moved()));
}

}  // namespace hc::addon
