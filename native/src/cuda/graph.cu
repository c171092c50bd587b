// The stream the serving forward's device-pointer ops queue on, and CUDA graphs of it:
// a decode step is captured once per shape (cudaStreamBeginCapture on that stream, the
// ops recorded instead of run) and replayed with one cudaGraphLaunch, the host no longer
// launching each kernel. The stream is one per device and host thread, created on first
// use (the legacy default stream cannot capture); it blocks with the legacy stream, so
// the synchronous copies (hc_cuda_upload / _download) still order with its work.
#include <map>

#include "common.cuh"
#include "launch.cuh"

namespace hc::cuda {

cudaStream_t forward_stream() {
  static thread_local std::map<int, cudaStream_t> streams;  // never destroyed: used until exit
  int dev = 0;
  HC_CUDA_CHECK(cudaGetDevice(&dev));
  cudaStream_t& s = streams[dev];
  if (!s) HC_CUDA_CHECK(cudaStreamCreate(&s));
  return s;
}

std::atomic<int64_t>& buffers_epoch() {
  static std::atomic<int64_t> epoch{0};
  return epoch;
}

}  // namespace hc::cuda

using hc::cuda::entry;

extern "C" {

int hc_cuda_graph_begin(void) {
  return entry([&] {
    HC_CUDA_CHECK(cudaStreamBeginCapture(hc::cuda::forward_stream(), cudaStreamCaptureModeThreadLocal));
  });
}
int hc_cuda_graph_end(void** exec) {
  *exec = nullptr;
  return entry([&] {
    cudaGraph_t graph = nullptr;
    HC_CUDA_CHECK(cudaStreamEndCapture(hc::cuda::forward_stream(), &graph));
    cudaGraphExec_t e = nullptr;
    const cudaError_t rc = cudaGraphInstantiate(&e, graph, 0);
    cudaGraphDestroy(graph);
    HC_CUDA_CHECK(rc);
    *exec = e;
  });
}
int hc_cuda_graph_launch(void* exec) {
  return entry([&] {
    HC_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), hc::cuda::forward_stream()));
  });
}
int hc_cuda_graph_destroy(void* exec) {
  return entry([&] {
    if (exec) HC_CUDA_CHECK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)));
  });
}
int64_t hc_cuda_graph_buffers_epoch(void) { return hc::cuda::buffers_epoch().load(); }

}  // extern "C"
