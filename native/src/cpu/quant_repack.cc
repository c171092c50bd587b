// quant_repack.h: the repacked layouts (plain C++: load time only), and the set that owns the copies.
#include "quant_repack.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "../errors.h"
#include "../quant.h"

namespace hc::cpu {
namespace {

constexpr int64_t R = kRepackRows;

// Bytes of one block (Q4_K: super-block) of a group.
int64_t block_bytes(DType t) {
  switch (t) {
    case DType::Q4_0: return R * 18;
    case DType::Q8_0: return R * 34;
    case DType::Q4_K: return R * 144 + 4 * R;
    default: return 0;
  }
}

// Block b of group g, between llama.cpp's rows (src) and the group's layout (dst); to_layout
// picks the direction, so one description of the layout serves both.
template <bool ToLayout>
void move_block(DType t, uint8_t* rows, int64_t row_bytes, uint8_t* blk, int64_t b) {
  auto mv = [](uint8_t* layout, uint8_t* row, size_t n) {
    if (ToLayout) std::memcpy(layout, row, n);
    else std::memcpy(row, layout, n);
  };
  for (int64_t c = 0; c < R; c++) {
    uint8_t* row = rows + c * row_bytes;
    if (t == DType::Q4_0 || t == DType::Q8_0) {
      const int64_t bs = t == DType::Q4_0 ? 18 : 34, nv = t == DType::Q4_0 ? 4 : 8;
      uint8_t* src = row + b * bs;
      mv(blk + 2 * c, src, 2);
      for (int64_t i = 0; i < nv; i++) {
        uint8_t* lane = blk + 2 * R + i * 4 * R + 4 * c;
        if (t == DType::Q8_0) {  // + 128: the int8 weight as vpdpbusd's unsigned operand
          for (int j = 0; j < 4; j++) {
            if (ToLayout) lane[j] = static_cast<uint8_t>(src[2 + 4 * i + j] ^ 0x80);
            else src[2 + 4 * i + j] = static_cast<uint8_t>(lane[j] ^ 0x80);
          }
        } else {
          mv(lane, src + 2 + 4 * i, 4);
        }
      }
    } else {  // Q4_K
      uint8_t* src = row + b * 144;
      mv(blk + 2 * c, src, 2);
      mv(blk + 2 * R + 2 * c, src + 2, 2);
      if (ToLayout)
        for (int j = 0; j < 8; j++) {
          int s, m;
          q4k_scale_min(src + 4, j, s, m);
          blk[4 * R + j * R + c] = static_cast<uint8_t>(s);
          blk[12 * R + j * R + c] = static_cast<uint8_t>(m);
        }
      else
        for (int j = 0; j < 4; j++) {  // q4k_scale_min's packing, inverted
          const int s0 = blk[4 * R + j * R + c], m0 = blk[12 * R + j * R + c];
          const int s1 = blk[4 * R + (j + 4) * R + c], m1 = blk[12 * R + (j + 4) * R + c];
          src[4 + j] = static_cast<uint8_t>((s0 & 63) | ((s1 >> 4) << 6));
          src[4 + j + 4] = static_cast<uint8_t>((m0 & 63) | ((m1 >> 4) << 6));
          src[4 + j + 8] = static_cast<uint8_t>((s1 & 15) | ((m1 & 15) << 4));
        }
      for (int64_t p = 0; p < 4; p++)
        for (int64_t i = 0; i < 8; i++) mv(blk + 20 * R + (p * 8 + i) * 4 * R + 4 * c, src + 16 + 32 * p + 4 * i, 4);
    }
  }
}

}  // namespace

bool can_repack(DType t, int64_t N, int64_t K) {
  return block_bytes(t) > 0 && N > 0 && N % R == 0 && K > 0 && K % block_elems(t) == 0;
}

int64_t repack_group_bytes(DType t, int64_t K) { return K / block_elems(t) * block_bytes(t); }
int64_t repacked_bytes(DType t, int64_t N, int64_t K) { return N / R * repack_group_bytes(t, K); }

void repack(DType t, const void* src, int64_t N, int64_t K, uint8_t* dst, ThreadPool& pool) {
  if (!can_repack(t, N, K)) throw Error("invalid_argument", std::string("cannot repack a ") + dtype_name(t) + " weight of " +
                                                              std::to_string(N) + " rows × " + std::to_string(K));
  const int64_t row = dtype_bytes(t, K), nb = K / block_elems(t), gb = repack_group_bytes(t, K);
  uint8_t* s = const_cast<uint8_t*>(static_cast<const uint8_t*>(src));  // read only: move_block<true> never writes rows
  pool.parallel_for(N / R, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; g++)
      for (int64_t b = 0; b < nb; b++) move_block<true>(t, s + g * R * row, row, dst + g * gb + b * block_bytes(t), b);
  });
}

void unrepack(DType t, const uint8_t* src, int64_t N, int64_t K, void* dst) {
  const int64_t row = dtype_bytes(t, K), nb = K / block_elems(t), gb = repack_group_bytes(t, K);
  uint8_t* d = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < N / R; g++)
    for (int64_t b = 0; b < nb; b++)
      move_block<false>(t, d + g * R * row, row, const_cast<uint8_t*>(src) + g * gb + b * block_bytes(t), b);
}

bool repack_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("HYBRIDCHAT_REPACK");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

const RepackedWeight* RepackSet::add(const void* w, DType t, int64_t N, int64_t K, ThreadPool& pool) {
  if (!can_repack(t, N, K)) return nullptr;
  for (const auto& c : owned_)
    if (c->src == w) return &c->w;
  const int64_t bytes = repacked_bytes(t, N, K);
  auto c = std::make_unique<Copy>();
  c->src = w;
  c->buf.reset(static_cast<uint8_t*>(std::aligned_alloc(64, static_cast<size_t>((bytes + 63) / 64 * 64))));
  if (!c->buf) throw std::bad_alloc();
  repack(t, w, N, K, c->buf.get(), pool);
  c->w = RepackedWeight{c->buf.get(), t, N, K};
  owned_.push_back(std::move(c));
  bytes_ += bytes;
  return &owned_.back()->w;
}

void RepackSet::Free::operator()(uint8_t* p) const { std::free(p); }

}  // namespace hc::cpu
