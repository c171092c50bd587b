// The N-API surface described in native/index.ts. Heavy work runs off the JS thread and
// settles a Promise: a model's calls on its own thread (addon_step_thread.h), probes in
// AsyncWorkers; every C++ failure reaches JS as an Error with a string `code`
// (hc::current_failure: hc::Error's code, "out_of_memory" or "internal").
#include "addon.h"

#include <malloc.h>

#include "addon_comm.h"
#include "addon_cuda.h"
#include "addon_dp.h"
#include "addon_repack.h"
#include "addon_sched.h"
#include "cuda_library.h"
#include "cpu/dispatch.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"

namespace {

using namespace hc::addon;

// batch.sample.params: row, temperature, top_k, top_p, min_p, u (native/index.ts SAMPLE_FIELDS)
constexpr size_t kSampleFields = 6;

// The rows to sample (ForwardSampling.params, each naming a row below n_rows) and their logit
// edits (ForwardSampling.edits: sample index, token id, penalty, bias; grouped by sample index,
// ascending) as cpu::sample_rows takes them.
void sample_args(Napi::Value params, Napi::Value edits, int64_t n_rows, std::vector<hc::cpu::SampleRow>& rows,
                 std::vector<hc::cpu::LogitEdit>& out_edits) {
  auto p = typed<double>(params, "sample.params");
  if (p.ElementLength() % kSampleFields != 0)
    throw Error("invalid_argument", "sample.params holds " + std::to_string(kSampleFields) + " numbers a row");
  for (size_t i = 0; i < p.ElementLength() / kSampleFields; i++) {
    const double* f = p.Data() + i * kSampleFields;
    if (!(f[0] >= 0 && f[0] < static_cast<double>(n_rows)) || f[0] != static_cast<double>(static_cast<int64_t>(f[0])))
      throw Error("invalid_argument", "sample row " + std::to_string(i) + " names no logits row of this step");
    if (!(f[5] >= 0 && f[5] < 1)) throw Error("invalid_argument", "sample's uniform draws must lie in [0, 1)");
    const double k = f[2] > 2147483647.0 ? 2147483647.0 : f[2];
    rows.push_back({static_cast<int32_t>(f[0]), f[1], static_cast<int32_t>(k), f[3], f[4], f[5]});
  }
  if (absent(edits)) return;
  auto e = typed<double>(edits, "sample.edits");
  if (e.ElementLength() % 4 != 0) throw Error("invalid_argument", "sample.edits holds 4 numbers an edit");
  int64_t last = -1;
  for (size_t i = 0; i < e.ElementLength() / 4; i++) {
    const double* f = e.Data() + i * 4;
    const int64_t r = static_cast<int64_t>(f[0]);
    if (!(f[0] >= 0 && f[0] < static_cast<double>(rows.size())) || static_cast<double>(r) != f[0] || r < last)
      throw Error("invalid_argument", "sample.edits must name sample rows in ascending order");
    if (r != last) rows[r].edit_begin = static_cast<int64_t>(i);
    rows[r].edit_count++;
    last = r;
    out_edits.push_back({static_cast<int64_t>(f[1]), f[2], f[3]});
  }
}

}  // namespace

namespace hc::addon {

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {InstanceMethod<&ModelWrap::Forward>("forward"),
                      InstanceMethod<&ModelWrap::SeqLength>("seqLength"),
                      InstanceMethod<&ModelWrap::FreeSeq>("freeSeq"),
                      InstanceMethod<&ModelWrap::KvStats>("kvStats"),
                      InstanceMethod<&ModelWrap::Device>("device"),
                      InstanceMethod<&ModelWrap::StepCounts>("stepCounts"),
                      InstanceMethod<&ModelWrap::Dispose>("dispose"),
                      InstanceMethod<&ModelWrap::AddAdapter>("addAdapter"),
                      InstanceMethod<&ModelWrap::RemoveAdapter>("removeAdapter"),
                      InstanceMethod<&ModelWrap::Adapters>("adapters"),
                      InstanceMethod<&ModelWrap::SetTrainable>("setTrainable"),
                      InstanceMethod<&ModelWrap::TrainForward>("trainForward"),
                      InstanceMethod<&ModelWrap::TrainBackward>("trainBackward"),
                      InstanceMethod<&ModelWrap::Step>("step"),
                      InstanceMethod<&ModelWrap::ZeroGrad>("zeroGrad"),
                      InstanceMethod<&ModelWrap::Parameters>("parameters"),
                      InstanceMethod<&ModelWrap::ReadParameter>("readParameter"),
                      InstanceMethod<&ModelWrap::WriteParameter>("writeParameter"),
                      InstanceMethod<&ModelWrap::OptimizerState>("optimizerState"),
                      InstanceMethod<&ModelWrap::LoadOptimizerState>("loadOptimizerState"),
                      InstanceMethod<&ModelWrap::WeightBytesMoved>("weightBytesMoved"),
                      InstanceMethod<&ModelWrap::MergeAdapter>("mergeAdapter"),
                      InstanceMethod<&ModelWrap::UnmergeAdapter>("unmergeAdapter")});
}

Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto reject = [&](const std::string& code, const std::string& msg) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(js_error(env, code, msg).Value());
    return d.Promise();
  };
  if (!model_) return reject("disposed", "the model has been disposed");
  if (busy_->load()) return reject("busy", "a forward is already running on this model");
  hc::ForwardBatch batch;
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw Error("invalid_argument", "forward(batch) needs an object");
    Napi::Object o = info[0].As<Napi::Object>();
    // copied: the caller may reuse its arrays while the step runs
    batch.seq_ids = copy_of<int32_t>(o.Get("seqIds"), "seqIds");
    batch.tokens = copy_of<int32_t>(o.Get("tokens"), "tokens");
    batch.counts = copy_of<int32_t>(o.Get("counts"), "counts");
    Napi::Value lg = o.Get("logits");
    const std::string mode = lg.IsString() ? lg.As<Napi::String>().Utf8Value() : "";
    if (mode != "last" && mode != "all") throw Error("invalid_argument", "batch.logits must be \"last\" or \"all\"");
    batch.all_logits = mode == "all";
    Napi::Value ad = o.Get("adapters");
    if (!absent(ad)) {
      if (!ad.IsArray()) throw Error("invalid_argument", "batch.adapters must be an array of names or nulls");
      Napi::Array arr = ad.As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value e = arr.Get(i);
        if (!absent(e) && !e.IsString()) throw Error("invalid_argument", "batch.adapters must hold names or nulls");
        batch.adapters.push_back(absent(e) ? std::string() : e.As<Napi::String>().Utf8Value());
      }
    }
  } catch (const Error& e) {
    return reject(e.code(), e.what());
  }
  // Caller-owned outputs (native/index.ts ForwardBatch.out / .sample): written on the worker
  // thread, so the JS thread neither allocates nor copies the logits; the references keep the
  // arrays alive until the step settles.
  std::shared_ptr<Napi::Reference<Napi::Float32Array>> out_ref;
  float* out = nullptr;
  size_t out_len = 0;
  std::vector<hc::cpu::SampleRow> rows;
  std::vector<hc::cpu::LogitEdit> edits;
  std::shared_ptr<Napi::Reference<Napi::Int32Array>> tokens_ref;
  int32_t* tokens = nullptr;
  // the step's logits rows: one per input token, or one per sequence
  const int64_t n_rows = batch.all_logits ? static_cast<int64_t>(batch.tokens.size()) : static_cast<int64_t>(batch.seq_ids.size());
  try {
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value ov = o.Get("out");
    if (!absent(ov)) {
      auto a = typed<float>(ov, "batch.out");
      out = a.Data();
      out_len = a.ElementLength();
      // checked before the step runs, so a wrong buffer leaves the KV cache as it was
      const int64_t need = n_rows * model_->spec().V;
      if (static_cast<int64_t>(out_len) < need)
        throw Error("invalid_argument", "batch.out holds " + std::to_string(out_len) + " floats, the step's logits are " +
                                            std::to_string(need));
      out_ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(a));
    }
    Napi::Value sv = o.Get("sample");
    if (!absent(sv)) {
      if (!sv.IsObject()) throw Error("invalid_argument", "batch.sample must be an object");
      Napi::Object so = sv.As<Napi::Object>();
      sample_args(so.Get("params"), so.Get("edits"), n_rows, rows, edits);
      auto t = typed<int32_t>(so.Get("tokens"), "batch.sample.tokens", static_cast<int64_t>(rows.size()));
      tokens = t.Data();
      tokens_ref = std::make_shared<Napi::Reference<Napi::Int32Array>>(Napi::Persistent(t));
    }
  } catch (const Error& e) {
    return reject(e.code(), e.what());
  }
  busy_->store(true);
  model_->kv().begin_step();  // from here a freeSeq also applies to what this step creates
  auto logits = logits_;
  return run_step(
      env,
      [batch = std::move(batch), logits, out, n_rows, rows = std::move(rows), edits = std::move(edits), tokens](hc::Model& m) {
        m.forward(batch, *logits);
        if (!rows.empty()) {
          const int64_t V = static_cast<int64_t>(logits->size()) / n_rows;
          // a row each (guided: a greedy row costs a scan, a sampled one 30× that), on the
          // step's threads, still spinning from the forward
          m.pool().run_chunks(static_cast<int64_t>(rows.size()), 1, 1, [&](int64_t b, int64_t e) {
            hc::cpu::sample_rows(logits->data(), V, rows.data() + b, e - b, tokens + b, edits.data());
          });
        }
        if (out) std::copy(logits->begin(), logits->end(), out);
      },
      [logits, out_ref, tokens_ref](Napi::Env e) -> Napi::Value {
        if (!out_ref) return f32_array(e, *logits);
        Napi::Float32Array a = out_ref->Value();
        return Napi::Float32Array::New(e, logits->size(), a.ArrayBuffer(), a.ByteOffset());
      });
}

