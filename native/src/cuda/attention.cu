// Causal grouped-query attention over contiguous k,v[S,NKV,HD] (attention_kernels.cuh's
// flash kernel: K/V tiles in shared memory, shared by the GQA group's heads and a tile of
// queries). The same launch serves inference (query t at position S−T+t) and the training
// forward (S = T, and the row's logsumexp saved for the backward).
#include "attention_kernels.cuh"
#include "launch.cuh"

namespace hc::cuda {

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                       int64_t NH, int64_t NKV, int64_t HD, int64_t window, cudaStream_t stream) {
  check_attention_shapes(T, S, NH, NKV, HD);
  attention_launch(out, lse, q, DenseKV{k, v, NKV, HD, S - T}, T, NH, NKV, HD, window, true, 1, nullptr, stream);
}

}  // namespace hc::cuda

extern "C" int hc_cuda_attention(float* out, const float* q, const float* k, const float* v, int64_t T, int64_t S,
                                 int64_t NH, int64_t NKV, int64_t HD, int64_t window) {
  using namespace hc::cuda;
  return entry([&] {
    check_attention_shapes(T, S, NH, NKV, HD);
    Buffer<float> d_q(q, T * NH * HD), d_k(k, S * NKV * HD), d_v(v, S * NKV * HD), d_out(T * NH * HD);
    attention_forward(d_out.get(), nullptr, d_q.get(), d_k.get(), d_v.get(), T, S, NH, NKV, HD, window, 0);
    d_out.download(out);
  });
}

extern "C" int hc_cuda_attention_train_forward(float* out, float* lse, const float* q, const float* k,
                                               const float* v, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                                               int64_t window) {
  using namespace hc::cuda;
  return entry([&] {
    check_attention_shapes(T, T, NH, NKV, HD);
    Buffer<float> d_q(q, T * NH * HD), d_k(k, T * NKV * HD), d_v(v, T * NKV * HD), d_out(T * NH * HD),
        d_lse(T * NH);
    attention_forward(d_out.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), T, T, NH, NKV, HD, window, 0);
    d_out.download(out);
    d_lse.download(lse);
  });
}
