// Entry points of the AVX2/FMA kernel variants, compiled in *_avx2.cc files with
// -mavx2 -mfma -mf16c and called only when use_avx2() says the CPU has them.
// Keep these translation units free of inline library templates (std::function,
// containers): the linker may keep their AVX2 copies for the whole program.
#pragma once
#include <cstdint>

namespace hc::cpu::avx2 {

void rmsnorm_rows(float* out, const float* inp, const float* weight, int64_t rows, int64_t C, float eps);
void swiglu(float* out, const float* gate, const float* up, int64_t n);
// one query row of attention over keys [first, npos) of kv head g; HD % 8 == 0; E the
// pool's element type (kv_elem.h: float, Bf16, F16)
template <class E>
void attention_row(float* out, const float* q, const E* k, const E* v, const int32_t* blocks,
                   int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
                   int64_t HD, float scale);

// log Σ exp(x[0..V)) (max-shifted)
float logsumexp(const float* x, int64_t V);
// out[i] = scale · exp(x[i] − lse)   (out may alias x)
void scaled_softmax(float* out, const float* x, int64_t V, float lse, float scale);

}  // namespace hc::cpu::avx2