Napi::Promise ModelWrap::run_step(Napi::Env env, std::function<void(hc::Model&)> work,
                                  std::function<Napi::Value(Napi::Env)> done) {
  auto job = std::make_unique<StepJob>(env, model_, busy_, std::move(work), std::move(done));
  Napi::Promise p = job->promise();
  thread_->post(env, std::move(job));
  return p;
}

Napi::Value ModelWrap::SeqLength(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = live(env);
  return guard(env, [&] {
    const int64_t id = int_arg(info, 0, "seqId");
    return Napi::Number::New(env, static_cast<double>(m.kv().length(static_cast<int32_t>(id))));
  });
}

void ModelWrap::FreeSeq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = live(env);
  guard(env, [&] { m.kv().free_seq(static_cast<int32_t>(int_arg(info, 0, "seqId"))); });
}

Napi::Value ModelWrap::KvStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const hc::KvStatsValue s = live(env).kv().stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("blockSize", static_cast<double>(s.block_size));
  o.Set("totalBlocks", static_cast<double>(s.total_blocks));
  o.Set("freeBlocks", static_cast<double>(s.free_blocks));
  o.Set("sequences", static_cast<double>(s.sequences));
  return o;
}

Napi::Value ModelWrap::Device(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  hc::Model& m = live(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", m.device());
  o.Set("name", m.device_name());
  o.Set("devices", m.devices());
  if (std::string(m.device()) == "cuda") o.Set("gemm", cuda_library().gemm);
  else o.Set("repackedBytes", static_cast<double>(m.repacked_bytes()));
  o.Set("kvDtype", m.kv_dtype());
  return o;
}

Napi::Value ModelWrap::StepCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const hc::Exec::StepCounts c = live(env).step_counts();
  Napi::Object o = Napi::Object::New(env);
  o.Set("graphReplays", static_cast<double>(c.graph_replays));
  o.Set("graphCaptures", static_cast<double>(c.graph_captures));
  o.Set("eagerSteps", static_cast<double>(c.eager_steps));
  return o;
}

}  // namespace hc::addon

