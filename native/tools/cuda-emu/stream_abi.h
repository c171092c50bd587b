// What an emulated stream handle points at, as a C ABI shared by the emulated CUDA
// library (cuda_runtime.h) and the stand-in cuBLASLt (cublaslt_emu.cc, a separate .so):
// while the stream captures a graph, work queued on it is recorded as a node (the call
// and a copy of its arguments) and runs when the graph is launched, as on a GPU.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define HC_EMU_STREAM_MAGIC 0x4843454d55535452ull /* "HCEMUSTR" */

struct hc_emu_stream_abi {
  uint64_t magic;
  int capturing;
  // appends a node that calls fn(copy of arg[0, size)) at each launch of the graph
  void (*record)(struct hc_emu_stream_abi* self, void (*fn)(void*), const void* arg, size_t size);
};

// the stream behind a cudaStream_t while it captures, else null (0 and foreign handles too)
static inline struct hc_emu_stream_abi* hc_emu_capturing(void* stream) {
  struct hc_emu_stream_abi* s = (struct hc_emu_stream_abi*)stream;
  return s && s->magic == HC_EMU_STREAM_MAGIC && s->capturing ? s : NULL;
}
