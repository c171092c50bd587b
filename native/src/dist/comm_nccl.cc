// NCCL loaded at run time: the few types and entry points used are declared here from
// NCCL's stable C ABI (nccl.h, 2.x), so the build needs neither headers nor the library.
// Where it is looked for, in order (nccl_search_paths): HYBRIDCHAT_NCCL_LIB alone when set;
// beside the CUDA library in use (the host emulator's stand-in, native/tools/cuda-emu/nccl.cc,
// is built there); libnccl.so.2 by soname (LD_LIBRARY_PATH, the loader's cache); the CUDA
// toolkit; the Python wheel folders nvidia/nccl/lib of every site-packages. A failure names
// every path tried.
#include "dist/comm_nccl.h"

#include <dlfcn.h>
#include <glob.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>
#include <vector>
#include <type_traits>
#include <string>

#include "cuda_library.h"
#include "errors.h"

namespace hc::dist {

namespace {

using ncclComm_t = void*;
using ncclResult_t = int;  // 0 = ncclSuccess
enum ncclDataType : int { ncclFloat32 = 7, ncclBfloat16 = 9 };
enum ncclRedOp : int { ncclSum = 0 };

struct NcclApi {
  ncclResult_t (*GetVersion)(int*);
  ncclResult_t (*GetUniqueId)(NcclId*);
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, NcclId, int);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  const char* (*GetErrorString)(ncclResult_t);
  ncclResult_t (*AllReduce)(const void*, void*, size_t, int, int, ncclComm_t, void*);
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t, int, int, ncclComm_t, void*);
  ncclResult_t (*AllGather)(const void*, void*, size_t, int, ncclComm_t, void*);
  ncclResult_t (*Broadcast)(const void*, void*, size_t, int, int, ncclComm_t, void*);
  ncclResult_t (*Reduce)(const void*, void*, size_t, int, int, int, ncclComm_t, void*);
  ncclResult_t (*GroupStart)();
  ncclResult_t (*GroupEnd)();
  ncclResult_t (*CommAbort)(ncclComm_t);
};

struct Loaded {
  NcclApi api{};
  NcclStatus status;
};

std::string folder_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

// a glob's matches, or the pattern itself (tried, and failing with "no such file") when none
void add_glob(std::vector<std::string>& out, const std::string& pattern) {
  glob_t g{};
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0)
    for (size_t i = 0; i < g.gl_pathc; i++) out.emplace_back(g.gl_pathv[i]);
  else
    out.push_back(pattern);
  globfree(&g);
}

const Loaded& loaded() {
  static Loaded l;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = nullptr;
    std::string path, tried;
    for (const std::string& p : nccl_search_paths()) {
      h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h) {
        path = p;
        break;
      }
      const char* e = dlerror();
      tried += (tried.empty() ? "" : "; ") + (e ? std::string(e) : p + ": cannot be loaded");
    }
    if (!h) {
      l.status.error = "libnccl.so.2 not found (searched: " + tried +
                       "; set HYBRIDCHAT_NCCL_LIB to its path, or pip install nvidia-nccl-cu12)";
      return;
    }
    l.status.path = path;
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn && ok) {
        ok = false;
        l.status.error = path + " lacks " + name;
      }
    };
    sym(l.api.GetVersion, "ncclGetVersion");
    sym(l.api.GetUniqueId, "ncclGetUniqueId");
    sym(l.api.CommInitRank, "ncclCommInitRank");
    sym(l.api.CommDestroy, "ncclCommDestroy");
    sym(l.api.GetErrorString, "ncclGetErrorString");
    sym(l.api.AllReduce, "ncclAllReduce");
    sym(l.api.ReduceScatter, "ncclReduceScatter");
    sym(l.api.AllGather, "ncclAllGather");
    sym(l.api.Broadcast, "ncclBroadcast");
    sym(l.api.Reduce, "ncclReduce");
    sym(l.api.GroupStart, "ncclGroupStart");
    sym(l.api.GroupEnd, "ncclGroupEnd");
    sym(l.api.CommAbort, "ncclCommAbort");
    if (!ok) return;
    l.api.GetVersion(&l.status.version);
    l.status.loaded = true;
  });
  return l;
}

const NcclApi& api() {
  const Loaded& l = loaded();
  if (!l.status.loaded) throw Error("nccl_unavailable", "NCCL is not available: " + l.status.error);
  return l.api;
}

void check(ncclResult_t r, const char* what) {
  if (r != 0) throw Error("nccl_error", std::string(what) + ": " + api().GetErrorString(r));
}