namespace {

struct AddonData {
  Napi::FunctionReference model_ctor;
  std::unique_ptr<hc::ThreadPool> ops_pool;
};

hc::ModelSpec parse_spec(const Napi::Object& o) {
  hc::ModelSpec s;
  s.C = int_of(o, "hiddenSize");
  s.I = int_of(o, "intermediateSize");
  s.L = int_of(o, "numLayers");
  s.NH = int_of(o, "numHeads");
  s.NKV = int_of(o, "numKvHeads");
  s.HD = int_of(o, "headDim");
  s.V = int_of(o, "vocabSize");
  s.max_positions = int_of(o, "maxPositions");
  s.eps = static_cast<float>(num(o, "rmsNormEps"));
  s.inv_freq = copy_of<float>(o.Get("ropeInvFreq"), "spec.ropeInvFreq");
  s.rope_scaling = static_cast<float>(num(o, "ropeAttentionScaling"));
  s.attention_bias = flag(o, "attentionBias");
  s.o_bias = !o.Get("oBias").IsUndefined() && flag(o, "oBias");
  s.mlp_bias = !o.Get("mlpBias").IsUndefined() && flag(o, "mlpBias");
  if (!o.Get("layerWindows").IsUndefined()) s.windows = copy_of<int32_t>(o.Get("layerWindows"), "spec.layerWindows");
  s.qk_norm = flag(o, "qkNorm");
  s.tie_embeddings = flag(o, "tieWordEmbeddings");
  return s;
}

std::vector<hc::TensorDesc> parse_tensors(Napi::Value v) {
  if (!v.IsArray()) throw Error("invalid_argument", "tensors must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<hc::TensorDesc> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Error("invalid_argument", "tensors[" + std::to_string(i) + "] must be an object");
    Napi::Object o = e.As<Napi::Object>();
    hc::TensorDesc d;
    if (!o.Get("name").IsString() || !o.Get("file").IsString() || !o.Get("dtype").IsString() || !o.Get("shape").IsArray())
      throw Error("invalid_argument", "tensors[" + std::to_string(i) + "] needs name, file, offset, dtype, shape");
    d.name = o.Get("name").As<Napi::String>().Utf8Value();
    d.file = o.Get("file").As<Napi::String>().Utf8Value();
    d.offset = int_of(o, "offset");
    d.dtype = dtype_arg(o.Get("dtype"), true);  // block types: weights of a quantized checkpoint or GGUF
    if (!absent(o.Get("ropeHeads"))) d.rope_heads = int_of(o, "ropeHeads");
    Napi::Array sh = o.Get("shape").As<Napi::Array>();
    for (uint32_t j = 0; j < sh.Length(); j++) {
      Napi::Value x = sh.Get(j);
      if (!x.IsNumber()) throw Error("invalid_argument", "shape of " + d.name + " must hold numbers");
      d.shape.push_back(x.As<Napi::Number>().Int64Value());
    }
    out.push_back(std::move(d));
  }
  return out;
}

// --matmul-precision: absent = highest; a string hc::cpu::matmul_precision_of() knows
static hc::cpu::MatmulPrecision precision_arg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return hc::cpu::MatmulPrecision::Highest;
  if (!v.IsString()) throw Error("invalid_argument", "matmulPrecision must be a string");
  return hc::cpu::matmul_precision_of(v.As<Napi::String>().Utf8Value());
}

Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsObject() || !info[2].IsObject())
      throw Error("invalid_argument", "createModel(spec, tensors, options)");
    hc::ModelSpec spec = parse_spec(info[0].As<Napi::Object>());
    std::vector<hc::TensorDesc> tensors = parse_tensors(info[1]);
    Napi::Object oo = info[2].As<Napi::Object>();
    hc::ModelOptions opts;
    opts.threads = oo.Get("threads").IsNumber() ? static_cast<int>(int_of(oo, "threads")) : default_threads();
    if (opts.threads < 1) opts.threads = default_threads();
    opts.kv_block_size = int_of(oo, "kvBlockSize");
    opts.kv_blocks = int_of(oo, "kvBlocks");
    if (oo.Has("tensorParallel") && !oo.Get("tensorParallel").IsUndefined())
      opts.tensor_parallel = static_cast<int>(int_of(oo, "tensorParallel"));
    if (oo.Has("device") && oo.Get("device").IsString()) opts.device = oo.Get("device").As<Napi::String>().Utf8Value();
    if (oo.Has("cudaGraphs") && oo.Get("cudaGraphs").IsBoolean()) opts.cuda_graphs = flag(oo, "cudaGraphs");
    if (oo.Has("kvDtype") && oo.Get("kvDtype").IsString()) opts.kv_dtype = oo.Get("kvDtype").As<Napi::String>().Utf8Value();
    if (oo.Has("deviceIndex") && !oo.Get("deviceIndex").IsUndefined())
      opts.device_index = static_cast<int>(int_of(oo, "deviceIndex"));
    if (oo.Has("matmulPrecision")) opts.matmul_precision = precision_arg(oo.Get("matmulPrecision"));
    auto model = std::make_shared<hc::Model>(spec, tensors, opts);
    Napi::Object obj = env.GetInstanceData<AddonData>()->model_ctor.New({});
    ModelWrap::Unwrap(obj)->set(env, std::move(model));
    return obj;
  });
}

// ---- ops for the tests ---------------------------------------------------------

hc::ThreadPool& ops_pool(Napi::Env env) {
  AddonData* d = env.GetInstanceData<AddonData>();
  if (!d->ops_pool) d->ops_pool = std::make_unique<hc::ThreadPool>(default_threads());
  return *d->ops_pool;
}

