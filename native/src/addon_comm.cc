// commRun: the ranks of a RankLauncher, as DP/TP ranks are run, each with its own
// communicator — threads on host buffers, or (backend "nccl") NCCL with rank r's buffers on
// CUDA device r; the JS thread is rank 0 and waits for the others (test-sized buffers, so
// no AsyncWorker).
#include "addon_comm.h"

#include <cstring>
#include <deque>
#include <memory>

#include "addon.h"
#include "dist/comm_nccl.h"
#include "dist/comm_threads.h"
#include "dist/nccl_devices.h"
#include "cuda_library.h"

namespace hc::addon {

namespace {

enum class Op { AllReduce, ReduceScatter, AllGather, Broadcast, Barrier };

Op parse_op(const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "allReduceSum") return Op::AllReduce;
  if (s == "reduceScatterSum") return Op::ReduceScatter;
  if (s == "allGather") return Op::AllGather;
  if (s == "broadcast") return Op::Broadcast;
  if (s == "barrier") return Op::Barrier;
  throw Error("invalid_argument", "op must be allReduceSum, reduceScatterSum, allGather, broadcast or barrier");
}

// One rank's buffers as bytes: `in` is its given buffer, `out` what the op leaves for it.
struct RankBufs {
  std::vector<unsigned char> in;
  std::vector<unsigned char> out;
};

// Where a rank's collective buffers live: host vectors (thread ranks) or device memory
// (NCCL ranks, on the rank's bound device), freed with the Mem.
class Mem {
 public:
  virtual ~Mem() = default;
  // a buffer holding a copy of host[0, bytes)
  virtual unsigned char* put(const unsigned char* host, size_t bytes) = 0;
  virtual std::vector<unsigned char> get(const unsigned char* p, size_t bytes) = 0;
};

class HostMem final : public Mem {
 public:
  unsigned char* put(const unsigned char* host, size_t bytes) override {
    bufs_.emplace_back(host, host + bytes);
    return bufs_.back().data();
  }
  std::vector<unsigned char> get(const unsigned char* p, size_t bytes) override { return {p, p + bytes}; }

 private:
  std::deque<std::vector<unsigned char>> bufs_;
};

class DeviceMem final : public Mem {
 public:
  ~DeviceMem() override {
    for (void* p : bufs_) cuda_library().hc_cuda_free(p);
  }
  unsigned char* put(const unsigned char* host, size_t bytes) override {
    void* p = nullptr;
    cuda_call(cuda_library().hc_cuda_malloc(&p, bytes));
    bufs_.push_back(p);
    if (bytes) cuda_call(cuda_library().hc_cuda_upload(p, host, bytes));
    return static_cast<unsigned char*>(p);
  }
  std::vector<unsigned char> get(const unsigned char* p, size_t bytes) override {
    std::vector<unsigned char> out(bytes);
    if (bytes) cuda_call(cuda_library().hc_cuda_download(out.data(), p, bytes));
    return out;
  }

 private:
  std::vector<void*> bufs_;
};

void run_rank(dist::Communicator& c, Mem& mem, Op op, DType dt, int64_t count, int root, bool in_place, RankBufs& b) {
  const size_t es = dtype_size(dt), bytes = static_cast<size_t>(count) * es;
  const dist::Shard mine = dist::shard_of(count, c.size(), c.rank());
  const size_t off = static_cast<size_t>(mine.offset) * es, len = static_cast<size_t>(mine.length) * es;
  unsigned char* buf = mem.put(b.in.data(), bytes);
  const std::vector<unsigned char> poison(bytes, 0xff);  // what a collective must overwrite
  switch (op) {
    case Op::AllReduce:
      c.all_reduce_sum(buf, count, dt);
      b.out = mem.get(buf, bytes);
      break;
    case Op::Broadcast:
      c.broadcast(buf, count, dt, root);
      b.out = mem.get(buf, bytes);
      break;
    case Op::ReduceScatter:
      if (in_place) {
        c.reduce_scatter_sum(buf, buf + off, count, dt);
        b.out = mem.get(buf + off, len);
      } else {
        unsigned char* recv = mem.put(poison.data(), len);
        c.reduce_scatter_sum(buf, recv, count, dt);
        b.out = mem.get(recv, len);
      }
      break;
    case Op::AllGather:
      // the rank's send is its own shard of its given buffer
      if (in_place) {
        c.all_gather(buf + off, buf, count, dt);
        b.out = mem.get(buf, bytes);
      } else {
        unsigned char* send = mem.put(b.in.data() + off, len);
        unsigned char* recv = mem.put(poison.data(), bytes);
        c.all_gather(send, recv, count, dt);
        b.out = mem.get(recv, bytes);
      }
      break;
    case Op::Barrier:
      c.barrier();
      b.out = mem.get(buf, bytes);
      break;
  }
}

}  // namespace

