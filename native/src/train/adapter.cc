#include "adapter.h"

#include <cmath>

#include "../errors.h"

namespace hc {

static const char* const kNames[kTargets] = {"q", "k", "v", "o", "gate", "up", "down"};

const char* target_name(int t) { return kNames[t]; }

int parse_target(const std::string& s) {
  for (int t = 0; t < kTargets; t++)
    if (s == kNames[t]) return t;
  return -1;
}

void validate_adapter_spec(const AdapterSpec& s) {
  if (!s.has_lora && !s.value_head) throw Error("invalid_adapter", "an adapter needs LoRA, a value head, or both");
  if (!s.has_lora) return;
  const LoraSpec& l = s.lora;
  if (l.rank <= 0) throw Error("invalid_adapter", "lora.rank must be a positive integer");
  if (!std::isfinite(l.alpha)) throw Error("invalid_adapter", "lora.alpha must be finite");
  if (!(l.dropout >= 0 && l.dropout < 1)) throw Error("invalid_adapter", "lora.dropout must lie in [0, 1)");
  bool any = false;
  for (bool b : l.targets) any = any || b;
  if (!any) throw Error("invalid_adapter", "lora.targets must name at least one linear");
}

// splitmix64: a stateless mixer, so any element's random number is computed directly.
static uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t stream(uint64_t seed, uint64_t a, int64_t layer, int t) {
  return mix(mix(mix(seed) ^ a) ^ static_cast<uint64_t>(layer * kTargets + t));
}
static double unit(uint64_t key, int64_t i) {  // uniform in [0, 1), 53 bits
  return static_cast<double>(mix(key ^ mix(static_cast<uint64_t>(i))) >> 11) * 0x1.0p-53;
}

void lora_init_A(float* A, int64_t n, int64_t in, uint64_t seed, int64_t layer, int t) {
  const uint64_t key = stream(seed, 0x4c6f7241ull, layer, t);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  for (int64_t i = 0; i < n; i++) A[i] = static_cast<float>((2 * unit(key, i) - 1) * bound);
}

uint64_t dropout_key(uint64_t seed, uint64_t counter, int64_t layer, int t) {
  return stream(seed, mix(counter) ^ 0x44726f70ull, layer, t);
}

void dropout_mask(float* mask, int64_t rows, int64_t cols, int64_t ld, int64_t c0, double p, uint64_t seed,
                  uint64_t counter, int64_t layer, int t) {
  const uint64_t key = dropout_key(seed, counter, layer, t);
  const float keep = static_cast<float>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) mask[i * cols + j] = unit(key, i * ld + c0 + j) < p ? 0.0f : keep;
}

}  // namespace hc