// The CPU kernels behind the op-test object; CudaOps (addon_cuda.h) is the GPU twin.
struct CpuOps {
  static void matmul(Napi::Env env, float* out, const float* x, const void* w, hc::DType dt, const float* bias,
                     int64_t M, int64_t N, int64_t K, hc::cpu::MatmulPrecision precision) {
    hc::cpu::matmul(out, x, w, dt, bias, M, N, K, ops_pool(env), precision);
  }
  static void rmsnorm(Napi::Env env, float* out, const float* x, const float* w, int64_t M, int64_t C, float eps) {
    hc::cpu::rmsnorm_forward(out, x, w, M, C, eps, ops_pool(env));
  }
  static void rope(Napi::Env env, float* x, const int32_t* pos, const float* inv, int64_t T, int64_t H, int64_t HD,
                   float scaling) {
    rope_qk(env, x, nullptr, pos, inv, T, H, 0, HD, scaling);
  }
  // the CPU twins of the device's fused passes: the kernels in sequence
  static void rope_qk(Napi::Env env, float* q, float* k, const int32_t* pos, const float* inv, int64_t T, int64_t NH,
                      int64_t NKV, int64_t HD, float scaling) {
    std::vector<float> c(static_cast<size_t>(T * HD / 2)), s(c.size());
    hc::cpu::rope_tables(c.data(), s.data(), pos, inv, T, HD / 2, scaling);
    hc::cpu::rope_forward(q, c.data(), s.data(), T, NH, HD, ops_pool(env));
    if (k) hc::cpu::rope_forward(k, c.data(), s.data(), T, NKV, HD, ops_pool(env));
  }
  static void residual_rmsnorm(Napi::Env env, float* x, float* out, const float* b, const float* w, int64_t M,
                               int64_t C, float eps) {
    hc::cpu::residual_forward(x, x, b, M * C);
    hc::cpu::rmsnorm_forward(out, x, w, M, C, eps, ops_pool(env));
  }
  static void attention(Napi::Env env, float* out, const float* q, const float* k, const float* v, int64_t T,
                        int64_t S, int64_t NH, int64_t NKV, int64_t HD, int64_t window) {
    const int32_t zero = 0;
    // contiguous [S,NKV,HD] keys are one block as large as the whole sequence
    hc::cpu::KVSpan span{k, v, &zero, 0, HD, NKV * HD, std::max<int64_t>(S, 1)};
    std::vector<int32_t> seq_of(static_cast<size_t>(T), 0), npos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; t++) npos[t] = static_cast<int32_t>(S - T + t + 1);
    hc::cpu::attention_forward(out, q, &span, seq_of.data(), npos.data(), T, NH, NKV, HD, window, ops_pool(env));
  }
  // the serving attention over a paged pool of f32, bf16 or f16 (splits are the device's
  // decode split, nothing to split here)
  static void paged_attention(Napi::Env env, float* out, const float* q, const void* kp, const void* vp, int64_t,
                              hc::DType dt, const int32_t* tables, int64_t nseq, int64_t max_blocks,
                              const int32_t* seq_of, const int32_t* npos, int64_t T, int64_t NH, int64_t NKV,
                              int64_t HD, int64_t block_size, int64_t window, int) {
    std::vector<hc::cpu::KVSpan> spans(static_cast<size_t>(nseq));
    for (int64_t s = 0; s < nseq; s++)
      spans[s] = hc::cpu::KVSpan{kp, vp, tables + s * max_blocks, NKV * block_size * HD, block_size * HD, HD, block_size, dt};
    hc::cpu::attention_forward(out, q, spans.data(), seq_of, npos, T, NH, NKV, HD, window, ops_pool(env));
  }
  static void swiglu(Napi::Env env, float* out, const float* g, const float* u, int64_t N) {
    hc::cpu::swiglu_forward(out, g, u, N, ops_pool(env));
  }
  static void lora(Napi::Env env, float* out, const float* x, const int32_t* slot, int64_t T, int64_t N, int64_t K,
                   int64_t n, const float* const* a, const int64_t* lda, const float* const* b, const int32_t* rank,
                   const float* scale) {
    std::vector<hc::cpu::LoraEntry> entries(static_cast<size_t>(n));
    int64_t max_rank = 0;
    for (int64_t e = 0; e < n; e++) {
      entries[e] = {a[e], b[e], rank[e], scale[e], lda[e]};
      max_rank = std::max<int64_t>(max_rank, rank[e]);
    }
    std::vector<float> u(static_cast<size_t>(T * max_rank));
    hc::cpu::lora_batched(out, x, entries.data(), slot, u.data(), T, N, K, max_rank, ops_pool(env));
  }
  static void to_f32(Napi::Env, float* out, const void* src, hc::DType dt, int64_t n) {
    hc::cpu::to_f32(out, src, dt, n);
  }
  static void from_f32(Napi::Env, void* out, const float* src, hc::DType dt, int64_t n) {
    hc::cpu::from_f32(out, src, dt, n);
  }
  static void rmsnorm_backward(Napi::Env env, float* dx, float* dw, const float* dout, const float* x, const float* w,
                               int64_t M, int64_t C, float eps) {
    hc::cpu::rmsnorm_backward(dx, dw, dout, x, w, M, C, eps, ops_pool(env));
  }
  static void rope_backward(Napi::Env env, float* dx, const int32_t* pos, const float* inv, int64_t T, int64_t H,
                            int64_t HD, float scaling) {
    std::vector<float> c(static_cast<size_t>(T * HD / 2)), s(c.size());
    hc::cpu::rope_tables(c.data(), s.data(), pos, inv, T, HD / 2, scaling);
    hc::cpu::rope_backward(dx, c.data(), s.data(), T, H, HD, ops_pool(env));
  }
  static void attention_train_forward(Napi::Env env, float* out, float* lse, const float* q, const float* k,
                                      const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                      int64_t window) {
    hc::cpu::attention_train_forward(out, lse, q, k, v, T, NH, NKV, HD, window, ops_pool(env));
  }
  static void attention_backward(Napi::Env env, float* dq, float* dk, float* dv, const float* dout, const float* q,
                                 const float* k, const float* v, const float* lse, int64_t T, int64_t NH,
                                 int64_t NKV, int64_t HD, int64_t window) {
    hc::cpu::attention_backward(dq, dk, dv, dout, q, k, v, lse, T, NH, NKV, HD, window, ops_pool(env));
  }
  static void swiglu_backward(Napi::Env env, float* dg, float* du, const float* dout, const float* g, const float* u,
                              int64_t N) {
    hc::cpu::swiglu_backward(dg, du, dout, g, u, N, ops_pool(env));
  }
  static void embedding_backward(Napi::Env, float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                 int64_t C, int64_t /*V*/) {
    hc::cpu::embedding_backward(dtable, dout, tokens, T, C);
  }
  static void matmul_backward(Napi::Env env, float* dx, float* dw, float* db, const float* dout, const float* x,
                              const void* w, hc::DType dt, int64_t M, int64_t N, int64_t K) {
    hc::cpu::matmul_backward(dx, dw, db, dout, x, w, dt, M, N, K, ops_pool(env));
  }
  static void logprob(Napi::Env env, float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) {
    hc::cpu::logprob_forward(logp, logits, targets, T, V, ops_pool(env));
  }
  static void logprob_backward(Napi::Env env, float* dlogits, const float* dlogp, const float* logits,
                               const int32_t* targets, int64_t T, int64_t V) {
    hc::cpu::logprob_backward(dlogits, dlogp, logits, targets, T, V, ops_pool(env));
  }
};

// A [N, K] weight as stored: Float32Array, Uint16Array (bf16/f16) or the raw blocks
// of a quantized type in a Uint8Array (K a multiple of the block: blocks never span rows).
const void* weight_arg(Napi::Value v, hc::DType dt, int64_t N, int64_t K) {
  if (dt == hc::DType::F32) return typed<float>(v, "w", N * K).Data();
  if (!hc::is_quantized(dt)) return typed<uint16_t>(v, "w", N * K).Data();
  const int64_t be = hc::block_elems(dt);
  if (K % be != 0)
    throw Error("invalid_argument", "K must be a multiple of " + std::to_string(be) + " for " + hc::dtype_name(dt) + " weights (got " + std::to_string(K) + ")");
  return typed<uint8_t>(v, "w", hc::dtype_bytes(dt, N * K)).Data();
}

template <class B>
void OpMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 5, "M"), N = int_arg(info, 6, "N"), K = int_arg(info, 7, "K");
    auto out = typed<float>(info[0], "out", M * N);
    auto x = typed<float>(info[1], "x", M * K);
    const hc::DType dt = dtype_arg(info[3], true);
    const void* w = weight_arg(info[2], dt, N, K);
    const float* bias = nullptr;
    if (!info[4].IsNull() && !info[4].IsUndefined()) bias = typed<float>(info[4], "bias", N).Data();
    B::matmul(env, out.Data(), x.Data(), w, dt, bias, M, N, K, precision_arg(info[8]));
  });
}

template <class B>
void OpRmsnorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 3, "M"), C = int_arg(info, 4, "C");
    if (!info[5].IsNumber()) throw Error("invalid_argument", "eps must be a number");
    const float eps = info[5].As<Napi::Number>().FloatValue();
    auto out = typed<float>(info[0], "out", M * C);
    auto x = typed<float>(info[1], "x", M * C);
    auto w = typed<float>(info[2], "weight", C);
    B::rmsnorm(env, out.Data(), x.Data(), w.Data(), M, C, eps);
  });
}

template <class B>
void OpRope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 3, "T"), H = int_arg(info, 4, "H"), HD = int_arg(info, 5, "HD");
    if (HD % 2) throw Error("invalid_argument", "HD must be even");
    if (!info[6].IsNumber()) throw Error("invalid_argument", "scaling must be a number");
    const float scaling = info[6].As<Napi::Number>().FloatValue();
    auto x = typed<float>(info[0], "x", T * H * HD);
    auto pos = typed<int32_t>(info[1], "pos", T);
    auto inv = typed<float>(info[2], "invFreq", HD / 2);
    B::rope(env, x.Data(), pos.Data(), inv.Data(), T, H, HD, scaling);
  });
}

