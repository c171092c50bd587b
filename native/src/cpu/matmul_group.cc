// matmul_group(): the products of one x (q/k/v, gate/up) as one parallel region when they
// all stream. A decode step of a small model is a chain of GEMVs of tens of microseconds
// each; every region costs a wake-up of the other ranks and a barrier at its end, and the
// rank that finishes first idles there. One region over the concatenated rows, handed out
// in chunks from a shared counter (ThreadPool::run_chunks), pays that once per group.
// Prefill's packed products of one x run likewise as one region (matmul_packed.cc).
#include <algorithm>
#include <vector>

#include "../errors.h"
#include "matmul.h"

namespace hc::cpu {

void matmul_group(const MatmulOut* outs, int count, const float* x, int64_t M, int64_t K, ThreadPool& pool,
                  MatmulPrecision precision) {
  if (count <= 0 || M <= 0) return;
  std::vector<GemmArgs> gs;
  gs.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; i++) {
    const MatmulOut& o = outs[i];
    gs.push_back(GemmArgs{false, true, M, o.N, K, 1.f, x, K, o.w, o.wtype, K, 0.f, o.out, o.N, o.bias, precision, false, o.packed});
  }
  // one region only where every product streams with kernels of the same column tile (nr)
  // and there is enough work to split; otherwise each runs as matmul() would run it
  const CpuKernels& k0 = kernels_of(gs[0]);
  int64_t flops = 0;
  bool fused = pool.size() > 1 && K > 0;
  for (const GemmArgs& g : gs) {
    const CpuKernels& k = kernels_of(g);
    fused = fused && streams(k, g) && k.nr == k0.nr && K % block_elems(g.btype) == 0;
    flops += 2 * M * g.N * K;
  }
  // prefill: every product packs with the same kernels: one region of column chunks (matmul_packed.cc)
  bool packed = pool.size() > 1 && K > 0;
  int64_t cols = 0;
  for (const GemmArgs& g : gs) {
    packed = packed && &kernels_of(g) == &k0 && !streams(k0, g) && chunks_packed(k0, g);
    cols += g.N;
  }
  if (packed && cols >= M) return gemm_packed(k0, gs.data(), count, pool);
  if (!fused || flops < kParallelMinFlops) {
    for (int i = 0; i < count; i++)
      matmul(outs[i].out, x, outs[i].w, outs[i].wtype, outs[i].bias, M, outs[i].N, K, pool, precision, false,
             outs[i].packed);
    return;
  }
  // product i owns [start[i], start[i+1]) of the concatenated rows, each padded to whole
  // tiles so that no chunk splits a product anywhere but at a multiple of nr
  const int64_t nr = k0.nr;
  const uint64_t x_id = next_region_id();  // every product reads the same x: prepared once per rank
  for (GemmArgs& g : gs) g.x_id = x_id;
  std::vector<int64_t> start(static_cast<size_t>(count) + 1, 0);
  std::vector<const CpuKernels*> ks(static_cast<size_t>(count));
  for (int i = 0; i < count; i++) {
    start[i + 1] = start[i] + (gs[i].N + nr - 1) / nr * nr;
    ks[i] = &kernels_of(gs[i]);
  }
  pool.run_chunks(start[count], nr, stream_chunk(k0, gs[0]), [&](int64_t b, int64_t e) {
    for (int i = 0; i < count; i++) {
      const int64_t lo = std::max(b, start[i]) - start[i], hi = std::min({e - start[i], gs[i].N});
      if (lo < hi) ks[i]->gemv_cols(gs[i], lo, hi);
    }
  });
}

}  // namespace hc::cpu
