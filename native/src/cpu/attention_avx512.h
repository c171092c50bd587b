// Entry points of the AVX-512 attention kernel, compiled in attention_avx512.cc with the
// AVX-512 flags and called only when dispatch.h's kernel_level() is Avx512 or above.
#pragma once
#include <cstdint>

namespace hc::cpu::avx512 {

// Rows a tile holds: one query per fp32 lane.
constexpr int kTileRows = 16;

// Attention of up to kTileRows query rows that share one kv head's keys (a prompt's
// consecutive tokens of one head): row r reads q + r·q_stride, sees keys
// [first[r], npos[r]) of the paged k/v and writes out + r·out_stride. Rows past `rows`
// are not read or written. HD must be one attention_tile_supports() accepts.
void attention_tile(float* out, int64_t out_stride, const float* q, int64_t q_stride, int rows, const float* k,
                    const float* v, const int32_t* blocks, int64_t block_stride, int64_t token_stride,
                    int64_t block_size, const int64_t* first, const int64_t* npos, int64_t HD, float scale);

// The head sizes the tile kernel has an instance for (8, 16, 32, 64, 96, 128, 256).
bool attention_tile_supports(int64_t HD);

}  // namespace hc::cpu::avx512
