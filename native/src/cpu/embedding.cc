// Token embedding gather, and the storage-type row conversions it shares with the ops API
// (the block types, q8_0/q4_0/q4_k, through quant.h: n a multiple of the block).
#include <immintrin.h>

#include <cstring>

#include "ops.h"
#include "../errors.h"
#include "../quant.h"

namespace hc::cpu {

// f32 -> f16 / bf16 eight at a time where the CPU runs the AVX2 kernels (kv_write rounds every
// new K/V row of a 16-bit KV cache through here, every step): the same bits as f32_to_f16 /
// f32_to_bf16 (nearest even, inf past f16's range, subnormals kept; a NaN stays a NaN, its
// payload aside). Function-level targets, as probe.cc: no intrinsics templates to leak.
// Returns how many elements it wrote (a multiple of 8); the caller's scalar loop does the rest.
#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) static int64_t f16_f16c(uint16_t* o, const float* s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return i;
}
__attribute__((target("avx2"))) static int64_t bf16_avx2(uint16_t* o, const float* s, int64_t n) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), abs = _mm256_set1_epi32(0x7fffffff),
                inf = _mm256_set1_epi32(0x7f800000), quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
    const __m256i h = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet), nan);
    // 16-bit halves packed (per 128-bit lane), then the lanes' low quadwords together
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), _mm256_castsi256_si128(p));
  }
  return i;
}
#else
static int64_t f16_f16c(uint16_t*, const float*, int64_t) { return 0; }
static int64_t bf16_avx2(uint16_t*, const float*, int64_t) { return 0; }
#endif

void to_f32(float* out, const void* src, DType dtype, int64_t n) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::Q8_0: return dequantize_row_q8_0(src, out, n);
    case DType::Q4_0: return dequantize_row_q4_0(src, out, n);
    case DType::Q4_K: return dequantize_row_q4_k(src, out, n);
    case DType::Q6_K: return dequantize_row_q6_k(src, out, n);
  }
}

void from_f32(void* out, const float* src, DType dtype, int64_t n) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case DType::BF16: {
      uint16_t* o = static_cast<uint16_t*>(out);
      for (int64_t i = use_avx2() ? bf16_avx2(o, src, n) : 0; i < n; i++) o[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      uint16_t* o = static_cast<uint16_t*>(out);
      for (int64_t i = use_avx2() ? f16_f16c(o, src, n) : 0; i < n; i++) o[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::Q8_0: return quantize_row_q8_0(src, out, n);
    case DType::Q4_0: return quantize_row_q4_0(src, out, n);
    case DType::Q4_K: return quantize_row_q4_k(src, out, n);
    case DType::Q6_K: throw Error("bad_dtype", "q6_k is read only (GGUF files): no quantizer");
  }
}

void embedding_forward(float* out, const int32_t* tokens, const void* table, DType dtype, int64_t T,
                       int64_t C) {
  // a GGUF's table may be quantized (C a multiple of the block)
  const size_t row = static_cast<size_t>(dtype_bytes(dtype, C));
  for (int64_t t = 0; t < T; t++)
    to_f32(out + t * C, static_cast<const char*>(table) + static_cast<size_t>(tokens[t]) * row, dtype, C);
}

// Rows of repeated tokens add up in token order (deterministic); the table gradient is
// fp32 whatever the table's storage type.
void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C) {
  for (int64_t t = 0; t < T; t++) {
    float* d = dtable + static_cast<int64_t>(tokens[t]) * C;
    const float* g = dout + t * C;
    for (int64_t i = 0; i < C; i++) d[i] += g[i];
  }
}

}  // namespace hc::cpu
