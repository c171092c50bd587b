// Shared pieces of the N-API surface (addon.cc: inference, ops, probes; addon_train.cc:
// the training boundary): argument helpers, error conversion and the model wrapper.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "addon_step_thread.h"
#include "cpu/sample.h"
#include "errors.h"
#include "model.h"

namespace hc::addon {

using hc::Error;

inline Napi::Error js_error(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// Runs f, turning hc::Error / std::exception into a JS exception with a code.
template <typename F>
auto guard(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    const hc::Failure e = hc::current_failure();
    throw js_error(env, e.code, e.message);
  }
}

// ---- argument helpers -------------------------------------------------------------

inline double num(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Error("invalid_argument", std::string("expected a number for '") + key + "'");
  return v.As<Napi::Number>().DoubleValue();
}
inline int64_t int_of(const Napi::Object& o, const char* key) {
  const double d = num(o, key);
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw Error("invalid_argument", std::string("expected an integer for '") + key + "'");
  return static_cast<int64_t>(d);
}
inline bool flag(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) throw Error("invalid_argument", std::string("expected a boolean for '") + key + "'");
  return v.As<Napi::Boolean>().Value();
}
inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Error("invalid_argument", std::string("expected a number for ") + what);
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0)
    throw Error("invalid_argument", std::string(what) + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

template <typename T>
struct ArrayType;
template <>
struct ArrayType<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct ArrayType<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct ArrayType<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <>
struct ArrayType<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};
template <>
struct ArrayType<uint16_t> {
  static constexpr napi_typedarray_type type = napi_uint16_array;
  static constexpr const char* name = "Uint16Array";
};

// A typed array argument of exactly the expected element type, with at least `min_len` elements.
template <typename T>
Napi::TypedArrayOf<T> typed(Napi::Value v, const char* what, int64_t min_len = 0) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != ArrayType<T>::type)
    throw Error("invalid_argument", std::string(what) + " must be a " + ArrayType<T>::name);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  if (static_cast<int64_t>(a.ElementLength()) < min_len)
    throw Error("invalid_argument", std::string(what) + " holds " + std::to_string(a.ElementLength()) +
                                        " elements, needs " + std::to_string(min_len));
  return a;
}
template <typename T>
std::vector<T> copy_of(Napi::Value v, const char* what) {
  auto a = typed<T>(v, what);
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

// A storage type by name; the block types (q8_0, q4_0, q4_k) only where the caller takes
// weights in them (the matmul ops), never for activations or model tensors yet.
inline hc::DType dtype_arg(Napi::Value v, bool quantized_ok = false) {
  if (!v.IsString()) throw Error("invalid_argument", "dtype must be a string");
  const hc::DType t = hc::parse_dtype(v.As<Napi::String>().Utf8Value());
  if (hc::is_quantized(t) && !quantized_ok)
    throw Error("bad_dtype", v.As<Napi::String>().Utf8Value() + " is a weight-only block format, not accepted here");
  return t;
}

inline int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

inline bool absent(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

// step()'s AdamW settings (native/index.ts OptimizerStep).
inline hc::OptimizerStep optimizer_step_arg(const Napi::Value& v) {
  if (!v.IsObject()) throw Error("invalid_argument", "step(opt) needs an object");
  Napi::Object o = v.As<Napi::Object>();
  hc::OptimizerStep opt;
  opt.lr = num(o, "lr");
  opt.beta1 = num(o, "beta1");
  opt.beta2 = num(o, "beta2");
  opt.eps = num(o, "eps");
  opt.weight_decay = num(o, "weightDecay");
  opt.max_grad_norm = num(o, "maxGradNorm");
  return opt;
}

// A rejected promise carrying a code: async methods report bad arguments this way too.
inline Napi::Promise rejected(Napi::Env env, const std::string& code, const std::string& msg) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(js_error(env, code, msg).Value());
  return d.Promise();
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}
  void set(Napi::Env env, std::shared_ptr<hc::Model> m) {
    model_ = std::move(m);
    thread_ = std::make_unique<StepThread>(env);
  }
  // For a data-parallel group (addon_dp.cc): the model, refused while it runs, and its busy flag.
  std::shared_ptr<hc::Model> shared_idle(Napi::Env env) {
    idle(env);
    return model_;
  }
  std::shared_ptr<std::atomic<bool>> busy_flag() const { return busy_; }

 private:
  hc::Model& live(Napi::Env env) {
    if (!model_) throw js_error(env, "disposed", "the model has been disposed");
    return *model_;
  }
  // live() for methods that touch training state: also refused while a forward,
  // trainForward, trainBackward or step runs.
  hc::Model& idle(Napi::Env env) {
    hc::Model& m = live(env);
    if (busy_->load()) throw js_error(env, "busy", "the model is running a forward, backward or step");
    return m;
  }

  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value SeqLength(const Napi::CallbackInfo& info);
  void FreeSeq(const Napi::CallbackInfo& info);
  Napi::Value KvStats(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value StepCounts(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo&) {
    model_.reset();
    if (thread_) thread_->stop();  // a job still queued runs first: it holds the model
  }
  // Every heavy call (forward, trainForward, trainBackward, step), the busy flag already set:
  // `work` on the model's own thread, then the Promise settles with `done`'s value.
  Napi::Promise run_step(Napi::Env env, std::function<void(hc::Model&)> work,
                         std::function<Napi::Value(Napi::Env)> done);

  // training (addon_train.cc)
  void AddAdapter(const Napi::CallbackInfo& info);
  void RemoveAdapter(const Napi::CallbackInfo& info);
  Napi::Value Adapters(const Napi::CallbackInfo& info);
  void SetTrainable(const Napi::CallbackInfo& info);
  Napi::Value TrainForward(const Napi::CallbackInfo& info);
  Napi::Value TrainBackward(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  void ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value ReadParameter(const Napi::CallbackInfo& info);
  void WriteParameter(const Napi::CallbackInfo& info);
  Napi::Value OptimizerState(const Napi::CallbackInfo& info);
  void LoadOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value WeightBytesMoved(const Napi::CallbackInfo& info);
  void MergeAdapter(const Napi::CallbackInfo& info);
  void UnmergeAdapter(const Napi::CallbackInfo& info);

  std::shared_ptr<hc::Model> model_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  // The forward's output, kept across steps (one forward runs at a time): its pages stay
  // mapped at their high water instead of being faulted in again every step.
  std::shared_ptr<std::vector<float>> logits_ = std::make_shared<std::vector<float>>();
  std::unique_ptr<StepThread> thread_;  // started with the model (set)
};


inline Napi::Float32Array f32_array(Napi::Env env, const std::vector<float>& v) {
  auto out = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), out.Data());
  return out;
}

}  // namespace hc::addon
