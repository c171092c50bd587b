// A named role on the frozen base (native/index.ts AdapterSpec): LoRA matrices for
// some of each layer's linears and/or a scalar value head. Owned by the model and read
// by both the serving forward (per sequence) and the training forward.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace hc {

// The per-layer linears, in the order LayerWeights lists them.
enum Target : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kTargets };
const char* target_name(int t);
int parse_target(const std::string& s);  // -1 when unknown

struct LoraSpec {
  int64_t rank = 0;
  double alpha = 0, dropout = 0;
  std::array<bool, kTargets> targets{};
  uint64_t seed = 0;
};

struct AdapterSpec {
  bool has_lora = false;
  LoraSpec lora;
  bool value_head = false;
};

// One targeted linear's LoRA: A [rank, in], B [out, rank]; empty when not targeted.
struct LoraMats {
  std::vector<float> A, B;
  int64_t in = 0, out = 0;
  bool on() const { return !A.empty(); }
};

struct Adapter {
  std::string name;
  AdapterSpec spec;
  float scale = 0;                // alpha / rank
  std::vector<LoraMats> lora;     // [L * kTargets]; all empty without LoRA
  std::vector<float> value_head;  // [C]; empty without one
  uint64_t forwards = 0;          // grad forwards so far: the dropout stream's counter

  // dims(t) gives {out, in} of target t. Throws "invalid_adapter" on a bad spec.
  template <typename Dims>
  Adapter(std::string n, const AdapterSpec& s, int64_t layers, int64_t C, Dims dims);
  const LoraMats& at(int64_t layer, int t) const { return lora[static_cast<size_t>(layer * kTargets + t)]; }
  LoraMats& at(int64_t layer, int t) { return lora[static_cast<size_t>(layer * kTargets + t)]; }
};

void validate_adapter_spec(const AdapterSpec& s);
// A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a=√5)) from (seed, layer, target).
void lora_init_A(float* A, int64_t n, int64_t in, uint64_t seed, int64_t layer, int t);

// Inverted-dropout multipliers ∈ {0, 1/(1-p)}, a pure function of
// (seed, forward counter, layer, target, element), so a checkpointed layer's
// recomputation draws the same mask as the forward did. The mask of a [rows, ld] input
// drawn over its columns [c0, c0 + cols) only: mask[i·cols + j] is element i·ld + c0 + j's
// (a tensor-parallel rank's slice of a row-parallel linear's input; the whole input:
// cols = ld, c0 = 0).
void dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p, uint64_t seed,
                  uint64_t counter, int64_t layer, int t);
// The stream key of that mask: element i is dropped when unit(key, i) < p. The device
// twin (cuda/train_resident.cu) draws from it.
uint64_t dropout_key(uint64_t seed, uint64_t counter, int64_t layer, int t);

template <typename Dims>
Adapter::Adapter(std::string n, const AdapterSpec& s, int64_t layers, int64_t C, Dims dims)
    : name(std::move(n)), spec(s) {
  validate_adapter_spec(s);
  lora.resize(static_cast<size_t>(layers * kTargets));
  if (s.has_lora) {
    const int64_t r = s.lora.rank;
    scale = static_cast<float>(s.lora.alpha / static_cast<double>(r));
    for (int64_t l = 0; l < layers; l++)
      for (int t = 0; t < kTargets; t++) {
        if (!s.lora.targets[t]) continue;
        LoraMats& m = at(l, t);
        const std::array<int64_t, 2> d = dims(t);
        m.out = d[0];
        m.in = d[1];
        m.A.resize(static_cast<size_t>(r * m.in));
        m.B.assign(static_cast<size_t>(m.out * r), 0.0f);
        lora_init_A(m.A.data(), r * m.in, m.in, s.lora.seed, l, t);
      }
  }
  if (s.value_head) value_head.assign(static_cast<size_t>(C), 0.0f);
}

}  // namespace hc
