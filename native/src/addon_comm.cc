// commRun: the ranks of a RankLauncher, as DP/TP ranks are run, each with its own
// ThreadCommunicator; the JS thread is rank 0 and waits for the others (test-sized buffers,
// so no AsyncWorker).
#include "addon_comm.h"

#include <cstring>

#include "addon.h"
#include "dist/comm_nccl.h"
#include "dist/comm_threads.h"

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

void run_rank(dist::Communicator& c, Op op, DType dt, int64_t count, int root, bool in_place, RankBufs& b) {
  const size_t es = dtype_size(dt);
  const dist::Shard mine = dist::shard_of(count, c.size(), c.rank());
  switch (op) {
    case Op::AllReduce:
    case Op::Broadcast:
      b.out = b.in;
      if (op == Op::AllReduce)
        c.all_reduce_sum(b.out.data(), count, dt);
      else
        c.broadcast(b.out.data(), count, dt, root);
      break;
    case Op::ReduceScatter:
      if (in_place) {
        c.reduce_scatter_sum(b.in.data(), b.in.data() + mine.offset * es, count, dt);
        b.out.assign(b.in.begin() + mine.offset * es, b.in.begin() + (mine.offset + mine.length) * es);
      } else {
        b.out.assign(mine.length * es, 0xff);
        c.reduce_scatter_sum(b.in.data(), b.out.data(), count, dt);
      }
      break;
    case Op::AllGather:
      // the rank's send is its own shard of its given buffer
      if (in_place) {
        b.out = b.in;
        c.all_gather(b.out.data() + mine.offset * es, b.out.data(), count, dt);
      } else {
        std::vector<unsigned char> send(b.in.begin() + mine.offset * es, b.in.begin() + (mine.offset + mine.length) * es);
        b.out.assign(count * es, 0xff);
        c.all_gather(send.data(), b.out.data(), count, dt);
      }
      break;
    case Op::Barrier:
      c.barrier();
      b.out = b.in;
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
    bool in_place = false;
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object o = info[3].As<Napi::Object>();
      if (!absent(o.Get("root"))) root = static_cast<int>(int_of(o, "root"));
      if (!absent(o.Get("inPlace"))) in_place = flag(o, "inPlace");
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
    dist::RankLauncher ranks(n);
    ranks.run([&](int r) { run_rank(ranks.comm(r), op, dt, count, root, in_place, bufs[r]); });
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
