// NCCL behind the Communicator interface, for ranks that each drive one GPU. libnccl.so.2 is
// dlopened on first use, so the addon builds and loads without NCCL; nccl_status() says
// whether it could be loaded. Buffers passed to a NcclCommunicator are device pointers.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace hc::dist {

struct NcclStatus {
  bool loaded = false;
  int version = 0;  // e.g. 22105 for 2.21.5; 0 when not loaded
  std::string error;  // why it is not loaded, naming every path tried
  std::string path;   // the library loaded
};
NcclStatus nccl_status();
// Where libnccl.so.2 is looked for, in order (comm_nccl.cc says why this order).
std::vector<std::string> nccl_search_paths();

// ncclUniqueId: rank 0 makes it and hands its bytes to the other ranks (over the
// server's control plane when they are other processes or hosts).
struct NcclId {
  char bytes[128];
};
NcclId nccl_unique_id();

// The CUDA pieces NCCL needs but the addon does not link: the stream collectives run on,
// a synchronize for it (barrier and blocking semantics) and a 1-float device scratch.
struct NcclDevice {
  void* stream = nullptr;  // cudaStream_t
  std::function<void()> synchronize;
  float* scratch = nullptr;
  std::function<void()> release;  // frees what was allocated for the communicator (scratch); may be empty
};

std::unique_ptr<Communicator> make_nccl_communicator(const NcclId& id, int rank, int size, NcclDevice dev);

}  // namespace hc::dist
