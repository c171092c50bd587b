// Conversions between bf16/f16 storage words and fp32, round to nearest even, bit for
// bit as hc::f32_to_bf16 / f32_to_f16 / f16_to_f32 on the CPU.
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

template <int Dt>
__global__ void to_f32_kernel(float* out, const uint16_t* src, int64_t n) {
  HC_FOR_EACH_ELEMENT(e, n) out[e] = load_weight<Dt>(src, e);
}

template <int Dt>
__global__ void from_f32_kernel(uint16_t* out, const float* src, int64_t n) {
  HC_FOR_EACH_ELEMENT(e, n) out[e] = Dt == HC_CUDA_BF16 ? f32_to_bf16(src[e]) : f32_to_f16(src[e]);
}

static void check_half(int dtype) {
  require(dtype == HC_CUDA_BF16 || dtype == HC_CUDA_F16, "invalid_argument", "conversions are between fp32 and bf16/f16");
}

void to_f32(float* out, const uint16_t* src, int dtype, int64_t n, cudaStream_t stream) {
  check_half(dtype);
  if (n <= 0) return;
  if (dtype == HC_CUDA_BF16) to_f32_kernel<HC_CUDA_BF16><<<elem_grid(n), kElemThreads, 0, stream>>>(out, src, n);
  else to_f32_kernel<HC_CUDA_F16><<<elem_grid(n), kElemThreads, 0, stream>>>(out, src, n);
  HC_CUDA_LAUNCHED("to_f32_kernel");
}

void from_f32(uint16_t* out, const float* src, int dtype, int64_t n, cudaStream_t stream) {
  check_half(dtype);
  if (n <= 0) return;
  if (dtype == HC_CUDA_BF16) from_f32_kernel<HC_CUDA_BF16><<<elem_grid(n), kElemThreads, 0, stream>>>(out, src, n);
  else from_f32_kernel<HC_CUDA_F16><<<elem_grid(n), kElemThreads, 0, stream>>>(out, src, n);
  HC_CUDA_LAUNCHED("from_f32_kernel");
}

// Both entry points: src[n] to the device, converted, back into out[n].
template <typename Dst, typename Src>
static int convert_entry(Dst* out, const Src* src, int dtype, int64_t n,
                         void (*launch)(Dst*, const Src*, int, int64_t, cudaStream_t)) {
  return entry([&] {
    Buffer<Src> d_src(src, n);
    Buffer<Dst> d_out(n);
    launch(d_out.get(), d_src.get(), dtype, n, 0);
    d_out.download(out);
  });
}

}  // namespace hc::cuda

extern "C" int hc_cuda_to_f32(float* out, const uint16_t* src, int dtype, int64_t n) {
  return hc::cuda::convert_entry(out, src, dtype, n, hc::cuda::to_f32);
}

extern "C" int hc_cuda_from_f32(uint16_t* out, const float* src, int dtype, int64_t n) {
  return hc::cuda::convert_entry(out, src, dtype, n, hc::cuda::from_f32);
}
