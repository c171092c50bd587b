// Entry points of the AVX-512 attention kernels, compiled in attention_avx512.cc (prompt
// tiles) and attention_decode_avx512.cc (decode) with the AVX-512 flags and called only when dispatch.h's kernel_level() is Avx512 or above.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kv_elem.h"

namespace hc::cpu::avx512 {

// The kernels' instance for head size HD: pick(std::integral_constant<int, HD>{}) for the
// sizes both kernels are compiled for (16 … 256), else `fallback` (what the tile kernel
// adds, or nullptr). One list, so the prompt and decode kernels cannot drift apart.
template <class Pick, class Fallback>
auto for_head_dim(int64_t HD, Pick pick, Fallback fallback) {
  switch (HD) {
    case 16: return pick(std::integral_constant<int, 16>{});
    case 32: return pick(std::integral_constant<int, 32>{});
    case 64: return pick(std::integral_constant<int, 64>{});
    case 96: return pick(std::integral_constant<int, 96>{});
    case 128: return pick(std::integral_constant<int, 128>{});
    case 256: return pick(std::integral_constant<int, 256>{});
    default: return fallback(HD);
  }
}

// Rows a tile holds: one query per fp32 lane.
constexpr int kTileRows = 16;

// Attention of up to kTileRows query rows that share one kv head's keys (a prompt's
// consecutive tokens of one head): row r reads q + r·q_stride, sees keys
// [first[r], npos[r]) of the paged k/v and writes out + r·out_stride. Rows past `rows`
// are not read or written. HD must be one attention_tile_supports() accepts. E: the
// pool's element type (kv_elem.h; instances for float, Bf16, F16).
template <class E>
void attention_tile(float* out, int64_t out_stride, const float* q, int64_t q_stride, int rows, const E* k,
                    const E* v, const int32_t* blocks, int64_t block_stride, int64_t token_stride,
                    int64_t block_size, const int64_t* first, const int64_t* npos, int64_t HD, float scale);

// The head sizes the tile kernel has an instance for (8, 16, 32, 64, 96, 128, 256).
bool attention_tile_supports(int64_t HD);

// Decode attention of one query token's G heads that share one kv head (q + h·HD, h < G)
// over keys [first, npos) of the paged k/v. Without m_out: out + h·HD = the normalised
// output. With m_out/l_out (one part of a split context): out + h·HD = the unnormalised
// Σ p·v, m_out[h] the part's max score and l_out[h] its Σ p, for the caller to combine.
// Needs first < npos and an HD attention_decode_supports() accepts. E as attention_tile.
template <class E>
void attention_decode(float* out, const float* q, int G, const E* k, const E* v, const int32_t* blocks,
                      int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first, int64_t npos,
                      int64_t HD, float scale, float* m_out, float* l_out);

// The head sizes the decode kernel has an instance for (16, 32, 64, 96, 128, 256).
bool attention_decode_supports(int64_t HD);

}  // namespace hc::cpu::avx512
