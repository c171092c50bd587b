#include "dist/nccl_devices.h"

#include <exception>
#include <string>

#include "cuda_library.h"
#include "dist/comm_nccl.h"
#include "errors.h"

namespace hc::dist {

CommMaker nccl_device_comms(int ranks) {
  cuda_require_usable();
  if (cuda_library().devices < ranks)
    throw Error("backend_unavailable", std::to_string(ranks) + " ranks need " + std::to_string(ranks) +
                                           " CUDA devices; " + std::to_string(cuda_library().devices) + " present");
  if (!nccl_status().loaded) throw Error("nccl_unavailable", "NCCL is not available: " + nccl_status().error);
  return [](ThreadPool& threads) {
    const int n = threads.size();
    const NcclId id = nccl_unique_id();
    std::vector<std::unique_ptr<Communicator>> comms(static_cast<size_t>(n));
    std::vector<std::exception_ptr> errs(static_cast<size_t>(n));
    threads.run([&](int r, int) {
      try {
        const CudaLibrary& lib = cuda_library();
        cuda_call(lib.hc_cuda_set_device(r));
        void* scratch = nullptr;
        cuda_call(lib.hc_cuda_malloc(&scratch, sizeof(float)));
        NcclDevice dev;
        dev.stream = nullptr;  // the default stream, which the engine's kernels run on
        dev.synchronize = [] { cuda_call(cuda_library().hc_cuda_synchronize()); };
        dev.scratch = static_cast<float*>(scratch);
        dev.release = [scratch] { cuda_library().hc_cuda_free(scratch); };
        comms[static_cast<size_t>(r)] = make_nccl_communicator(id, r, n, std::move(dev));
      } catch (...) {
        errs[static_cast<size_t>(r)] = std::current_exception();
      }
    });
    for (const auto& e : errs)
      if (e) std::rethrow_exception(e);
    return comms;
  };
}

}  // namespace hc::dist
