// Shared by every CUDA op file: error checks that turn a cudaError into a stable code,
// RAII device buffers for the host-pointer entry points, the entry-point guard that
// keeps C++ exceptions inside the library, dtype conversions and block reductions.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "ops_cuda.h"

namespace hc::cuda {

// A failure inside the library; `code` follows the addon's hc::Error codes.
class Failure : public std::runtime_error {
 public:
  Failure(const char* code, const std::string& message) : std::runtime_error(message), code_(code) {}
  const char* code() const { return code_; }

 private:
  const char* code_;
};

// No device or no driver are what a CPU-only machine reports: they get their own code
// so callers can tell "not here" from "broken".
inline const char* error_code(cudaError_t e) {
  switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return "cuda_unavailable";
    case cudaErrorMemoryAllocation:
      return "out_of_memory";
    default:
      return "cuda_error";
  }
}

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky non-fatal error so the next call starts clean
  throw Failure(error_code(e), std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
#define HC_CUDA_CHECK(expr) ::hc::cuda::check((expr), #expr)
// after a <<<>>> launch: bad configurations are reported here, faults at the next sync
#define HC_CUDA_LAUNCHED(name) ::hc::cuda::check(cudaGetLastError(), name)

inline void require(bool ok, const char* code, const std::string& message) {
  if (!ok) throw Failure(code, message);
}

// Sets the thread's last error (read through hc_cuda_last_error_*) and returns nonzero.
int fail(const char* code, const char* message);

// Every id in [0, V), else invalid_argument: a bad id would read outside a table on the device.
void check_token_ids(const int32_t* tokens, int64_t T, int64_t V);

// Runs an entry point's body: 0 on success, otherwise the last error is set.
template <typename F>
int entry(F&& body) {
  try {
    body();
    return 0;
  } catch (const Failure& f) {
    return fail(f.code(), f.what());
  } catch (const std::bad_alloc&) {
    return fail("out_of_memory", "out of host memory");
  } catch (const std::exception& e) {
    return fail("internal", e.what());
  }
}

// Device memory for one entry point's call: allocated, filled from the host, read back.
template <typename T>
class Buffer {
 public:
  explicit Buffer(int64_t n) : n_(n) {
    if (n > 0) HC_CUDA_CHECK(cudaMalloc(&p_, static_cast<size_t>(n) * sizeof(T)));
  }
  Buffer(const T* host, int64_t n) : Buffer(n) { upload(host); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (p_) cudaFree(p_);
  }
  T* get() const { return p_; }
  void upload(const T* host) {
    if (n_ > 0) HC_CUDA_CHECK(cudaMemcpy(p_, host, bytes(), cudaMemcpyHostToDevice));
  }
  void zero() {
    if (n_ > 0) HC_CUDA_CHECK(cudaMemset(p_, 0, bytes()));
  }
  // synchronous: also where a fault of an earlier kernel surfaces
  void download(T* host) const {
    if (n_ > 0) HC_CUDA_CHECK(cudaMemcpy(host, p_, bytes(), cudaMemcpyDeviceToHost));
  }

 private:
  size_t bytes() const { return static_cast<size_t>(n_) * sizeof(T); }
  T* p_ = nullptr;
  int64_t n_;
};

// Weights are raw storage bytes: fp32 or 16-bit words.
inline int64_t dtype_bytes(int dtype) { return dtype == HC_CUDA_F32 ? 4 : 2; }
inline void check_dtype(int dtype) {
  require(dtype == HC_CUDA_F32 || dtype == HC_CUDA_BF16 || dtype == HC_CUDA_F16, "bad_dtype",
          "dtype must be f32, bf16 or f16");
}
// A matmul weight may also be llama.cpp blocks (../quant.h): weights a block (1 for the element types).
inline int64_t weight_block(int dtype) { return dtype == HC_CUDA_Q4_K ? 256 : dtype >= HC_CUDA_Q8_0 ? 32 : 1; }
// Bytes of n weights stored as dtype (n whole blocks).
inline int64_t weight_bytes(int dtype, int64_t n) {
  switch (dtype) {
    case HC_CUDA_Q8_0: return n / 32 * 34;
    case HC_CUDA_Q4_0: return n / 32 * 18;
    case HC_CUDA_Q4_K: return n / 256 * 144;
    default: return n * dtype_bytes(dtype);
  }
}
// rows: the length of B's rows (blocks never span them)
inline void check_weight_dtype(int dtype, int64_t rows) {
  require(dtype >= HC_CUDA_F32 && dtype <= HC_CUDA_Q4_K, "bad_dtype", "dtype must be f32, bf16, f16, q8_0, q4_0 or q4_k");
  require(rows % weight_block(dtype) == 0, "invalid_argument", "quantized weights need rows of whole blocks (32; q4_k 256)");
}

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// ---- device helpers --------------------------------------------------------------

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
__device__ __forceinline__ float f16_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }
// Round to nearest even; NaN stays a (quiet) NaN, bit for bit as hc::f32_to_bf16.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__device__ __forceinline__ uint16_t f32_to_f16(float f) { return __half_as_ushort(__float2half_rn(f)); }

// Element i of a tensor stored as Dt (fp32, 16-bit words read as bf16/f16, or llama.cpp
// blocks dequantized as the CPU's kernels do: d·q, d·(q − 8), d·sc·q − dmin·m), in fp32.
template <int Dt>
__device__ __forceinline__ float load_weight(const void* w, int64_t i) {
  if constexpr (Dt == HC_CUDA_F32) return static_cast<const float*>(w)[i];
  else if constexpr (Dt == HC_CUDA_BF16) return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  else if constexpr (Dt == HC_CUDA_F16) return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
  else {
    const uint8_t* base = static_cast<const uint8_t*>(w);
    // blocks are 2-byte aligned at best: the fp16 scales are read a byte at a time
    auto half_at = [](const uint8_t* p) { return f16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8))); };
    if constexpr (Dt == HC_CUDA_Q8_0) {
      const uint8_t* b = base + i / 32 * 34;
      return half_at(b) * static_cast<float>(static_cast<int8_t>(b[2 + i % 32]));
    } else if constexpr (Dt == HC_CUDA_Q4_0) {
      const uint8_t* b = base + i / 32 * 18;
      const int j = static_cast<int>(i % 32);
      const int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
      return half_at(b) * static_cast<float>(q - 8);
    } else {
      const uint8_t* sb = base + i / 256 * 144;
      const uint8_t* s = sb + 4;
      const int e = static_cast<int>(i % 256), j = e / 32;
      int sc, m;
      if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
      } else {
        sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      }
      const uint8_t byte = sb[16 + 32 * (j / 2) + e % 32];
      const float ds = half_at(sb) * static_cast<float>(sc), dm = half_at(sb + 2) * static_cast<float>(m);
      return fmaf(ds, static_cast<float>(j % 2 ? byte >> 4 : byte & 15), -dm);
    }
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum / max over the whole block (blockDim.x a multiple of 32, at most 1024), returned
// to every thread. A fixed tree: the same inputs give the same bits every launch.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // part may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < nwarps ? part[lane] : T(0);
  return warp_sum(v);
}
__device__ inline float block_max(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < nwarps ? part[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace hc::cuda
