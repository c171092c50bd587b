// RoPE with HF rotate_half semantics: for i < HD/2 the pair (x[i], x[i+HD/2]) turns by
// the angle pos·invFreq[i]; the tables carry HF's attention scaling. The backward (the
// transposed rotation) shares the kernel.
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
template <bool Backward>
__global__ void rope_kernel(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) {
  const int64_t half = HD / 2, n = T * H * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, th = e / half, t = th / H;
    float* p = x + th * HD;
    const float c = cos_t[t * half + i], s = Backward ? -sin_t[t * half + i] : sin_t[t * half + i];
    const float x1 = p[i], x2 = p[i + half];
    p[i] = x1 * c - x2 * s;
    p[i + half] = x2 * c + x1 * s;
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
static void rope_launch(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                        cudaStream_t stream) {
  const int64_t n = T * H * (HD / 2);
  if (n <= 0) return;
  rope_kernel<Backward><<<grid_for(n), kRopeThreads, 0, stream>>>(x, cos_t, sin_t, T, H, HD);
  HC_CUDA_LAUNCHED("rope_kernel");
}

void rope_forward(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                  cudaStream_t stream) {
  rope_launch<false>(x, cos_t, sin_t, T, H, HD, stream);
}
void rope_backward(float* dx, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD,
                   cudaStream_t stream) {
  rope_launch<true>(dx, cos_t, sin_t, T, H, HD, stream);
}

// The entry points of both directions: tables built on the device, x rotated in place.
template <bool Backward>
static int rope_entry(float* x, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H, int64_t HD,
                      float scaling) {
  return entry([&] {
    require(HD % 2 == 0, "invalid_argument", "rope: HD must be even");
    const int64_t half = HD / 2;
    Buffer<float> d_x(x, T * H * HD), d_inv(inv_freq, half), d_cos(T * half), d_sin(T * half);
    Buffer<int32_t> d_pos(pos, T);
    rope_tables(d_cos.get(), d_sin.get(), d_pos.get(), d_inv.get(), T, half, scaling, 0);
    rope_launch<Backward>(d_x.get(), d_cos.get(), d_sin.get(), T, H, HD, 0);
    d_x.download(x);
  });
}

}  // namespace hc::cuda

extern "C" int hc_cuda_rope(float* x, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H, int64_t HD,
                            float scaling) {
  return hc::cuda::rope_entry<false>(x, pos, inv_freq, T, H, HD, scaling);
}

extern "C" int hc_cuda_rope_backward(float* dx, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H,
                                     int64_t HD, float scaling) {
  return hc::cuda::rope_entry<true>(dx, pos, inv_freq, T, H, HD, scaling);
}
