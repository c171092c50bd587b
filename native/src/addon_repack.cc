#include "addon_repack.h"

#include <cstring>
#include <vector>

#include "addon.h"
#include "cpu/matmul.h"
#include "cpu/quant_repack.h"
#include "threadpool.h"

namespace hc::addon {
namespace {

const uint8_t* blocks_of(Napi::Value v, DType dt, int64_t N, int64_t K) {
  if (!v.IsTypedArray()) throw Error("invalid_argument", "w must be a Uint8Array of blocks");
  const Napi::TypedArray w = v.As<Napi::TypedArray>();
  if (!cpu::can_repack(dt, N, K))
    throw Error("invalid_argument", std::string("a ") + dtype_name(dt) + " weight of " + std::to_string(N) + " × " +
                                        std::to_string(K) + " is not repacked (block types q8_0/q4_0/q4_k, N a multiple of 16)");
  if (static_cast<int64_t>(w.ByteLength()) < dtype_bytes(dt, N * K)) throw Error("invalid_argument", "w is too short");
  return static_cast<const uint8_t*>(w.ArrayBuffer().Data()) + w.ByteOffset();
}

}  // namespace

Napi::Value MatmulRepacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const int threads = static_cast<int>(int_arg(info, 0, "threads"));
    const int64_t M = int_arg(info, 2, "M"), K = int_arg(info, 3, "K");
    auto x = typed<float>(info[1], "x", M * K);
    if (info.Length() < 5 || !info[4].IsArray()) throw Error("invalid_argument", "matmulRepacked needs an array of products");
    const bool group = info.Length() > 5 && info[5].ToBoolean().Value();
    const Napi::Array ps = info[4].As<Napi::Array>();
    ThreadPool pool(std::max(1, threads));
    cpu::RepackSet set;
    std::vector<cpu::MatmulOut> outs;
    for (uint32_t i = 0; i < ps.Length(); i++) {
      const Napi::Object p = ps.Get(i).As<Napi::Object>();
      const int64_t N = int_of(p, "N");
      const DType dt = dtype_arg(p.Get("dtype"), true);
      const uint8_t* wp = blocks_of(p.Get("w"), dt, N, K);
      const cpu::RepackedWeight* packed = set.add(wp, dt, N, K, pool);
      const float* bias = absent(p.Get("bias")) ? nullptr : typed<float>(p.Get("bias"), "bias", N).Data();
      outs.push_back({typed<float>(p.Get("out"), "out", M * N).Data(), wp, dt, bias, N, packed});
    }
    if (group)
      cpu::matmul_group(outs.data(), static_cast<int>(outs.size()), x.Data(), M, K, pool);
    else
      for (const cpu::MatmulOut& o : outs)
        cpu::matmul(o.out, x.Data(), o.w, o.wtype, o.bias, M, o.N, K, pool, cpu::MatmulPrecision::Highest, false, o.packed);
    return Napi::Number::New(env, static_cast<double>(set.bytes()));
  });
}

Napi::Value RepackRoundTrip(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const DType dt = dtype_arg(info[1], true);
    const int64_t N = int_arg(info, 2, "N"), K = int_arg(info, 3, "K");
    const uint8_t* w = blocks_of(info[0], dt, N, K);
    std::vector<uint8_t> packed(static_cast<size_t>(cpu::repacked_bytes(dt, N, K)));
    ThreadPool pool(1);
    cpu::repack(dt, w, N, K, packed.data(), pool);
    Napi::Uint8Array out = Napi::Uint8Array::New(env, static_cast<size_t>(dtype_bytes(dt, N * K)));
    cpu::unrepack(dt, packed.data(), N, K, out.Data());
    return out;
  });
}

}  // namespace hc::addon
