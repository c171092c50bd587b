// NCCL communicators for in-process ranks that each drive one CUDA device, rank r on
// device r: the RankLauncher's CommMaker for tensor-parallel serving on N devices and for
// commRun's "nccl" backend. The ranks meet by one unique id (ncclCommInitRank blocks until
// every rank has joined), so each joins on its own thread, its device bound.
#pragma once
#include "dist/comm_threads.h"

namespace hc::dist {

// Throws "backend_unavailable" unless the CUDA library sees `ranks` devices, and
// "nccl_unavailable" (naming every path searched) unless NCCL loads.
CommMaker nccl_device_comms(int ranks);

}  // namespace hc::dist