// residualRmsnorm(x, out, add, weight, M, C, eps): x += add, out = rmsnorm(x)·weight
template <class B>
void OpResidualRmsnorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 4, "M"), C = int_arg(info, 5, "C");
    if (!info[6].IsNumber()) throw Error("invalid_argument", "eps must be a number");
    auto x = typed<float>(info[0], "x", M * C);
    auto out = typed<float>(info[1], "out", M * C);
    auto add = typed<float>(info[2], "add", M * C);
    auto w = typed<float>(info[3], "weight", C);
    if (out.Data() == x.Data() || out.Data() == add.Data())
      throw Error("invalid_argument", "residualRmsnorm: out must not alias x or add");
    B::residual_rmsnorm(env, x.Data(), out.Data(), add.Data(), w.Data(), M, C, info[6].As<Napi::Number>().FloatValue());
  });
}

// ropeQk(q, k, pos, invFreq, T, NH, NKV, HD, scaling): rope on q and k in one pass
template <class B>
void OpRopeQk(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 4, "T"), NH = int_arg(info, 5, "NH"), NKV = int_arg(info, 6, "NKV"),
                  HD = int_arg(info, 7, "HD");
    if (HD % 2) throw Error("invalid_argument", "HD must be even");
    if (!info[8].IsNumber()) throw Error("invalid_argument", "scaling must be a number");
    auto q = typed<float>(info[0], "q", T * NH * HD);
    auto k = typed<float>(info[1], "k", T * NKV * HD);
    auto pos = typed<int32_t>(info[2], "pos", T);
    auto inv = typed<float>(info[3], "invFreq", HD / 2);
    B::rope_qk(env, q.Data(), k.Data(), pos.Data(), inv.Data(), T, NH, NKV, HD, info[8].As<Napi::Number>().FloatValue());
  });
}

// An attention op's optional sliding window (last argument): 0 or absent = full causal.
int64_t window_arg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsUndefined()) return 0;
  const int64_t w = int_arg(info, i, "window");
  if (w < 0) throw Error("invalid_argument", "attention: window must be >= 0");
  return w;
}

template <class B>
void OpAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 4, "T"), S = int_arg(info, 5, "S"), NH = int_arg(info, 6, "NH"),
                  NKV = int_arg(info, 7, "NKV"), HD = int_arg(info, 8, "HD");
    if (T > S) throw Error("invalid_argument", "attention: T must be <= S");
    if (NKV == 0 || NH % NKV) throw Error("invalid_argument", "attention: NH must be a multiple of NKV");
    auto out = typed<float>(info[0], "out", T * NH * HD);
    auto q = typed<float>(info[1], "q", T * NH * HD);
    auto k = typed<float>(info[2], "k", S * NKV * HD);
    auto v = typed<float>(info[3], "v", S * NKV * HD);
    B::attention(env, out.Data(), q.Data(), k.Data(), v.Data(), T, S, NH, NKV, HD, window_arg(info, 9));
  });
}

// pagedAttention(out, q, kPool, vPool, kvDtype, tables, nseq, maxBlocks, seqOf, npos, T, NH, NKV, HD,
// blockSize, window, splits): pools of whole blocks [NKV, blockSize, HD]; every index the
// kernels follow checked here, so a bad one is an error, not a read outside the pool
template <class B>
void OpPagedAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const hc::DType dt = dtype_arg(info[4], false);
    if (dt != hc::DType::F32 && dt != hc::DType::BF16 && dt != hc::DType::F16)
      throw Error("bad_dtype", "the KV pool holds f32, bf16 or f16");
    const int64_t nseq = int_arg(info, 6, "nseq"), maxb = int_arg(info, 7, "maxBlocks"), T = int_arg(info, 10, "T"),
                  NH = int_arg(info, 11, "NH"), NKV = int_arg(info, 12, "NKV"), HD = int_arg(info, 13, "HD"),
                  bs = int_arg(info, 14, "blockSize"), splits = int_arg(info, 16, "splits");
    if (NKV == 0 || NH % NKV) throw Error("invalid_argument", "attention: NH must be a multiple of NKV");
    if (bs < 1 || HD < 1) throw Error("invalid_argument", "pagedAttention: blockSize and HD must be >= 1");
    const bool f32 = dt == hc::DType::F32;
    const int64_t elems = f32 ? static_cast<int64_t>(typed<float>(info[2], "kPool").ElementLength())
                              : static_cast<int64_t>(typed<uint16_t>(info[2], "kPool").ElementLength());
    const int64_t blocks = elems / (NKV * bs * HD);
    const void* kp = f32 ? static_cast<const void*>(typed<float>(info[2], "kPool").Data()) : typed<uint16_t>(info[2], "kPool").Data();
    const void* vp = f32 ? static_cast<const void*>(typed<float>(info[3], "vPool", elems).Data()) : typed<uint16_t>(info[3], "vPool", elems).Data();
    auto out = typed<float>(info[0], "out", T * NH * HD);
    auto q = typed<float>(info[1], "q", T * NH * HD);
    auto tables = typed<int32_t>(info[5], "tables", nseq * maxb);
    auto seq_of = typed<int32_t>(info[8], "seqOf", T);
    auto npos = typed<int32_t>(info[9], "npos", T);
    for (int64_t i = 0; i < nseq * maxb; i++)
      if (tables.Data()[i] < 0 || tables.Data()[i] >= blocks) throw Error("invalid_argument", "pagedAttention: a block id outside the pool");
    for (int64_t t = 0; t < T; t++)
      if (seq_of.Data()[t] < 0 || seq_of.Data()[t] >= nseq || npos.Data()[t] < 1 || npos.Data()[t] > maxb * bs)
        throw Error("invalid_argument", "pagedAttention: seqOf in [0, nseq), npos in [1, maxBlocks·blockSize]");
    B::paged_attention(env, out.Data(), q.Data(), kp, vp, elems, dt, tables.Data(), nseq, maxb, seq_of.Data(),
                       npos.Data(), T, NH, NKV, HD, bs, window_arg(info, 15), static_cast<int>(splits));
  });
}

template <class B>
void OpSwiglu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 3, "M"), I = int_arg(info, 4, "I");
    auto out = typed<float>(info[0], "out", M * I);
    auto g = typed<float>(info[1], "gate", M * I);
    auto u = typed<float>(info[2], "up", M * I);
    B::swiglu(env, out.Data(), g.Data(), u.Data(), M * I);
  });
}

