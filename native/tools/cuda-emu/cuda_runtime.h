// A host emulation of the slice of CUDA that native/src/cuda uses, so the real kernels
// can run through the op tests on a machine without a GPU (see build.sh). A block's
// threads are fibers on the calling thread, switched at barriers:
// __syncthreads waits for every live thread of the block, a warp shuffle exchanges
// through a per-warp slot array between two waits of the warp's live lanes, __shared__
// is a function-static (blocks run one after another). It checks indexing, reductions
// and synchronisation; not timing, the memory model or the device's intrinsics.
// The launch state (and __shared__) is per host thread, so two threads (two models, or
// two ranks) may run kernels at once. HYBRIDCHAT_EMU_DEVICES=N makes it report N devices
// (default 1; 0 = none); memory is host memory whichever device is current.
#pragma once
#include <ucontext.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "stream_abi.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
// Fiber switches. On x86-64 a few instructions that swap the callee-saved registers and
// the stack pointer (swapcontext would make two signal-mask system calls per switch,
// which made a model's forward take seconds); elsewhere ucontext. The emulation is one
// translation unit (build.sh), so the assembly is defined once.
#if defined(__x86_64__)
extern "C" void hc_emu_switch(void** save_sp, void* to_sp);
asm(R"(
  .text
  .globl hc_emu_switch
  .type hc_emu_switch,@function
hc_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size hc_emu_switch, .-hc_emu_switch
)");
struct Ctx {
  void* sp = nullptr;
};
inline void ctx_switch(Ctx& from, Ctx& to) { hc_emu_switch(&from.sp, to.sp); }
// a context that starts in entry() on the given stack; entry never returns
inline void ctx_make(Ctx& c, char* stack, size_t size, void (*entry)()) {
  void** sp = reinterpret_cast<void**>((reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15));
  *--sp = nullptr;  // entry's return address: rsp ≡ 8 (mod 16) on entry, as after a call
  *--sp = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; i++) *--sp = nullptr;  // the callee-saved registers hc_emu_switch pops
  c.sp = sp;
}
#else
struct Ctx {
  ucontext_t uc;
};
inline void ctx_switch(Ctx& from, Ctx& to) { swapcontext(&from.uc, &to.uc); }
inline void ctx_make(Ctx& c, char* stack, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

enum class State { Ready, AtWarp, AtBlock, Done };
constexpr size_t kStack = 256 * 1024;
struct Fiber {
  Ctx ctx;
  std::unique_ptr<char[]> stack;  // not zero-filled: allocated once per thread, reused by every launch
  State state = State::Ready;
};
// the calling thread's fibers, grown to the largest block launched so far
inline std::vector<Fiber>& fibers(unsigned n) {
  static thread_local std::vector<Fiber> pool;
  if (pool.size() < n) {
    const size_t old = pool.size();
    pool.resize(n);
    for (size_t i = old; i < n; i++) pool[i].stack.reset(new char[kStack]);
  }
  return pool;
}
struct Block {
  Ctx scheduler;
  std::vector<Fiber>& fibers;
  std::vector<uint64_t> slots;  // one per thread, for shuffles
  unsigned current = 0;
  void (*body)(const void*) = nullptr;  // runs the kernel on the current thread's indices
  const void* body_arg = nullptr;
};
inline thread_local Block* block = nullptr;
inline thread_local dim3 tid, bid, gdim, bdim;

// The running fiber waits in `s` until the scheduler releases its group.
inline void wait(State s) {
  Fiber& f = block->fibers[block->current];
  f.state = s;
  ctx_switch(f.ctx, block->scheduler);
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

// every lane reads lane src_lane's v (a broadcast when src_lane is the same for all)
template <typename T>
T __shfl_sync(unsigned, T v, int src_lane) {
  static_assert(sizeof(T) <= 8);
  const unsigned me = threadIdx.x;
  std::memcpy(&emu::block->slots[me], &v, sizeof(T));
  emu::wait(emu::State::AtWarp);
  T r;
  std::memcpy(&r, &emu::block->slots[(me & ~31u) | (static_cast<unsigned>(src_lane) & 31u)], sizeof(T));
  emu::wait(emu::State::AtWarp);
  return r;
}

// ---- runtime ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
using cudaStream_t = void*;
struct cudaDeviceProp {
  char name[256];
};
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    default: return "cudaErrorEmulated";
  }
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return "emulated error";
  }
}

