// gemm_packed(): the packed GEMM (prefill, training) as one parallel region over the column
// tiles of one or several products of the same A (q/k/v, gate/up), handed out in guided
// chunks from a shared counter (ThreadPool::run_chunks). A static split makes the rank that
// finishes first wait at the region's end for the other (≈ 12 % of a 2-thread prefill, more
// when the machine is shared and a rank is descheduled); one region per group also pays the
// wake-up and the barrier once instead of once per product. Each rank packs A once per
// region (CpuKernels::gemm_chunk), as a static column split also did.
#include <algorithm>
#include <vector>

#include "matmul_kernels.h"

namespace hc::cpu {

void gemm_packed(const CpuKernels& k, const GemmArgs* gs, int count, ThreadPool& pool) {
  if (count <= 0) return;
  const GemmArgs& g0 = gs[0];
  if (g0.M <= 0 || g0.K <= 0) {
    for (int i = 0; i < count; i++) gemm_run(k, gs[i], pool, GemmPath::Packed);
    return;
  }
  const uint64_t region = next_region_id();  // packed A is never reused across regions
  // row blocks of at most kPackedABytes of fp32 A each (one block for the 110M model's prefill)
  const int64_t nblocks = std::max<int64_t>(1, (g0.M * g0.K * 4 + kPackedABytes - 1) / kPackedABytes);
  const int64_t rows = (g0.M / nblocks + k.mr - 1) / k.mr * k.mr;
  const int64_t nb = (g0.M + rows - 1) / rows;
  // segment s = (row block s / count, product s % count) owns [start[s], start[s+1]) of the
  // column tiles, each padded to whole tiles so no chunk splits a tile
  const int64_t nr = k.nr;
  std::vector<int64_t> start(static_cast<size_t>(nb * count) + 1, 0);
  int64_t flops = 0;
  for (int64_t s = 0; s < nb * count; s++) start[s + 1] = start[s] + (gs[s % count].N + nr - 1) / nr * nr;
  for (int i = 0; i < count; i++) flops += 2 * g0.M * gs[i].N * g0.K;
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t s = std::upper_bound(start.begin(), start.end(), b) - start.begin() - 1; s < nb * count && start[s] < e; s++) {
      const GemmArgs& g = gs[s % count];
      const int64_t lo = std::max(b, start[s]) - start[s], hi = std::min(e - start[s], g.N);
      const int64_t m0 = s / count * rows, m1 = std::min(g.M, m0 + rows);
      if (lo < hi) k.gemm_chunk(g, region, m0, m1, lo, hi);
    }
  };
  if (pool.size() == 1 || flops < kParallelMinFlops) return run(0, start.back());
  // chunks of at least 64 columns: each one streams the rank's packed A once more from cache
  pool.run_chunks(start.back(), nr, std::max<int64_t>(nr, 64), run);
}

}  // namespace hc::cpu
