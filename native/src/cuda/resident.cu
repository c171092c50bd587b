// The device-pointer half of the C API: memory a model keeps resident (weights, the KV
// block pool, activations) and each forward op on it, queued on the current device's
// forward stream (graph.cu: the one a decode step's graph is captured on) with nothing copied. Thin wrappers over the launchers of launch.cuh;
// a kernel fault surfaces at the next hc_cuda_download / hc_cuda_synchronize.
#include "common.cuh"
#include "launch.cuh"

using hc::cuda::entry;

extern "C" {

int hc_cuda_set_device(int device) {
  return entry([&] { HC_CUDA_CHECK(cudaSetDevice(device)); });
}
int hc_cuda_malloc(void** p, size_t bytes) {
  *p = nullptr;
  return entry([&] { HC_CUDA_CHECK(cudaMalloc(p, bytes > 0 ? bytes : 1)); });
}
int hc_cuda_free(void* p) {
  return entry([&] { HC_CUDA_CHECK(cudaFree(p)); });
}
int hc_cuda_upload(void* dst, const void* src, size_t bytes) {
  return entry([&] {
    if (bytes) HC_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  });
}
int hc_cuda_download(void* dst, const void* src, size_t bytes) {
  return entry([&] {
    if (bytes) HC_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  });
}
int hc_cuda_synchronize(void) {
  return entry([&] { HC_CUDA_CHECK(cudaDeviceSynchronize()); });
}

int hc_cuda_dev_gemm(float* c, const float* a, const void* b, int dtype, const float* bias, int64_t M, int64_t N,
                     int64_t K, int64_t lda, int64_t ldb, int64_t ldc, int ta, int tb, float alpha, float beta) {
  return entry([&] {
    // cuBLASLt reads the element types; llama.cpp's blocks go to the dequantizing GEMM
    if (dtype <= HC_CUDA_F16 && hc::cuda::blas_loaded())
      hc::cuda::blas_gemm(c, a, b, dtype, bias, M, N, K, lda, ldb, ldc, ta != 0, tb != 0, alpha, beta, hc::cuda::forward_stream());
    else
      hc::cuda::gemm_launch(c, a, b, dtype, bias, M, N, K, lda, ldb, ldc, ta != 0, tb != 0, alpha, beta, hc::cuda::forward_stream());
  });
}
int hc_cuda_dev_rmsnorm(float* out, const float* x, const float* weight, int64_t M, int64_t C, float eps) {
  return entry([&] { hc::cuda::rmsnorm_forward(out, x, weight, M, C, eps, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_rope_tables(float* cos_out, float* sin_out, const int32_t* pos, const float* inv_freq, int64_t T,
                            int64_t half, float scaling) {
  return entry([&] { hc::cuda::rope_tables(cos_out, sin_out, pos, inv_freq, T, half, scaling, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_rope(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) {
  return entry([&] { hc::cuda::rope_forward(x, cos_t, sin_t, T, H, HD, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_embedding(float* out, const int32_t* tokens, const void* table, int dtype, int64_t T, int64_t C) {
  return entry([&] { hc::cuda::embedding_forward(out, tokens, table, dtype, T, C, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_rope_qk(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH,
                        int64_t NKV, int64_t HD) {
  return entry([&] { hc::cuda::rope_qk_forward(q, k, cos_t, sin_t, T, NH, NKV, HD, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_residual_rmsnorm(float* x, float* out, const float* add, const float* weight, int64_t M, int64_t C,
                                 float eps) {
  return entry([&] { hc::cuda::residual_rmsnorm_forward(x, out, add, weight, M, C, eps, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_residual(float* out, const float* a, const float* b, int64_t N) {
  return entry([&] { hc::cuda::residual_forward(out, a, b, N, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_swiglu(float* out, const float* gate, const float* up, int64_t N) {
  return entry([&] { hc::cuda::swiglu_forward(out, gate, up, N, hc::cuda::forward_stream()); });
}
int hc_cuda_dev_kv_write(void* k_pool, void* v_pool, const float* k, const float* v, const int32_t* tables,
                         int64_t max_blocks, const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV,
                         int64_t HD, int64_t block_stride, int64_t head_stride, int64_t block_size, int kv_dtype) {
  return entry([&] {
    hc::cuda::kv_write(k_pool, v_pool, kv_dtype, k, v, tables, max_blocks, seq_of, pos, T, NKV, HD, block_stride,
                       head_stride, block_size, hc::cuda::forward_stream());
  });
}
int hc_cuda_dev_paged_attention(float* out, const float* q, const void* k_pool, const void* v_pool,
                                const int32_t* tables, int64_t max_blocks, const int32_t* seq_of, const int32_t* npos,
                                int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t block_stride,
                                int64_t head_stride, int64_t block_size, int64_t window, int kv_dtype, int64_t nseq,
                                int splits, float* part) {
  return entry([&] {
    hc::cuda::paged_attention(out, q, k_pool, v_pool, kv_dtype, tables, max_blocks, nseq, seq_of, npos, T, NH, NKV,
                              HD, block_stride, head_stride, block_size, window, splits, part, hc::cuda::forward_stream());
  });
}
int hc_cuda_dev_gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C) {
  return entry([&] { hc::cuda::gather_rows(out, x, rows, R, C, hc::cuda::forward_stream()); });
}

}  // extern "C"