// ---- streams and graphs ----
// A stream is a handle (everything runs in call order on the calling thread) until it
// captures: then launches, cudaMemcpyAsync and the stand-in cuBLASLt's matmuls on it are
// recorded as nodes (callable + copied arguments) and run at each cudaGraphLaunch. As the
// driver does in cudaStreamCaptureModeThreadLocal, while this thread captures, what cannot
// be captured — a synchronous copy or memset, cudaMalloc/cudaFree, a device sync, work on
// the legacy stream 0 — fails with cudaErrorStreamCaptureUnsupported/Implicit, says so on
// stderr, and invalidates the capture (cudaStreamEndCapture then fails too).
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone, cudaStreamCaptureStatusActive, cudaStreamCaptureStatusInvalidated };
namespace emu {
struct Graph {
  std::vector<std::function<void()>> nodes;
  bool invalid = false;
};
struct Stream : hc_emu_stream_abi {
  Graph* capture = nullptr;
};
struct GraphExec {
  std::vector<std::function<void()>> nodes;
};
inline thread_local Stream* capturing = nullptr;  // the stream this thread captures on
inline thread_local cudaError_t last_error = cudaSuccess;
inline void record_host(hc_emu_stream_abi* self, void (*fn)(void*), const void* arg, size_t size) {
  auto copy = std::make_shared<std::vector<char>>(static_cast<const char*>(arg), static_cast<const char*>(arg) + size);
  static_cast<Stream*>(self)->capture->nodes.push_back([fn, copy] { fn(copy->data()); });
}
inline Stream* captured(cudaStream_t s) { return static_cast<Stream*>(hc_emu_capturing(s)); }
// an uncapturable call while this thread captures: the capture is invalidated
inline bool refuse_in_capture(const char* what, cudaError_t e = cudaErrorStreamCaptureUnsupported) {
  if (!capturing) return false;
  std::fprintf(stderr, "cuda-emu: %s while a stream captures a graph: %s\n", what, cudaGetErrorName(e));
  capturing->capture->invalid = true;
  last_error = e;
  return true;
}
}  // namespace emu
using cudaGraph_t = emu::Graph*;
using cudaGraphExec_t = emu::GraphExec*;

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::last_error; }
inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
  auto* st = new emu::Stream{};
  st->magic = HC_EMU_STREAM_MAGIC;
  st->record = &emu::record_host;
  *s = st;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s || emu::captured(s)) return cudaErrorInvalidResourceHandle;
  delete static_cast<emu::Stream*>(s);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return emu::refuse_in_capture("cudaStreamSynchronize") ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s) return cudaErrorStreamCaptureUnsupported;  // the legacy stream cannot capture
  auto* st = static_cast<emu::Stream*>(s);
  if (st->capturing || emu::capturing) return cudaErrorStreamCaptureUnsupported;
  st->capture = new emu::Graph{};
  st->capturing = 1;
  emu::capturing = st;
  return cudaSuccess;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  const emu::Stream* st = emu::captured(s);
  *status = !st ? cudaStreamCaptureStatusNone
                : st->capture->invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  emu::Stream* st = emu::captured(s);
  *g = nullptr;
  if (!st) return cudaErrorStreamCaptureUnsupported;
  st->capturing = 0;
  emu::capturing = nullptr;
  std::unique_ptr<emu::Graph> graph(st->capture);
  st->capture = nullptr;
  if (graph->invalid) return cudaErrorStreamCaptureInvalidated;
  *g = graph.release();
  return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long = 0) {
  *e = new emu::GraphExec{g->nodes};
  return cudaSuccess;
}
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (!e) return cudaErrorInvalidResourceHandle;
  if (emu::captured(s)) return cudaErrorStreamCaptureUnsupported;  // no graphs in graphs here
  for (auto& n : e->nodes) n();
  return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}

