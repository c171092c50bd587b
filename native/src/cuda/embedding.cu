// Token embedding gather: out[T,C] = table[tokens[t], :] widened to fp32; and its
// backward, a scatter-add into the fp32 table gradient.
#include "elementwise.cuh"
#include "launch.cuh"

namespace hc::cuda {

template <int Dt>
__global__ void embedding_kernel(float* out, const int32_t* tokens, const void* table, int64_t T, int64_t C) {
  HC_FOR_EACH_ELEMENT(e, T * C) out[e] = load_weight<Dt>(table, static_cast<int64_t>(tokens[e / C]) * C + e % C);
}

void embedding_forward(float* out, const int32_t* tokens, const void* table, int dtype, int64_t T, int64_t C,
                       cudaStream_t stream) {
  check_dtype(dtype);
  if (T * C <= 0) return;
  const unsigned grid = elem_grid(T * C);
  if (dtype == HC_CUDA_F32) embedding_kernel<HC_CUDA_F32><<<grid, kElemThreads, 0, stream>>>(out, tokens, table, T, C);
  else if (dtype == HC_CUDA_BF16) embedding_kernel<HC_CUDA_BF16><<<grid, kElemThreads, 0, stream>>>(out, tokens, table, T, C);
  else embedding_kernel<HC_CUDA_F16><<<grid, kElemThreads, 0, stream>>>(out, tokens, table, T, C);
  HC_CUDA_LAUNCHED("embedding_kernel");
}

// One thread per column walks the tokens in order: repeated tokens add up in the same
// order every run (no atomics), as on the CPU.
__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                          int64_t C) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  for (int64_t t = 0; t < T; t++) dtable[static_cast<int64_t>(tokens[t]) * C + c] += dout[t * C + c];
}

void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T, int64_t C,
                        cudaStream_t stream) {
  if (T <= 0 || C <= 0) return;
  embedding_backward_kernel<<<blocks_for(C, kElemThreads), kElemThreads, 0, stream>>>(dtable, dout, tokens, T, C);
  HC_CUDA_LAUNCHED("embedding_backward_kernel");
}

// The host side checks ids: a bad id would read outside the table on the device.
void check_token_ids(const int32_t* tokens, int64_t T, int64_t V) {
  for (int64_t t = 0; t < T; t++)
    require(tokens[t] >= 0 && tokens[t] < V, "invalid_argument",
            "tokens[" + std::to_string(t) + "] = " + std::to_string(tokens[t]) + " is out of range");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_embedding(float* out, const int32_t* tokens, const void* table, int dtype, int64_t T,
                                 int64_t C, int64_t V) {
  using namespace hc::cuda;
  return entry([&] {
    check_dtype(dtype);
    check_token_ids(tokens, T, V);
    Buffer<char> d_table(static_cast<const char*>(table), V * C * dtype_bytes(dtype));
    Buffer<int32_t> d_tokens(tokens, T);
    Buffer<float> d_out(T * C);
    embedding_forward(d_out.get(), d_tokens.get(), d_table.get(), dtype, T, C, 0);
    d_out.download(out);
  });
}

extern "C" int hc_cuda_embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int64_t T,
                                          int64_t C, int64_t V) {
  using namespace hc::cuda;
  return entry([&] {
    check_token_ids(tokens, T, V);
    Buffer<float> d_table(dtable, V * C), d_dout(dout, T * C);
    Buffer<int32_t> d_tokens(tokens, T);
    embedding_backward(d_table.get(), d_dout.get(), d_tokens.get(), T, C, 0);
    d_table.download(dtable);
  });
}
