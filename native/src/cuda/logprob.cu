// The head of the training boundary: logp[t] = logits[t, target] − logsumexp(logits[t]),
// and dlogits = dlogp·(onehot(target) − softmax(logits)). One block per row; the sum
// of exponentials is accumulated in double (V can be 10^5).
#include "common.cuh"
#include "launch.cuh"

namespace hc::cuda {

constexpr int kLogprobThreads = 256;

__device__ float row_logsumexp(const float* x, int64_t V) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
  m = block_max(m);
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) s += expf(x[i] - m);
  s = block_sum(s);
  return m + static_cast<float>(log(s));
}

__global__ void logprob_kernel(float* logp, const float* logits, const int32_t* targets, int64_t V) {
  const int64_t t = blockIdx.x;
  if (targets[t] < 0) {  // the whole block takes this branch
    if (threadIdx.x == 0) logp[t] = 0.0f;
    return;
  }
  const float* x = logits + t * V;
  const float lse = row_logsumexp(x, V);
  if (threadIdx.x == 0) logp[t] = x[targets[t]] - lse;
}

// dlogits may alias logits: the row is fully read (logsumexp) before any write, and each
// element is then read and written by one thread.
__global__ void logprob_backward_kernel(float* dlogits, const float* dlogp, const float* logits,
                                        const int32_t* targets, int64_t V) {
  const int64_t t = blockIdx.x;
  const float* x = logits + t * V;
  float* d = dlogits + t * V;
  const int32_t target = targets[t];
  if (target < 0) {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) d[i] = 0.0f;
    return;
  }
  const float g = dlogp[t];
  const float lse = row_logsumexp(x, V);
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) d[i] = -g * expf(x[i] - lse);
  __syncthreads();
  if (threadIdx.x == 0) d[target] += g;
}

void logprob_forward(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V,
                     cudaStream_t stream) {
  if (T <= 0) return;
  logprob_kernel<<<static_cast<unsigned>(T), kLogprobThreads, 0, stream>>>(logp, logits, targets, V);
  HC_CUDA_LAUNCHED("logprob_kernel");
}

void logprob_backward(float* dlogits, const float* dlogp, const float* logits, const int32_t* targets, int64_t T,
                      int64_t V, cudaStream_t stream) {
  if (T <= 0) return;
  logprob_backward_kernel<<<static_cast<unsigned>(T), kLogprobThreads, 0, stream>>>(dlogits, dlogp, logits, targets, V);
  HC_CUDA_LAUNCHED("logprob_backward_kernel");
}

// targets in [0, V) or negative (a masked row)
static void check_targets(const int32_t* targets, int64_t T, int64_t V) {
  for (int64_t t = 0; t < T; t++)
    require(targets[t] < V, "invalid_argument",
            "targets[" + std::to_string(t) + "] = " + std::to_string(targets[t]) + " is out of range");
}

}  // namespace hc::cuda

extern "C" int hc_cuda_logprob(float* logp, const float* logits, const int32_t* targets, int64_t T, int64_t V) {
  using namespace hc::cuda;
  return entry([&] {
    check_targets(targets, T, V);
    Buffer<float> d_logits(logits, T * V), d_logp(T);
    Buffer<int32_t> d_targets(targets, T);
    logprob_forward(d_logp.get(), d_logits.get(), d_targets.get(), T, V, 0);
    d_logp.download(logp);
  });
}

extern "C" int hc_cuda_logprob_backward(float* dlogits, const float* dlogp, const float* logits,
                                        const int32_t* targets, int64_t T, int64_t V) {
  using namespace hc::cuda;
  return entry([&] {
    check_targets(targets, T, V);
    Buffer<float> d_logits(logits, T * V), d_dlogp(dlogp, T);
    Buffer<int32_t> d_targets(targets, T);
    logprob_backward(d_logits.get(), d_dlogp.get(), d_logits.get(), d_targets.get(), T, V, 0);
    d_logits.download(dlogits);
  });
}