template <typename T>
cudaError_t cudaMalloc(T** p, size_t n) {
  *p = nullptr;
  if (emu::refuse_in_capture("cudaMalloc")) return cudaErrorStreamCaptureUnsupported;
  *p = static_cast<T*>(std::malloc(n));
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) {
  if (emu::refuse_in_capture("cudaFree")) return cudaErrorStreamCaptureUnsupported;
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  if (emu::refuse_in_capture("a synchronous cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
  std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t st) {
  if (emu::Stream* c = emu::captured(st)) {
    c->capture->nodes.push_back([d, s, n] { std::memcpy(d, s, n); });
    return cudaSuccess;
  }
  if (!st && emu::refuse_in_capture("cudaMemcpyAsync on the legacy stream", cudaErrorStreamCaptureImplicit))
    return cudaErrorStreamCaptureImplicit;
  std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* d, int v, size_t n) {
  if (emu::refuse_in_capture("a synchronous cudaMemset")) return cudaErrorStreamCaptureUnsupported;
  std::memset(d, v, n);
  return cudaSuccess;
}
inline int emu_devices() {
  const char* e = std::getenv("HYBRIDCHAT_EMU_DEVICES");
  return e && *e ? std::atoi(e) : 1;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = emu_devices();
  return *n > 0 ? cudaSuccess : cudaErrorNoDevice;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d < 0 || d >= emu_devices()) return cudaErrorInvalidDevice;
  std::snprintf(p->name, sizeof p->name, "host emulation");
  return cudaSuccess;
}
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
// HYBRIDCHAT_EMU_SMS streaming multiprocessors (default 4): what a kernel's launch
// heuristics (the split-K decode's split count) read
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (d < 0 || d >= emu_devices() || a != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidDevice;
  const char* e = std::getenv("HYBRIDCHAT_EMU_SMS");
  *v = e && *e ? std::atoi(e) : 4;
  return cudaSuccess;
}
// the calling thread's current device, as the CUDA runtime keeps it
inline thread_local int emu_current_device = 0;
inline cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= emu_devices()) return cudaErrorInvalidDevice;
  emu_current_device = d;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = emu_current_device;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  return emu::refuse_in_capture("cudaDeviceSynchronize") ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}
// the host's memory stands for the device's
inline cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  *f = static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
  *t = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page;
  return cudaSuccess;
}

namespace emu {
inline void fiber_entry() {
  block->body(block->body_arg);
  Fiber& f = block->fibers[block->current];
  f.state = State::Done;
  ctx_switch(f.ctx, block->scheduler);  // never resumed
}

// kernel<<<grid, block, smem, stream>>>(args...) is rewritten to launch(grid, block, smem, stream, kernel, args...).
// Blocks run one after another; within a block the scheduler runs every ready fiber
// until it waits or ends, then releases each warp whose live lanes all wait at a
// shuffle, or, when every live thread waits at __syncthreads, the whole block.
template <typename K, typename... A>
void launch(dim3 grid, dim3 threads, size_t smem, cudaStream_t stream, K kernel, A... args) {
  if (Stream* c = captured(stream)) {  // a kernel node: the kernel and its arguments, copied
    c->capture->nodes.push_back([=] { launch(grid, threads, smem, nullptr, kernel, args...); });
    return;
  }
  if (!stream && refuse_in_capture("a launch on the legacy stream", cudaErrorStreamCaptureImplicit)) return;
  const unsigned n = threads.x * threads.y * threads.z;
  const uint64_t blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
  if (n == 0 || blocks == 0) return;
  Block b{{}, fibers(n)};
  b.slots.resize(n);
  block = &b;
  gdim = grid;
  bdim = threads;
  auto body = [&] { kernel(args...); };
  using Body = decltype(body);
  b.body = [](const void* p) { (*static_cast<const Body*>(p))(); };
  b.body_arg = &body;
  auto set_tid = [&](unsigned t) { tid = dim3(t % threads.x, t / threads.x % threads.y, t / (threads.x * threads.y)); };
  for (uint64_t bi = 0; bi < blocks; bi++) {
    bid = dim3(static_cast<unsigned>(bi % grid.x), static_cast<unsigned>(bi / grid.x % grid.y),
               static_cast<unsigned>(bi / (static_cast<uint64_t>(grid.x) * grid.y)));
    for (unsigned t = 0; t < n; t++) {
      Fiber& f = b.fibers[t];
      ctx_make(f.ctx, f.stack.get(), kStack, &fiber_entry);
      f.state = State::Ready;
    }
    for (;;) {
      for (unsigned t = 0; t < n; t++) {
        if (b.fibers[t].state != State::Ready) continue;
        b.current = t;
        set_tid(t);
        ctx_switch(b.scheduler, b.fibers[t].ctx);
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
        for (unsigned t = 0; t < n; t++)
          if (b.fibers[t].state == State::AtBlock) b.fibers[t].state = State::Ready;
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
