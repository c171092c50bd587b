// A host emulation of the slice of CUDA that native/src/cuda uses, so the real kernels
// can run through the op tests on a machine without a GPU (see build.sh). A block's
// threads are fibers (ucontext) on the calling thread, switched at barriers:
// __syncthreads waits for every live thread of the block, a warp shuffle exchanges
// through a per-warp slot array between two waits of the warp's live lanes, __shared__
// is a function-static (blocks run one after another). It checks indexing, reductions
// and synchronisation; not timing, the memory model or the device's intrinsics.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
enum class State { Ready, AtWarp, AtBlock, Done };
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  State state = State::Ready;
};
struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::vector<uint64_t> slots;  // one per thread, for shuffles
  unsigned current = 0;
};
inline Block* block = nullptr;
inline dim3 tid, bid, gdim, bdim;

// The running fiber waits in `s` until the scheduler releases its group.
inline void wait(State s) {
  Fiber& f = block->fibers[block->current];
  f.state = s;
  swapcontext(&f.ctx, &block->scheduler);
}
}  // namespace emu

#define threadIdx (::emu::tid)
#define blockIdx (::emu::bid)
#define gridDim (::emu::gdim)
#define blockDim (::emu::bdim)

inline void __syncthreads() { emu::wait(emu::State::AtBlock); }

template <typename T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  static_assert(sizeof(T) <= 8);
  const unsigned me = threadIdx.x;
  std::memcpy(&emu::block->slots[me], &v, sizeof(T));
  emu::wait(emu::State::AtWarp);  // every lane has written its slot
  T r;
  std::memcpy(&r, &emu::block->slots[(me & ~31u) | ((me & 31u) ^ static_cast<unsigned>(lane_mask))], sizeof(T));
  emu::wait(emu::State::AtWarp);  // every lane has read before any writes again
  return r;
}

// ---- runtime ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost };
using cudaStream_t = void*;
struct cudaDeviceProp {
  char name[256];
};
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
template <typename T>
cudaError_t cudaMalloc(T** p, size_t n) {
  *p = static_cast<T*>(std::malloc(n));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* d, int v, size_t n) {
  std::memset(d, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::snprintf(p->name, sizeof p->name, "host emulation");
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
  *f = *t = 0;
  return cudaSuccess;
}

namespace emu {
template <typename F>
void fiber_entry(unsigned lo, unsigned hi) {
  const F* f = reinterpret_cast<const F*>((static_cast<uintptr_t>(hi) << 32) | lo);
  (*f)();
  block->fibers[block->current].state = State::Done;  // uc_link returns to the scheduler
}

// kernel<<<grid, block, smem, stream>>>(args...) is rewritten to launch(grid, block, smem, stream, kernel, args...).
// Blocks run one after another; within a block the scheduler runs every ready fiber
// until it waits or ends, then releases each warp whose live lanes all wait at a
// shuffle, or, when every live thread waits at __syncthreads, the whole block.
template <typename K, typename... A>
void launch(dim3 grid, dim3 threads, size_t, cudaStream_t, K kernel, A... args) {
  const unsigned n = threads.x * threads.y * threads.z;
  const uint64_t blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
  if (n == 0 || blocks == 0) return;
  Block b;
  b.fibers.resize(n);
  b.slots.resize(n);
  for (auto& f : b.fibers) f.stack.resize(256 * 1024);
  block = &b;
  gdim = grid;
  bdim = threads;
  auto body = [&] { kernel(args...); };
  using Body = decltype(body);
  const uintptr_t p = reinterpret_cast<uintptr_t>(&body);
  auto set_tid = [&](unsigned t) { tid = dim3(t % threads.x, t / threads.x % threads.y, t / (threads.x * threads.y)); };
  for (uint64_t bi = 0; bi < blocks; bi++) {
    bid = dim3(static_cast<unsigned>(bi % grid.x), static_cast<unsigned>(bi / grid.x % grid.y),
               static_cast<unsigned>(bi / (static_cast<uint64_t>(grid.x) * grid.y)));
    for (auto& f : b.fibers) {
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack.data();
      f.ctx.uc_stack.ss_size = f.stack.size();
      f.ctx.uc_link = &b.scheduler;
      makecontext(&f.ctx, reinterpret_cast<void (*)()>(&fiber_entry<Body>), 2, static_cast<unsigned>(p & 0xffffffffu),
                  static_cast<unsigned>(p >> 32));
      f.state = State::Ready;
    }
    for (;;) {
      for (unsigned t = 0; t < n; t++) {
        if (b.fibers[t].state != State::Ready) continue;
        b.current = t;
        set_tid(t);
        swapcontext(&b.scheduler, &b.fibers[t].ctx);
      }
      bool progressed = false, all_done = true, all_block = true;
      for (unsigned w = 0; w * 32 < n; w++) {
        bool at_warp = true, any = false;
        for (unsigned t = w * 32; t < std::min(n, w * 32 + 32); t++) {
          const State s = b.fibers[t].state;
          if (s == State::Done) continue;
          any = true;
          all_done = false;
          if (s != State::AtWarp) at_warp = false;
          if (s != State::AtBlock) all_block = false;
        }
        if (any && at_warp) {
          for (unsigned t = w * 32; t < std::min(n, w * 32 + 32); t++)
            if (b.fibers[t].state == State::AtWarp) b.fibers[t].state = State::Ready;
          progressed = true;
        }
      }
      if (all_done) break;
      if (all_block) {
        for (auto& f : b.fibers)
          if (f.state == State::AtBlock) f.state = State::Ready;
        progressed = true;
      }
      if (!progressed) {
        std::fprintf(stderr, "cuda-emu: deadlock in a block (threads wait at different barriers)\n");
        std::abort();
      }
    }
  }
  block = nullptr;
}
}  // namespace emu

// ---- bit casts and half precision ----
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