// lora(out, x, slot, adapters [{a, b, rank, scale, lda?}], T, N, K): the batched multi-adapter LoRA
// (a's rows lda apart, the first K columns of each read; lda defaults to K)
template <class B>
void OpLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 4, "T"), N = int_arg(info, 5, "N"), K = int_arg(info, 6, "K");
    if (!info[3].IsArray()) throw Error("invalid_argument", "adapters must be an array");
    Napi::Array list = info[3].As<Napi::Array>();
    const int64_t n = list.Length();
    std::vector<const float*> a, b;
    std::vector<int64_t> lda;
    std::vector<int32_t> rank;
    std::vector<float> scale;
    for (uint32_t e = 0; e < list.Length(); e++) {
      if (!list.Get(e).IsObject()) throw Error("invalid_argument", "adapters[i] must be {a, b, rank, scale, lda?}");
      Napi::Object o = list.Get(e).As<Napi::Object>();
      const int64_t r = int_of(o, "rank");
      const int64_t ld = o.Has("lda") && !o.Get("lda").IsUndefined() ? int_of(o, "lda") : K;
      if (ld < K) throw Error("invalid_argument", "adapters[i].lda must be at least K");
      lda.push_back(ld);
      a.push_back(typed<float>(o.Get("a"), "a", r > 0 ? (r - 1) * ld + K : 0).Data());  // the last row needs only K
      b.push_back(typed<float>(o.Get("b"), "b", N * r).Data());
      rank.push_back(static_cast<int32_t>(r));
      scale.push_back(static_cast<float>(num(o, "scale")));
    }
    auto out = typed<float>(info[0], "out", T * N);
    auto x = typed<float>(info[1], "x", T * K);
    auto slot = typed<int32_t>(info[2], "slot", T);
    for (int64_t t = 0; t < T; t++)
      if (slot.Data()[t] < -1 || slot.Data()[t] >= n)
        throw Error("invalid_argument", "slot[" + std::to_string(t) + "] must be -1 or an adapter's index");
    B::lora(env, out.Data(), x.Data(), slot.Data(), T, N, K, n, a.data(), lda.data(), b.data(), rank.data(), scale.data());
  });
}

template <class B>
void OpToF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const hc::DType dt = dtype_arg(info[2], true);
    if (dt == hc::DType::F32) throw Error("invalid_argument", "toF32 converts from bf16, f16, q8_0, q4_0 or q4_k");
    if (hc::is_quantized(dt)) {  // a Uint8Array of whole blocks
      auto src = typed<uint8_t>(info[1], "src");
      const int64_t be = hc::block_elems(dt), bb = hc::dtype_bytes(dt, be);
      const int64_t n = static_cast<int64_t>(src.ElementLength()) / bb * be;
      if (hc::dtype_bytes(dt, n) != static_cast<int64_t>(src.ElementLength()))
        throw Error("invalid_argument", "src must hold whole blocks of " + std::to_string(bb) + " bytes");
      auto out = typed<float>(info[0], "out", n);
      return B::to_f32(env, out.Data(), src.Data(), dt, n);
    }
    auto src = typed<uint16_t>(info[1], "src");
    auto out = typed<float>(info[0], "out", static_cast<int64_t>(src.ElementLength()));
    B::to_f32(env, out.Data(), src.Data(), dt, static_cast<int64_t>(src.ElementLength()));
  });
}

template <class B>
void OpFromF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    auto src = typed<float>(info[1], "src");
    const hc::DType dt = dtype_arg(info[2], true);
    if (dt == hc::DType::F32) throw Error("invalid_argument", "fromF32 converts to bf16, f16, q8_0, q4_0 or q4_k");
    const int64_t n = static_cast<int64_t>(src.ElementLength());
    if (hc::is_quantized(dt)) {
      const int64_t be = hc::block_elems(dt);
      if (n % be != 0)
        throw Error("invalid_argument", std::string(hc::dtype_name(dt)) + " quantizes whole blocks of " + std::to_string(be) + " values (got " + std::to_string(n) + ")");
      auto out = typed<uint8_t>(info[0], "out", hc::dtype_bytes(dt, n));
      return B::from_f32(env, out.Data(), src.Data(), dt, n);
    }
    auto out = typed<uint16_t>(info[0], "out", static_cast<int64_t>(src.ElementLength()));
    B::from_f32(env, out.Data(), src.Data(), dt, static_cast<int64_t>(src.ElementLength()));
  });
}

// ---- training kernels (backward and what they need from the forward) -------------

float float_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Error("invalid_argument", std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().FloatValue();
}

// Every token id in [0, V) (and >= 0 unless negatives are allowed as masks).
void check_ids(const int32_t* ids, int64_t n, int64_t V, bool allow_negative, const char* what) {
  for (int64_t i = 0; i < n; i++)
    if (ids[i] >= V || (ids[i] < 0 && !allow_negative))
      throw Error("invalid_argument", std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                                          " is out of range");
}

template <class B>
void OpRmsnormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 5, "M"), C = int_arg(info, 6, "C");
    const float eps = float_arg(info, 7, "eps");
    auto dx = typed<float>(info[0], "dx", M * C);
    auto dw = typed<float>(info[1], "dweight", C);
    auto dout = typed<float>(info[2], "dout", M * C);
    auto x = typed<float>(info[3], "x", M * C);
    auto w = typed<float>(info[4], "weight", C);
    B::rmsnorm_backward(env, dx.Data(), dw.Data(), dout.Data(), x.Data(), w.Data(), M, C, eps);
  });
}

template <class B>
void OpRopeBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 3, "T"), H = int_arg(info, 4, "H"), HD = int_arg(info, 5, "HD");
    if (HD % 2) throw Error("invalid_argument", "HD must be even");
    const float scaling = float_arg(info, 6, "scaling");
    auto dx = typed<float>(info[0], "dx", T * H * HD);
    auto pos = typed<int32_t>(info[1], "pos", T);
    auto inv = typed<float>(info[2], "invFreq", HD / 2);
    B::rope_backward(env, dx.Data(), pos.Data(), inv.Data(), T, H, HD, scaling);
  });
}

void attention_dims(const Napi::CallbackInfo& info, size_t at, int64_t& T, int64_t& NH, int64_t& NKV, int64_t& HD) {
  T = int_arg(info, at, "T");
  NH = int_arg(info, at + 1, "NH");
  NKV = int_arg(info, at + 2, "NKV");
  HD = int_arg(info, at + 3, "HD");
  if (NKV == 0 || NH % NKV) throw Error("invalid_argument", "attention: NH must be a multiple of NKV");
}

template <class B>
void OpAttentionTrainForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    int64_t T, NH, NKV, HD;
    attention_dims(info, 5, T, NH, NKV, HD);
    auto out = typed<float>(info[0], "out", T * NH * HD);
    auto lse = typed<float>(info[1], "lse", T * NH);
    auto q = typed<float>(info[2], "q", T * NH * HD);
    auto k = typed<float>(info[3], "k", T * NKV * HD);
    auto v = typed<float>(info[4], "v", T * NKV * HD);
    B::attention_train_forward(env, out.Data(), lse.Data(), q.Data(), k.Data(), v.Data(), T, NH, NKV, HD,
                               window_arg(info, 9));
  });
}

template <class B>
void OpAttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    int64_t T, NH, NKV, HD;
    attention_dims(info, 8, T, NH, NKV, HD);
    auto dq = typed<float>(info[0], "dq", T * NH * HD);
    auto dk = typed<float>(info[1], "dk", T * NKV * HD);
    auto dv = typed<float>(info[2], "dv", T * NKV * HD);
    auto dout = typed<float>(info[3], "dout", T * NH * HD);
    auto q = typed<float>(info[4], "q", T * NH * HD);
    auto k = typed<float>(info[5], "k", T * NKV * HD);
    auto v = typed<float>(info[6], "v", T * NKV * HD);
    auto lse = typed<float>(info[7], "lse", T * NH);
    B::attention_backward(env, dq.Data(), dk.Data(), dv.Data(), dout.Data(), q.Data(), k.Data(), v.Data(),
                          lse.Data(), T, NH, NKV, HD, window_arg(info, 12));
  });
}