Napi::Value CommRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[2].IsArray()) throw Error("invalid_argument", "commRun(op, dtype, buffers, options)");
    const Op op = parse_op(info[0]);
    const DType dt = dtype_arg(info[1]);
    if (dt != DType::F32 && dt != DType::BF16) throw Error("bad_dtype", "collectives take f32 or bf16 buffers");
    Napi::Array arr = info[2].As<Napi::Array>();
    const int n = static_cast<int>(arr.Length());
    int root = 0;
    bool in_place = false, nccl = false;
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object o = info[3].As<Napi::Object>();
      if (!absent(o.Get("root"))) root = static_cast<int>(int_of(o, "root"));
      if (!absent(o.Get("inPlace"))) in_place = flag(o, "inPlace");
      if (!absent(o.Get("backend"))) {
        const std::string be = o.Get("backend").IsString() ? o.Get("backend").As<Napi::String>().Utf8Value() : "";
        if (be != "threads" && be != "nccl") throw Error("invalid_argument", "backend must be \"threads\" or \"nccl\"");
        nccl = be == "nccl";
      }
    }
    std::vector<RankBufs> bufs(static_cast<size_t>(n));
    int64_t count = -1;
    for (int r = 0; r < n; r++) {
      std::vector<unsigned char>& in = bufs[r].in;
      if (dt == DType::F32) {
        auto a = typed<float>(arr.Get(r), "buffers[r]");
        in.assign(reinterpret_cast<const unsigned char*>(a.Data()), reinterpret_cast<const unsigned char*>(a.Data() + a.ElementLength()));
      } else {
        auto a = typed<uint16_t>(arr.Get(r), "buffers[r]");
        in.assign(reinterpret_cast<const unsigned char*>(a.Data()), reinterpret_cast<const unsigned char*>(a.Data() + a.ElementLength()));
      }
      const int64_t c = static_cast<int64_t>(in.size() / dtype_size(dt));
      if (count >= 0 && c != count) throw Error("invalid_argument", "every rank's buffer must have the same length");
      count = c;
    }
    // nccl: rank r on device r, its buffers in that device's memory
    dist::RankLauncher ranks(n, nccl ? dist::nccl_device_comms(n) : nullptr);
    ranks.run([&](int r) {
      std::unique_ptr<Mem> mem;
      if (nccl) {
        cuda_call(cuda_library().hc_cuda_set_device(r));
        mem = std::make_unique<DeviceMem>();
      } else {
        mem = std::make_unique<HostMem>();
      }
      run_rank(ranks.comm(r), *mem, op, dt, count, root, in_place, bufs[r]);
    });
    Napi::Array out = Napi::Array::New(env, n);
    for (int r = 0; r < n; r++) {
      const auto& o = bufs[r].out;
      if (dt == DType::F32) {
        auto a = Napi::Float32Array::New(env, o.size() / 4);
        std::memcpy(a.Data(), o.data(), o.size());
        out.Set(r, a);
      } else {
        auto a = Napi::Uint16Array::New(env, o.size() / 2);
        std::memcpy(a.Data(), o.data(), o.size());
        out.Set(r, a);
      }
    }
    return out;
  });
}

Napi::Value NcclStatusJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dist::NcclStatus s = dist::nccl_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("loaded", s.loaded);
  o.Set("version", static_cast<double>(s.version));
  o.Set("error", s.loaded ? env.Null() : Napi::String::New(env, s.error));
  o.Set("path", s.loaded ? Napi::String::New(env, s.path) : env.Null());
  return o;
}

Napi::Value NcclUniqueIdJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const dist::NcclId id = dist::nccl_unique_id();
    auto a = Napi::Uint8Array::New(env, sizeof id.bytes);
    std::memcpy(a.Data(), id.bytes, sizeof id.bytes);
    return a;
  });
}

}  // namespace hc::addon
