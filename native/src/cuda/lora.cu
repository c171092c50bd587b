// Batched multi-adapter LoRA (Punica's BGMV, S-LoRA's unified paging of adapters aside):
// every row of a packed serving batch adds its own adapter's scale·(x·Aᵀ)·Bᵀ, all rows in
// two launches per linear whatever the number of adapters: shrink (u[t] = x[t]·A_eᵀ, a
// warp per rank row) then expand (out[t] += scale·u[t]·B_eᵀ, a thread per output). The
// adapters are a table of device pointers and ranks (HcLoraEntry), the rows' choice an
// int per row, so a captured graph replays them with whatever the step wrote there.
#include <memory>
#include <vector>

#include "common.cuh"
#include "launch.cuh"

namespace hc::cuda {

constexpr int kLoraThreads = 128;

// block t: row t's u[0, rank); lanes stride over K, each warp over ranks
__global__ void lora_shrink_kernel(float* u, const float* x, const HcLoraEntry* entries, const int32_t* slot,
                                   int64_t K, int64_t max_rank) {
  const int64_t t = blockIdx.x;
  const int s = slot[t];
  if (s < 0) return;
  const HcLoraEntry e = entries[s];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const float* xr = x + t * K;
  for (int r = warp; r < e.rank; r += nwarps) {
    const float* ar = e.a + static_cast<int64_t>(r) * e.lda;
    float acc = 0.f;
    for (int64_t k = lane; k < K; k += 32) acc = fmaf(xr[k], ar[k], acc);
    acc = warp_sum(acc);
    if (lane == 0) u[t * max_rank + r] = acc;
  }
}

// block (t, n-chunk): out[t, n] += scale·Σ_r u[t,r]·B[n,r]
__global__ void lora_expand_kernel(float* out, const float* u, const HcLoraEntry* entries, const int32_t* slot,
                                   int64_t N, int64_t max_rank) {
  const int64_t t = blockIdx.x, n = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int s = slot[t];
  if (s < 0 || n >= N) return;
  const HcLoraEntry e = entries[s];
  if (e.rank == 0) return;
  const float* ut = u + t * max_rank;
  const float* br = e.b + n * e.rank;
  float acc = 0.f;
  for (int r = 0; r < e.rank; r++) acc = fmaf(ut[r], br[r], acc);
  out[t * N + n] += e.scale * acc;
}

void lora_batched(float* out, const float* x, const HcLoraEntry* entries, const int32_t* slot, float* u, int64_t T,
                  int64_t N, int64_t K, int64_t max_rank, cudaStream_t stream) {
  if (T <= 0 || N <= 0 || max_rank <= 0) return;
  require(T < (int64_t{1} << 31) && blocks_for(N, kLoraThreads) <= 65535u, "invalid_argument",
          "lora: too many rows or outputs for one launch");
  lora_shrink_kernel<<<static_cast<unsigned>(T), kLoraThreads, 0, stream>>>(u, x, entries, slot, K, max_rank);
  HC_CUDA_LAUNCHED("lora_shrink_kernel");
  const dim3 grid(static_cast<unsigned>(T), blocks_for(N, kLoraThreads));
  lora_expand_kernel<<<grid, kLoraThreads, 0, stream>>>(out, u, entries, slot, N, max_rank);
  HC_CUDA_LAUNCHED("lora_expand_kernel");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_dev_lora(float* out, const float* x, const HcLoraEntry* entries, const int32_t* slot, float* u,
                                int64_t T, int64_t N, int64_t K, int64_t max_rank) {
  return hc::cuda::entry([&] { hc::cuda::lora_batched(out, x, entries, slot, u, T, N, K, max_rank, hc::cuda::forward_stream()); });
}

extern "C" int hc_cuda_lora(float* out, const float* x, const int32_t* slot, int64_t T, int64_t N, int64_t K, int64_t n,
                            const float* const* a, const int64_t* lda, const float* const* b, const int32_t* rank,
                            const float* scale) {
  using namespace hc::cuda;
  return entry([&] {
    int64_t max_rank = 0;
    for (int64_t e = 0; e < n; e++) max_rank = rank[e] > max_rank ? rank[e] : max_rank;
    for (int64_t t = 0; t < T; t++)
      require(slot[t] >= -1 && slot[t] < n, "invalid_argument", "lora: slot[" + std::to_string(t) + "] out of range");
    // each adapter's A and B in device memory, their addresses in a device table
    std::vector<std::unique_ptr<Buffer<float>>> mats;
    std::vector<HcLoraEntry> host(static_cast<size_t>(n));
    for (int64_t e = 0; e < n; e++) {
      require(lda[e] >= K, "invalid_argument", "lora: lda below K");
      mats.push_back(std::make_unique<Buffer<float>>(a[e], rank[e] > 0 ? (rank[e] - 1) * lda[e] + K : 0));
      host[e].a = mats.back()->get();
      host[e].lda = lda[e];
      mats.push_back(std::make_unique<Buffer<float>>(b[e], N * rank[e]));
      host[e].b = mats.back()->get();
      host[e].rank = rank[e];
      host[e].scale = scale[e];
    }
    Buffer<char> d_entries(reinterpret_cast<const char*>(host.data()), n * static_cast<int64_t>(sizeof(HcLoraEntry)));
    Buffer<int32_t> d_slot(slot, T);
    Buffer<float> d_x(x, T * K), d_out(out, T * N), d_u(T * (max_rank > 0 ? max_rank : 1));
    lora_batched(d_out.get(), d_x.get(), reinterpret_cast<const HcLoraEntry*>(d_entries.get()), d_slot.get(),
                 d_u.get(), T, N, K, max_rank, 0);
    d_out.download(out);
  });
}