template <class B>
void OpSwigluBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 5, "M"), I = int_arg(info, 6, "I");
    auto dg = typed<float>(info[0], "dgate", M * I);
    auto du = typed<float>(info[1], "dup", M * I);
    auto dout = typed<float>(info[2], "dout", M * I);
    auto g = typed<float>(info[3], "gate", M * I);
    auto u = typed<float>(info[4], "up", M * I);
    B::swiglu_backward(env, dg.Data(), du.Data(), dout.Data(), g.Data(), u.Data(), M * I);
  });
}

template <class B>
void OpEmbeddingBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 3, "T"), C = int_arg(info, 4, "C");
    if (C == 0) throw Error("invalid_argument", "C must be positive");
    auto dtable = typed<float>(info[0], "dtable");
    auto dout = typed<float>(info[1], "dout", T * C);
    auto tokens = typed<int32_t>(info[2], "tokens", T);
    const int64_t V = static_cast<int64_t>(dtable.ElementLength()) / C;
    check_ids(tokens.Data(), T, V, false, "tokens");
    B::embedding_backward(env, dtable.Data(), dout.Data(), tokens.Data(), T, C, V);
  });
}

template <class B>
void OpMatmulBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t M = int_arg(info, 7, "M"), N = int_arg(info, 8, "N"), K = int_arg(info, 9, "K");
    float* dx = absent(info[0]) ? nullptr : typed<float>(info[0], "dx", M * K).Data();
    float* dw = absent(info[1]) ? nullptr : typed<float>(info[1], "dw", N * K).Data();
    float* db = absent(info[2]) ? nullptr : typed<float>(info[2], "dbias", N).Data();
    auto dout = typed<float>(info[3], "dout", M * N);
    auto x = typed<float>(info[4], "x", M * K);
    const hc::DType dt = dtype_arg(info[6], true);
    const void* w = weight_arg(info[5], dt, N, K);
    B::matmul_backward(env, dx, dw, db, dout.Data(), x.Data(), w, dt, M, N, K);
  });
}

template <class B>
void OpLogprob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 3, "T"), V = int_arg(info, 4, "V");
    auto logp = typed<float>(info[0], "logp", T);
    auto logits = typed<float>(info[1], "logits", T * V);
    auto targets = typed<int32_t>(info[2], "targets", T);
    check_ids(targets.Data(), T, V, true, "targets");
    B::logprob(env, logp.Data(), logits.Data(), targets.Data(), T, V);
  });
}

template <class B>
void OpLogprobBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int64_t T = int_arg(info, 4, "T"), V = int_arg(info, 5, "V");
    auto dlogits = typed<float>(info[0], "dlogits", T * V);
    auto dlogp = typed<float>(info[1], "dlogp", T);
    auto logits = typed<float>(info[2], "logits", T * V);
    auto targets = typed<int32_t>(info[3], "targets", T);
    check_ids(targets.Data(), T, V, true, "targets");
    B::logprob_backward(env, dlogits.Data(), dlogp.Data(), logits.Data(), targets.Data(), T, V);
  });
}

// The op-test object of one backend: the same argument checks, B's kernels.
template <class B>
Napi::Object make_ops(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("matmul", Napi::Function::New<OpMatmul<B>>(env, "matmul"));
  o.Set("rmsnorm", Napi::Function::New<OpRmsnorm<B>>(env, "rmsnorm"));
  o.Set("rope", Napi::Function::New<OpRope<B>>(env, "rope"));
  o.Set("ropeQk", Napi::Function::New<OpRopeQk<B>>(env, "ropeQk"));
  o.Set("residualRmsnorm", Napi::Function::New<OpResidualRmsnorm<B>>(env, "residualRmsnorm"));
  o.Set("attention", Napi::Function::New<OpAttention<B>>(env, "attention"));
  o.Set("pagedAttention", Napi::Function::New<OpPagedAttention<B>>(env, "pagedAttention"));
  o.Set("swiglu", Napi::Function::New<OpSwiglu<B>>(env, "swiglu"));
  o.Set("toF32", Napi::Function::New<OpToF32<B>>(env, "toF32"));
  o.Set("fromF32", Napi::Function::New<OpFromF32<B>>(env, "fromF32"));
  o.Set("rmsnormBackward", Napi::Function::New<OpRmsnormBackward<B>>(env, "rmsnormBackward"));
  o.Set("ropeBackward", Napi::Function::New<OpRopeBackward<B>>(env, "ropeBackward"));
  o.Set("attentionTrainForward", Napi::Function::New<OpAttentionTrainForward<B>>(env, "attentionTrainForward"));
  o.Set("attentionBackward", Napi::Function::New<OpAttentionBackward<B>>(env, "attentionBackward"));
  o.Set("swigluBackward", Napi::Function::New<OpSwigluBackward<B>>(env, "swigluBackward"));
  o.Set("embeddingBackward", Napi::Function::New<OpEmbeddingBackward<B>>(env, "embeddingBackward"));
  o.Set("matmulBackward", Napi::Function::New<OpMatmulBackward<B>>(env, "matmulBackward"));
  o.Set("logprob", Napi::Function::New<OpLogprob<B>>(env, "logprob"));
  o.Set("logprobBackward", Napi::Function::New<OpLogprobBackward<B>>(env, "logprobBackward"));
  o.Set("lora", Napi::Function::New<OpLora<B>>(env, "lora"));
  return o;
}

Napi::Value Ops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string backend = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (backend == "cpu") return make_ops<CpuOps>(env);
  if (backend == "cuda") return guard(env, [&] {
    hc::cuda_require_usable();
    return make_ops<hc::CudaOps>(env);
  });
  throw js_error(env, "backend_unavailable", "backend '" + backend + "' is not built into this addon");
}

// ---- probes ------------------------------------------------------------------

// What a probe measures: memory bandwidth, our fp32 GEMM's peak, or an instruction's ceiling.
enum class ProbeKind { Triad, Gemm, Fp32Fma, Bf16Dot };

