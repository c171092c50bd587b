// Token embedding gather, and the storage-type row conversions it shares with the ops API
// (the block types, q8_0/q4_0/q4_k, through quant.h: n a multiple of the block).
#include <cstring>

#include "ops.h"
#include "../errors.h"
#include "../quant.h"

namespace hc::cpu {

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
      for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      uint16_t* o = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; i++) o[i] = f32_to_f16(src[i]);
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
