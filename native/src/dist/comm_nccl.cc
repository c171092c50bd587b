// NCCL loaded at run time: the few types and entry points used are declared here from
// NCCL's stable C ABI (nccl.h, 2.x), so the build needs neither headers nor the library.
#include "dist/comm_nccl.h"

#include <dlfcn.h>

#include <cstring>
#include <mutex>
#include <type_traits>
#include <string>

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
};

struct Loaded {
  NcclApi api{};
  NcclStatus status;
};

const Loaded& loaded() {
  static Loaded l;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      l.status.error = e ? e : "dlopen(libnccl.so.2) failed";
      return;
    }
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn && ok) {
        ok = false;
        l.status.error = std::string("libnccl.so.2 lacks ") + name;
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
    if (comm_) api().CommDestroy(comm_);
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
};

}  // namespace

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