int nccl_type(DType dt) {
  if (dt == DType::F32) return ncclFloat32;
  if (dt == DType::BF16) return ncclBfloat16;
  throw Error("bad_dtype", "collectives take f32 or bf16 buffers");
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const NcclId& id, int rank, int size, NcclDevice dev) : rank_(rank), size_(size), dev_(std::move(dev)) {
    check(api().CommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
  }
  ~NcclCommunicator() override {
    if (comm_ && !aborted_) api().CommDestroy(comm_);
    if (dev_.release) dev_.release();
  }
  // ncclCommAbort frees the communicator and makes the other ranks' pending collectives fail
  void abort() override {
    if (comm_ && !aborted_.exchange(true)) api().CommAbort(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(void* buf, int64_t count, DType dt) override {
    check(api().AllReduce(buf, buf, count, nccl_type(dt), ncclSum, comm_, dev_.stream), "ncclAllReduce");
    dev_.synchronize();
  }

  void reduce_scatter_sum(const void* send, void* recv, int64_t count, DType dt) override {
    const int t = nccl_type(dt);
    if (count % size_ == 0) {
      check(api().ReduceScatter(send, recv, count / size_, t, ncclSum, comm_, dev_.stream), "ncclReduceScatter");
    } else {
      // uneven shards: one reduce per owner, grouped so NCCL runs them together
      const size_t es = dtype_size(dt);
      check(api().GroupStart(), "ncclGroupStart");
      for (int r = 0; r < size_; r++) {
        const Shard s = shard_of(count, size_, r);
        const void* src = static_cast<const unsigned char*>(send) + s.offset * es;
        if (s.length > 0) check(api().Reduce(src, r == rank_ ? recv : nullptr, s.length, t, ncclSum, r, comm_, dev_.stream), "ncclReduce");
      }
      check(api().GroupEnd(), "ncclGroupEnd");
    }
    dev_.synchronize();
  }

  void all_gather(const void* send, void* recv, int64_t count, DType dt) override {
    const int t = nccl_type(dt);
    if (count % size_ == 0) {
      check(api().AllGather(send, recv, count / size_, t, comm_, dev_.stream), "ncclAllGather");
    } else {
      const size_t es = dtype_size(dt);
      check(api().GroupStart(), "ncclGroupStart");
      for (int r = 0; r < size_; r++) {
        const Shard s = shard_of(count, size_, r);
        void* dst = static_cast<unsigned char*>(recv) + s.offset * es;
        if (s.length > 0) check(api().Broadcast(r == rank_ ? send : dst, dst, s.length, t, r, comm_, dev_.stream), "ncclBroadcast");
      }
      check(api().GroupEnd(), "ncclGroupEnd");
    }
    dev_.synchronize();
  }

  void broadcast(void* buf, int64_t count, DType dt, int root) override {
    check(api().Broadcast(buf, buf, count, nccl_type(dt), root, comm_, dev_.stream), "ncclBroadcast");
    dev_.synchronize();
  }

  void barrier() override {
    // NCCL has no barrier: a one-element all-reduce that every rank waits for is one
    check(api().AllReduce(dev_.scratch, dev_.scratch, 1, ncclFloat32, ncclSum, comm_, dev_.stream), "ncclAllReduce");
    dev_.synchronize();
  }

 private:
  const int rank_;
  const int size_;
  NcclDevice dev_;
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> aborted_{false};

  // a failed call on an aborted communicator is the echo of another rank's failure
  void check(ncclResult_t r, const char* what) const {
    if (r == 0) return;
    if (aborted_) throw Error("comm_aborted", "another rank of this group failed");
    dist::check(r, what);
  }
};

}  // namespace

std::vector<std::string> nccl_search_paths() {
  const char* env = std::getenv("HYBRIDCHAT_NCCL_LIB");
  if (env && *env) return {env};
  std::vector<std::string> out;
  const CudaLibrary& cuda = cuda_library();
  Dl_info info;
  if (cuda.loaded && dladdr(reinterpret_cast<void*>(cuda.hc_cuda_device_count), &info) && info.dli_fname)
    out.push_back(folder_of(info.dli_fname) + "libnccl.so.2");
  out.emplace_back("libnccl.so.2");
  const char* cuda_home = std::getenv("CUDA_HOME");
  for (const std::string& root : {cuda_home && *cuda_home ? std::string(cuda_home) : std::string("/usr/local/cuda")})
    out.push_back(root + "/lib64/libnccl.so.2");
  // the Python wheel (nvidia-nccl-cu12), wherever pip put it
  std::vector<std::string> prefixes = {"/usr/lib", "/usr/local/lib"};
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"})
    if (const char* v = std::getenv(var); v && *v) prefixes.push_back(std::string(v) + "/lib");
  if (const char* home = std::getenv("HOME"); home && *home) prefixes.push_back(std::string(home) + "/.local/lib");
  for (const std::string& p : prefixes)
    for (const char* kind : {"site-packages", "dist-packages"})
      add_glob(out, p + "/python3*/" + kind + "/nvidia/nccl/lib/libnccl.so.2");
  return out;
}

NcclStatus nccl_status() { return loaded().status; }

NcclId nccl_unique_id() {
  NcclId id{};
  check(api().GetUniqueId(&id), "ncclGetUniqueId");
  return id;
}

std::unique_ptr<Communicator> make_nccl_communicator(const NcclId& id, int rank, int size, NcclDevice dev) {
  if (size < 1 || rank < 0 || rank >= size) throw Error("invalid_argument", "NCCL rank out of range");
  if (!dev.synchronize || !dev.scratch) throw Error("invalid_argument", "NCCL communicator needs a stream synchronize and a device scratch");
  return std::make_unique<NcclCommunicator>(id, rank, size, std::move(dev));
}

}  // namespace hc::dist
