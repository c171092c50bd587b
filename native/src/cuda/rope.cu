// RoPE with HF rotate_half semantics: for i < HD/2 the pair (x[i], x[i+HD/2]) turns by
// the angle pos·invFreq[i]; the tables carry HF's attention scaling. The backward (the
// transposed rotation) and the fused q-and-k forward share the kernel.
#include "common.cuh"
#include "launch.cuh"

namespace hc::cuda {

constexpr int kRopeThreads = 256;

// the angle in double: at position 10^4+ fp32 would lose the low bits of the phase
__global__ void rope_tables_kernel(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq,
                                   int64_t T, int64_t half, float scaling) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < T * half;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double a = static_cast<double>(pos[e / half]) * static_cast<double>(inv_freq[e % half]);
    cos_out[e] = static_cast<float>(cos(a)) * scaling;
    sin_out[e] = static_cast<float>(sin(a)) * scaling;
  }
}

// Forward turns each pair by [[c, −s], [s, c]], backward by the transpose [[c, s], [−s, c]].
// One launch turns x[T,H,HD] and, when H2 > 0, x2[T,H2,HD] too (q and k of a layer: one
// pass over the tables and one launch instead of two).
template <bool Backward>
__global__ void rope_kernel(float* x, float* x2, const float* cos_t, const float* sin_t, int64_t T, int64_t H,
                            int64_t H2, int64_t HD) {
  const int64_t half = HD / 2, n1 = T * H * half, n = n1 + T * H2 * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool first = e < n1;
    const int64_t i = e % half, th = (first ? e : e - n1) / half, t = th / (first ? H : H2);
    float* p = (first ? x : x2) + th * HD;
    const float c = cos_t[t * half + i], s = Backward ? -sin_t[t * half + i] : sin_t[t * half + i];
    const float x1 = p[i], xh = p[i + half];
    p[i] = x1 * c - xh * s;
    p[i + half] = xh * c + x1 * s;
  }
}

static unsigned grid_for(int64_t n) { return blocks_for(n, kRopeThreads) < 65536u ? blocks_for(n, kRopeThreads) : 65536u; }

void rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq, int64_t T, int64_t half,
                 float scaling, cudaStream_t stream) {
  if (T * half <= 0) return;
  rope_tables_kernel<<<grid_for(T * half), kRopeThreads, 0, stream>>>(cos_out, sin_out, pos, inv_freq, T, half, scaling);
  HC_CUDA_LAUNCHED("rope_tables_kernel");
}

template <bool Backward>
static void rope_launch(float* x, float* x2, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t H2,
                        int64_t HD, cudaStream_t stream) {
  const int64_t n = T * (H + H2) * (HD / 2);
  if (n <= 0) return;
  rope_kernel<Backward><<<grid_for(n), kRopeThreads, 0, stream>>>(x, x2, cos_t, sin_t, T, H, H2, HD);
  HC_CUDA_LAUNCHED("rope_kernel");
}

void rope_forward(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                  cudaStream_t stream) {
  rope_launch<false>(x, nullptr, cos_t, sin_t, T, H, 0, HD, stream);
}
void rope_qk_forward(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH, int64_t NKV,
                     int64_t HD, cudaStream_t stream) {
  rope_launch<false>(q, k, cos_t, sin_t, T, NH, NKV, HD, stream);
}
void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                   cudaStream_t stream) {
  rope_launch<true>(dx, nullptr, cos_t, sin_t, T, H, 0, HD, stream);
}

// The entry points: tables built on the device, x (and x2[T,H2,HD]) rotated in place.
template <bool Backward>
static int rope_entry(float* x, float* x2, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H,
                      int64_t H2, int64_t HD, float scaling) {
  return entry([&] {
    require(HD % 2 == 0, "invalid_argument", "rope: HD must be even");
    const int64_t half = HD / 2;
    Buffer<float> d_x(x, T * H * HD), d_x2(x2, T * H2 * HD), d_inv(inv_freq, half), d_cos(T * half), d_sin(T * half);
    Buffer<int32_t> d_pos(pos, T);
    rope_tables(d_cos.get(), d_sin.get(), d_pos.get(), d_inv.get(), T, half, scaling, 0);
    rope_launch<Backward>(d_x.get(), d_x2.get(), d_cos.get(), d_sin.get(), T, H, H2, HD, 0);
    d_x.download(x);
    d_x2.download(x2);
  });
}

}  // namespace hc::cuda

extern "C" int hc_cuda_rope(float* x, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H, int64_t HD,
                            float scaling) {
  return hc::cuda::rope_entry<false>(x, nullptr, pos, inv_freq, T, H, 0, HD, scaling);
}

extern "C" int hc_cuda_rope_qk(float* q, float* k, const int32_t* pos, const float* inv_freq, int64_t T, int64_t NH,
                               int64_t NKV, int64_t HD, float scaling) {
  return hc::cuda::rope_entry<false>(q, k, pos, inv_freq, T, NH, NKV, HD, scaling);
}

extern "C" int hc_cuda_rope_backward(float* dx, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H,
                                     int64_t HD, float scaling) {
  return hc::cuda::rope_entry<true>(dx, nullptr, pos, inv_freq, T, H, 0, HD, scaling);
}
