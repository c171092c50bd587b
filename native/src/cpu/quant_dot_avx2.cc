// AVX2 int8 dot products for Q8_0 / Q4_0 / Q4_K weights (quant_dot.h, quant_dot_ymm.h): a block
// of 32 a vpmaddubsw (u8 × s8 → pairs of int16) + vpmaddwd (→ 8 int32 lanes).
#include "quant_dot.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "quant_dot_ymm.h"

namespace hc::cpu {

bool quant_dot_avx2(const GemmArgs& g, int64_t n0, int64_t n1) { return quant_dot_run<2, false>(g, n0, n1, kAvx2Int8MaxM); }

}  // namespace hc::cpu

#else

namespace hc::cpu {
bool quant_dot_avx2(const GemmArgs&, int64_t, int64_t) { return false; }
}  // namespace hc::cpu

#endif