class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, ProbeKind kind, int64_t size, int threads, int reps)
      : Napi::AsyncWorker(env, "hybridchat.probe"),
        deferred_(Napi::Promise::Deferred::New(env)),
        kind_(kind), size_(size), threads_(threads), reps_(reps) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      hc::ThreadPool pool(threads_);
      switch (kind_) {
        case ProbeKind::Triad: result_ = hc::cpu::triad_gbps(size_, reps_, pool); break;
        case ProbeKind::Gemm: result_ = hc::cpu::gemm_peak_gflops(size_, reps_, pool); break;
        case ProbeKind::Fp32Fma: result_ = hc::cpu::instr_peak_gflops(false, reps_, pool); break;
        case ProbeKind::Bf16Dot: result_ = hc::cpu::instr_peak_gflops(true, reps_, pool); break;
      }
    } catch (...) {
      failure_ = hc::current_failure();
      SetError(failure_.message);
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), result_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(js_error(Env(), failure_.code, e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  ProbeKind kind_;
  int64_t size_;
  int threads_, reps_;
  double result_ = 0;
  hc::Failure failure_;
};

Napi::Promise rejected(Napi::Env env, const Error& e) {  // async API: bad arguments reject too
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(js_error(env, e.code(), e.what()).Value());
  return d.Promise();
}

Napi::Value Probe(const Napi::CallbackInfo& info, bool gemm) {
  Napi::Env env = info.Env();
  int64_t size = 0, threads = 0, reps = 0;
  try {
    size = int_arg(info, 0, gemm ? "n" : "megabytes");
    threads = int_arg(info, 1, "threads");
    reps = int_arg(info, 2, "reps");
    if (size < 1 || reps < 1) throw Error("invalid_argument", "size and reps must be >= 1");
  } catch (const Error& e) {
    return rejected(env, e);
  }
  auto* w = new ProbeWorker(env, gemm ? ProbeKind::Gemm : ProbeKind::Triad, size,
                            threads > 0 ? static_cast<int>(threads) : default_threads(), static_cast<int>(reps));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// instrPeak(instruction "fma" | "dpbf16", threads, reps): GFLOP/s over `threads` ranks.
Napi::Value InstrPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t threads = 0, reps = 0;
  ProbeKind kind = ProbeKind::Fp32Fma;
  try {
    const std::string what = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (what == "dpbf16") kind = ProbeKind::Bf16Dot;
    else if (what != "fma") throw Error("invalid_argument", "instruction must be \"fma\" or \"dpbf16\", got \"" + what + "\"");
    threads = int_arg(info, 1, "threads");
    reps = int_arg(info, 2, "reps");
    if (reps < 1) throw Error("invalid_argument", "reps must be >= 1");
  } catch (const Error& e) {
    return rejected(env, e);
  }
  auto* w = new ProbeWorker(env, kind, 0, threads > 0 ? static_cast<int>(threads) : default_threads(), static_cast<int>(reps));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_ctor = Napi::Persistent(ModelWrap::Define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("cpuFeatures", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::String::New(info.Env(), hc::cpu::cpu_features());
              }));
  exports.Set("kernelVariants", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Array a = Napi::Array::New(info.Env());
                uint32_t i = 0;
                for (const std::string& l : hc::cpu::runnable_levels()) a.Set(i++, Napi::String::New(info.Env(), l));
                return a;
              }));
  exports.Set("backends", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Array a = Napi::Array::New(info.Env());
                a.Set(0u, Napi::String::New(info.Env(), "cpu"));
                if (hc::cuda_usable()) a.Set(1u, Napi::String::New(info.Env(), "cuda"));
                return a;
              }));
  exports.Set("createModel", Napi::Function::New<CreateModel>(env, "createModel"));
  exports.Set("ops", Napi::Function::New<Ops>(env, "ops"));
  exports.Set("cudaStatus", Napi::Function::New<hc::CudaStatus>(env, "cudaStatus"));
  exports.Set("cudaMemory", Napi::Function::New<hc::CudaMemory>(env, "cudaMemory"));
  exports.Set("commRun", Napi::Function::New<hc::addon::CommRun>(env, "commRun"));
  exports.Set("poolStress", Napi::Function::New<hc::addon::PoolStress>(env, "poolStress"));
  exports.Set("poolShutdown", Napi::Function::New<hc::addon::PoolShutdown>(env, "poolShutdown"));
  exports.Set("matmulGroup", Napi::Function::New<hc::addon::MatmulGroup>(env, "matmulGroup"));
  exports.Set("matmulRepacked", Napi::Function::New<hc::addon::MatmulRepacked>(env, "matmulRepacked"));
  exports.Set("repackRoundTrip", Napi::Function::New<hc::addon::RepackRoundTrip>(env, "repackRoundTrip"));
  exports.Set("dataParallel", Napi::Function::New<hc::addon::DataParallel>(env, "dataParallel"));
  exports.Set("ncclStatus", Napi::Function::New<hc::addon::NcclStatusJs>(env, "ncclStatus"));
  exports.Set("ncclUniqueId", Napi::Function::New<hc::addon::NcclUniqueIdJs>(env, "ncclUniqueId"));
  // bytes malloc has handed out and not had back (glibc's mallinfo2: small chunks + mmapped
  // ones), the real allocation the tests hold the engine's own accounting against
  exports.Set("mallocBytes", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                const struct mallinfo2 m = mallinfo2();
                return Napi::Number::New(info.Env(), static_cast<double>(m.uordblks + m.hblkhd));
              }));
  exports.Set("samplingExp", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return guard(info.Env(), [&]() -> Napi::Value {
                  if (info.Length() < 2 || !info[1].IsBoolean()) throw Error("invalid_argument", "samplingExp(x, batched) needs a Float64Array and a boolean");
                  auto x = typed<double>(info[0], "x");
                  auto y = Napi::Float64Array::New(info.Env(), x.ElementLength());
                  std::copy(x.Data(), x.Data() + x.ElementLength(), y.Data());
                  if (info[1].As<Napi::Boolean>().Value()) hc::cpu::exp_inplace(y.Data(), static_cast<int64_t>(y.ElementLength()));
                  else
                    for (size_t i = 0; i < y.ElementLength(); i++) y[i] = hc::cpu::fdlibm_exp(y[i]);
                  return y;
                });
              }));
  exports.Set("sampleRows", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return guard(info.Env(), [&]() -> Napi::Value {
                  if (info.Length() < 3) throw Error("invalid_argument", "sampleRows(logits, V, params, edits?) needs three arguments");
                  auto logits = typed<float>(info[0], "logits");
                  const int64_t V = int_arg(info, 1, "V");
                  if (V < 1 || logits.ElementLength() % V != 0) throw Error("invalid_argument", "sampleRows: logits must hold whole rows of V");
                  std::vector<hc::cpu::SampleRow> rows;
                  std::vector<hc::cpu::LogitEdit> edits;
                  sample_args(info[2], info.Length() > 3 ? info[3] : info.Env().Undefined(), static_cast<int64_t>(logits.ElementLength()) / V, rows, edits);
                  auto out = Napi::Int32Array::New(info.Env(), rows.size());
                  hc::cpu::sample_rows(logits.Data(), V, rows.data(), static_cast<int64_t>(rows.size()), out.Data(), edits.data());
                  return out;
                });
              }));
  exports.Set("triad", Napi::Function::New(env, [](const Napi::CallbackInfo& info) { return Probe(info, false); }));
  exports.Set("gemmPeak", Napi::Function::New(env, [](const Napi::CallbackInfo& info) { return Probe(info, true); }));
  exports.Set("instrPeak", Napi::Function::New<InstrPeak>(env, "instrPeak"));
  return exports;
}

}  // namespace

NODE_API_MODULE(hybridchat, Init)
