// The model's parameters as the training boundary names them: base tensors by canonical
// name, adapters and their tensors, the trainable set, optimizer state, and merging an
// adapter into fp32 copies of the base linears.
#include <algorithm>
#include <set>

#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "errors.h"
#include "model.h"

namespace hc {

std::vector<BaseTensor> Model::base_tensors() {
  const ModelSpec& s = spec_;
  std::vector<BaseTensor> out;
  out.push_back({"embed", {s.V, s.C}, nullptr, nullptr, true});
  for (int64_t i = 0; i < s.L; i++) {
    LayerWeights& w = layers_[static_cast<size_t>(i)];
    const std::string p = "L" + std::to_string(i) + ".";
    out.push_back({p + "attn_norm", {s.C}, nullptr, &w.attn_norm, false});
    for (int t = 0; t < kTargets; t++) {
      Linear& l = w.at(t);
      out.push_back({p + target_name(t), {l.out, l.in}, &l, nullptr, false});
      if (!l.bias.empty()) out.push_back({p + target_name(t) + "_bias", {l.out}, nullptr, &l.bias, false});
    }
    if (s.qk_norm) {
      out.push_back({p + "q_norm", {s.HD}, nullptr, &w.q_norm, false});
      out.push_back({p + "k_norm", {s.HD}, nullptr, &w.k_norm, false});
    }
    out.push_back({p + "mlp_norm", {s.C}, nullptr, &w.mlp_norm, false});
  }
  out.push_back({"final_norm", {s.C}, nullptr, &final_norm_, false});
  if (!s.tie_embeddings) out.push_back({"lm_head", {s.V, s.C}, &lm_head_, nullptr, false});
  return out;
}

BaseTensor Model::base_tensor(const std::string& name) {
  for (BaseTensor& b : base_tensors())
    if (b.name == name) return b;
  throw Error("parameter_unknown", "the base has no tensor '" + name + "'");
}

Adapter& Model::adapter(const std::string& name) {
  for (auto& a : adapters_)
    if (a->name == name) return *a;
  throw Error("adapter_unknown", "no adapter named '" + name + "'");
}

void Model::materialise(Linear& l) {
  weights_changed();
  if (l.materialised) return;
  if (l.merged) throw Error("adapter_merged", "the base is merged with adapter '" + merged_ + "'; unmerge it first");
  l.owned.resize(static_cast<size_t>(l.out * l.in));
  cpu::to_f32(l.owned.data(), l.map, l.map_dtype, l.out * l.in);
  drop_resident(l.map, dtype_bytes(l.map_dtype, l.out * l.in));
  l.w = l.owned.data();
  l.dtype = DType::F32;
  l.materialised = true;
}

void Model::materialise_embed() {
  weights_changed();
  if (!embed_owned_.empty()) return;
  const int64_t n = spec_.V * spec_.C;
  embed_owned_.resize(static_cast<size_t>(n));
  cpu::to_f32(embed_owned_.data(), embed_, embed_dtype_, n);
  drop_resident(embed_, dtype_bytes(embed_dtype_, n));
  embed_ = embed_owned_.data();
  embed_dtype_ = DType::F32;
  if (spec_.tie_embeddings) {  // still one tensor: the head reads the same master
    lm_head_.w = embed_;
    lm_head_.dtype = DType::F32;
  }
}

void Model::add_adapter(const std::string& name, const AdapterSpec& spec) {
  weights_changed();
  if (name.empty()) throw Error("invalid_adapter", "an adapter needs a non-empty name");
  for (auto& a : adapters_)
    if (a->name == name) throw Error("adapter_exists", "an adapter named '" + name + "' already exists");
  const LayerWeights& w0 = layers_[0];
  auto dims = [&](int t) { return std::array<int64_t, 2>{w0.at(t).out, w0.at(t).in}; };
  adapters_.push_back(std::make_unique<Adapter>(name, spec, spec_.L, spec_.C, dims));
}

void Model::remove_adapter(const std::string& name) {
  weights_changed();
  Adapter& a = adapter(name);
  if (merged_ == name) unmerge_adapter();
  if (tape_.adapter == &a) drop_tape();
  if (train_kind_ == TrainKind::Adapter && train_adapter_ == name) set_trainable(TrainKind::None, "");
  adapters_.erase(std::find_if(adapters_.begin(), adapters_.end(), [&](auto& p) { return p.get() == &a; }));
}

std::vector<std::string> Model::adapter_names() const {
  std::vector<std::string> out;
  for (auto& a : adapters_) out.push_back(a->name);
  return out;
}

// Each adapter tensor by its ParameterInfo name, with its fp32 storage.
template <typename F>
static void for_each_adapter_tensor(Adapter& a, int64_t L, F f) {
  const int64_t r = a.spec.lora.rank;
  for (int64_t l = 0; l < L; l++)
    for (int t = 0; t < kTargets; t++) {
      LoraMats& m = a.at(l, t);
      if (!m.on()) continue;
      const std::string p = "L" + std::to_string(l) + "." + target_name(t) + ".";
      f(p + "lora_A", std::vector<int64_t>{r, m.in}, m.A.data());
      f(p + "lora_B", std::vector<int64_t>{m.out, r}, m.B.data());
    }
  if (!a.value_head.empty())
    f(std::string("value_head"), std::vector<int64_t>{static_cast<int64_t>(a.value_head.size())}, a.value_head.data());
}

// No weights_changed() here: choosing a set rewrites nothing (materialise() says so itself),
// so a device keeps every resident copy — switching roles moves no weights.
void Model::set_trainable(TrainKind kind, const std::string& name) {
  if (kind == TrainKind::Base && any_merged())
    throw Error("adapter_merged", "setTrainable: adapter '" + merged_ + "' is merged; unmerge it first");
  if (kind == TrainKind::Base && tp_ && std::string(exec_->device()) != "cpu")  // rank.h says why
    throw Error("unsupported",
                "setTrainable: full-parameter training with --tensor-parallel > 1 on CUDA devices is not built: each "
                "device holds copies of its shards of the base, which the optimizer would not update; train LoRA "
                "adapters there, or the full model with --device cpu or on one device");
  Adapter* a = kind == TrainKind::Adapter ? &adapter(name) : nullptr;
  if (a && merged_ == name)
    throw Error("adapter_merged", "setTrainable: adapter '" + name + "' is merged; unmerge it first");
  exec_->bind();                                // on the JS thread: the model's device
  if (tp_) tp_->detach_trainable(*this);        // the other devices' mirrors (rank.h)
  resident_params_.detach(*exec_, trainable_);  // the device's values back into the host arrays
  trainable_.clear();
  if (kind == TrainKind::None) {  // training is over: give the activation memory back
    tape_ = Tape{};
    nograd_tape_ = Tape{};
    scratch_ = TrainScratch{};
  }
  train_kind_ = kind;
  train_adapter_ = a ? name : "";
  if (a) {
    for_each_adapter_tensor(*a, spec_.L, [&](std::string n, std::vector<int64_t> shape, float* data) {
      trainable_.add(std::move(n), std::move(shape), data);
    });
  } else if (kind == TrainKind::Base) {
    materialise_embed();
    for (BaseTensor& b : base_tensors()) {
      float* data;
      if (b.embed) data = embed_owned_.data();
      else if (b.vec) data = b.vec->data();
      else {
        materialise(*b.lin);
        data = b.lin->owned.data();
      }
      trainable_.add(b.name, b.shape, data);
    }
  }
  // on a device the set trains where it is resident (the CPU tensor-parallel ranks never get here)
  if (kind != TrainKind::None && !exec_->train().host()) {
    resident_params_.attach(*exec_, trainable_);
    if (tp_) tp_->attach_trainable(*this);
  }
}

void Model::sync_to_host() {
  if (!resident_params_.active()) return;
  exec_->bind();
  resident_params_.sync(*exec_, trainable_);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Model::parameters(const std::string* name) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  if (name) {
    for_each_adapter_tensor(adapter(*name), spec_.L, [&](std::string n, std::vector<int64_t> shape, float*) {
      out.emplace_back(std::move(n), std::move(shape));
    });
  } else {
    for (BaseTensor& b : base_tensors()) out.emplace_back(b.name, b.shape);
  }
  return out;
}

// An adapter tensor's storage and shape; throws "parameter_unknown".
static float* adapter_tensor(Adapter& a, int64_t L, const std::string& name, std::vector<int64_t>& shape) {
  float* found = nullptr;
  for_each_adapter_tensor(a, L, [&](const std::string& n, std::vector<int64_t> s, float* data) {
    if (n == name) found = data, shape = std::move(s);
  });
  if (!found) throw Error("parameter_unknown", "adapter '" + a.name + "' has no tensor '" + name + "'");
  return found;
}

static int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::vector<float> Model::read_parameter(const std::string* ad, const std::string& name) {
  std::vector<int64_t> shape;
  if (ad) {
    float* p = adapter_tensor(adapter(*ad), spec_.L, name, shape);
    if (resident_params_.attached(p)) exec_->bind(), exec_->pull(p, numel(shape));  // trained on the device
    return std::vector<float>(p, p + numel(shape));
  }
  BaseTensor b = base_tensor(name);
  std::vector<float> out(static_cast<size_t>(numel(b.shape)));
  if (const void* host = b.vec ? b.vec->data() : b.embed ? embed_ : b.lin->w; resident_params_.attached(host))
    exec_->bind(), exec_->pull(static_cast<float*>(const_cast<void*>(host)), numel(b.shape));
  if (b.vec) out = *b.vec;
  else if (b.embed) cpu::to_f32(out.data(), embed_, embed_dtype_, numel(b.shape));
  else cpu::to_f32(out.data(), b.lin->w, b.lin->dtype, numel(b.shape));
  return out;
}

void Model::write_parameter(const std::string* ad, const std::string& name, const std::vector<float>& data) {
  weights_changed();
  if (ad && merged_ == *ad)
    throw Error("adapter_merged", "writeParameter: adapter '" + *ad + "' is merged; unmerge it first");
  std::vector<int64_t> shape;
  float* dst = nullptr;
  BaseTensor b;
  if (ad) dst = adapter_tensor(adapter(*ad), spec_.L, name, shape);
  else b = base_tensor(name), shape = b.shape;
  if (static_cast<int64_t>(data.size()) != numel(shape))
    throw Error("shape_mismatch", "writeParameter: '" + name + "' is " + shape_str(shape) + " (" +
                                      std::to_string(numel(shape)) + " values), got " + std::to_string(data.size()));
  if (!ad) {  // checked before materialising, so a bad write changes nothing
    if (b.vec) dst = b.vec->data();
    else if (b.embed) materialise_embed(), dst = embed_owned_.data();
    else materialise(*b.lin), dst = b.lin->owned.data();
  }
  std::copy(data.begin(), data.end(), dst);
  if (resident_params_.attached(dst)) {  // the device's copy is the one trained
    exec_->bind(), exec_->push(dst, numel(shape));
    if (tp_) tp_->push(*this, dst, numel(shape));  // and every tensor-parallel device's mirror
  }
  drop_tape();
}

void Model::load_optimizer_state(int64_t step, const std::vector<std::string>& names,
                                 const std::vector<std::vector<float>>& m, const std::vector<std::vector<float>>& v) {
  if (step < 0) throw Error("invalid_argument", "loadOptimizerState: step must be >= 0");
  if (names.size() != trainable_.params().size())
    throw Error("parameter_unknown", "loadOptimizerState: the state holds " + std::to_string(names.size()) +
                                         " tensors, the trainable set " + std::to_string(trainable_.params().size()));
  std::set<std::string> seen;
  for (size_t i = 0; i < names.size(); i++) {  // check everything before changing anything
    if (!seen.insert(names[i]).second)
      throw Error("invalid_argument", "loadOptimizerState: '" + names[i] + "' appears twice");
    Param* p = trainable_.find(names[i]);
    if (!p) throw Error("parameter_unknown", "loadOptimizerState: '" + names[i] + "' is not trainable");
    if (static_cast<int64_t>(m[i].size()) != p->n || static_cast<int64_t>(v[i].size()) != p->n)
      throw Error("shape_mismatch", "loadOptimizerState: '" + names[i] + "' needs " + std::to_string(p->n) + " values");
  }
  for (size_t i = 0; i < names.size(); i++) {
    Param* p = trainable_.find(names[i]);
    p->exp_avg = m[i];
    p->exp_avg_sq = v[i];
  }
  trainable_.set_steps(step);
  if (resident_params_.active()) exec_->bind(), resident_params_.push_moments(*exec_, trainable_);
}

void Model::merge_adapter(const std::string& name) {
  weights_changed();
  Adapter& a = adapter(name);
  if (any_merged()) throw Error("adapter_merged", "adapter '" + merged_ + "' is already merged; unmerge it first");
  if (!a.spec.has_lora) throw Error("invalid_adapter", "adapter '" + name + "' has no LoRA to merge");
  if (train_kind_ == TrainKind::Adapter && train_adapter_ == name)
    throw Error("adapter_trainable", "adapter '" + name + "' is being trained; setTrainable(null) before merging");
  for (const LayerWeights& w : layers_)
    for (int t = 0; t < kTargets; t++)
      if (a.spec.lora.targets[t] && w.at(t).materialised)
        throw Error("merge_unsupported", "the base is materialised for full fine-tuning; merging needs the mapped base");
  const int64_t r = a.spec.lora.rank;
  for (int64_t l = 0; l < spec_.L; l++)
    for (int t = 0; t < kTargets; t++) {
      const LoraMats& m = a.at(l, t);
      if (!m.on()) continue;
      Linear& lin = layers_[static_cast<size_t>(l)].at(t);
      lin.owned.resize(static_cast<size_t>(lin.out * lin.in));
      cpu::to_f32(lin.owned.data(), lin.map, lin.map_dtype, lin.out * lin.in);
      // W' = W + s·B·A
      cpu::sgemm(false, false, lin.out, lin.in, r, a.scale, m.B.data(), r, m.A.data(), lin.in, 1.0f, lin.owned.data(),
                 lin.in, *pool_);
      lin.w = lin.owned.data();
      lin.dtype = DType::F32;
      lin.merged = true;
    }
  merged_ = name;
  drop_tape();
}

void Model::unmerge_adapter() {
  weights_changed();
  for (LayerWeights& w : layers_)
    for (int t = 0; t < kTargets; t++) {
      Linear& lin = w.at(t);
      if (!lin.merged) continue;
      lin.w = lin.map;
      lin.dtype = lin.map_dtype;
      lin.owned = std::vector<float>();
      lin.merged = false;
    }
  merged_.clear();
  drop_tape();
}

}  // namespace hc
