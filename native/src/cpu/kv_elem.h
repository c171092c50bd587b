// The element types of a paged KV pool (KvGeometry::dtype): fp32, or 16-bit bf16 / f16
// rows (half the bytes a decode step streams; llama.cpp's default cache is f16). The pool
// is written rounded to nearest even (kv_write, through ops.h's from_f32) and every
// attention kernel reads it through one template over these types, widening each row to
// fp32 in registers: exact, so a 16-bit pool's attention is the fp32 attention of the
// rounded K/V.
//
// The widening loads are `static inline` (internal linkage): each ISA translation unit
// keeps its own copy, so a linker never picks an AVX-512 body for the portable kernels.
#pragma once
#include <cstdint>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#include "../dtype.h"
#include "../errors.h"

namespace hc::cpu {

// Storage-only tags: the same 16 bits read two ways.
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

// f(E{}) with E the element type of dt (f32, bf16 or f16; anything else refused by name)
template <class F>
decltype(auto) with_kv_elem(DType dt, F&& f) {
  switch (dt) {
    case DType::F32: return f(float{});
    case DType::BF16: return f(Bf16{});
    case DType::F16: return f(F16{});
    default: throw Error("unsupported", std::string("a ") + dtype_name(dt) + " KV pool: f32, bf16 or f16");
  }
}

// The portable kernels' scalar read.
static inline float widen(float x) { return x; }
static inline float widen(Bf16 x) { return bf16_to_f32(x.bits); }
static inline float widen(F16 x) { return f16_to_f32(x.bits); }

#if defined(__AVX2__) && defined(__F16C__)
// eight elements as fp32 (bf16: the 16 bits shifted into the top half; f16: vcvtph2ps)
static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const Bf16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline __m256 load8(const F16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#endif

#if defined(__AVX512F__)
static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
static inline __m512 load16(const Bf16* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline __m512 load16(const F16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
#endif

}  // namespace hc::cpu
