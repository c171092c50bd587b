// Block-format weights (Q8_0, Q4_0, Q4_K) repacked once at load into groups of 16 rows
// interleaved block by block (llama.cpp's Q4_0x8 "repack" buffers, 16 wide for a zmm), so the
// int8 GEMM (quant_gemm.h) reads a block of 16 output columns with whole vector loads and
// packs nothing per call, and a batch of M rows of x meets each weight block once.
//
// Layout: group g (rows 16g..16g+15) is a run of the row's blocks b = 0..nb−1, each
//   Q4_0 (288 bytes = 16 × 18): d[16] fp16, then 4 vectors of 64 bytes: vector i, lane c
//        (4 bytes) = bytes 4i..4i+3 of row c's nibbles (low nibbles k = 4i.., high k = 16+4i..)
//   Q8_0 (544 bytes = 16 × 34): d[16] fp16, then 8 vectors: vector i, lane c = bytes 4i..4i+3
//        of row c's int8 weights + 128 (stored unsigned for vpdpbusd; x's −128·Σq corrects it)
//   Q4_K (2368 bytes a super-block, 16 × 144 + 64): d[16], dmin[16] fp16, sc[8][16] and
//        m[8][16] (each sub-block's 6-bit scale and min per row, as bytes), then 32 vectors:
//        vector (p, i), lane c = bytes 32p+4i..32p+4i+3 of row c's nibbles (low: sub-block 2p,
//        high: 2p+1). The scales unpacked cost 2.8 % over the file's blocks.
// Group g starts at g·group_bytes(t, K). Whoever repacks a tensor owns the copy (RepackSet) and
// hands it to each product beside the original (GemmArgs::packed, MatmulOut::packed, the Exec's
// linear ops): no lookup by pointer on the way. The original layout stays readable (training's
// dx, the tensor-parallel shards, the CUDA upload): Model drops its file pages once repacked, so
// they cost memory only if something reads them.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../dtype.h"
#include "../threadpool.h"
#include "matmul_kernels.h"

namespace hc::cpu {

constexpr int64_t kRepackRows = 16;

struct RepackedWeight {
  const uint8_t* data = nullptr;
  DType type = DType::F32;  // the original block type
  int64_t N = 0, K = 0;
};

// Whether t is repacked (Q8_0, Q4_0, Q4_K) and [N, K] fits the layout (N a multiple of 16).
bool can_repack(DType t, int64_t N, int64_t K);
// Bytes of one group's blocks (16 rows × K), and of the whole tensor.
int64_t repack_group_bytes(DType t, int64_t K);
int64_t repacked_bytes(DType t, int64_t N, int64_t K);
// src's [N, K] blocks into dst (repacked_bytes(t, N, K)), split over the pool's ranks.
void repack(DType t, const void* src, int64_t N, int64_t K, uint8_t* dst, ThreadPool& pool);
// The layout back to llama.cpp's blocks (the tests' check that nothing is lost).
void unrepack(DType t, const uint8_t* src, int64_t N, int64_t K, void* dst);

// Whether models repack at load: HYBRIDCHAT_REPACK is not "0".
bool repack_enabled();

// Whether g's product reads its repacked copy g.packed instead of g.B: one is given, the
// product is x·Bᵀ over B's whole rows (!ta, tb, ldb == K == the copy's K, N within its rows,
// the same block type) and x may be rounded to int8 (!exact_x).
inline bool reads_repacked(const GemmArgs& g) {
  const RepackedWeight* w = g.packed;
  return w && !g.ta && g.tb && !g.exact_x && w->type == g.btype && g.ldb == w->K && g.K == w->K && g.N <= w->N;
}

// Repacked copies owned by one holder (a Model, a test call), alive as long as it is.
class RepackSet {
 public:
  RepackSet() = default;
  RepackSet(const RepackSet&) = delete;
  RepackSet& operator=(const RepackSet&) = delete;
  // w's repacked copy, made once (a w already in this set returns its copy without repacking
  // again); null, with nothing done, where can_repack says no. The copy stays put while the
  // set lives.
  const RepackedWeight* add(const void* w, DType t, int64_t N, int64_t K, ThreadPool& pool);
  int64_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  struct Copy {
    const void* src;
    std::unique_ptr<uint8_t, Free> buf;
    RepackedWeight w;
  };
  std::vector<std::unique_ptr<Copy>> owned_;  // each Copy on the heap: its RepackedWeight never moves
  int64_t bytes_ = 0;
};

}  // namespace hc::cpu
