#include "addon_sched.h"

#include <atomic>
#include <vector>

#include "addon.h"
#include "cpu/matmul.h"
#include "threadpool.h"

namespace hc::addon {

Napi::Value PoolStress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw Error("invalid_argument", "poolStress(opts) needs an object");
    const Napi::Object o = info[0].As<Napi::Object>();
    const int threads = static_cast<int>(int_of(o, "threads"));
    const int64_t n = int_of(o, "n"), align = int_of(o, "align"), min_chunk = int_of(o, "minChunk");
    const int64_t rounds = int_of(o, "rounds");
    if (threads < 1 || n < 0 || align < 1 || rounds < 0) throw Error("invalid_argument", "poolStress: bad sizes");
    ThreadPool pool(threads);
    std::vector<std::atomic<int32_t>> hits(static_cast<size_t>(n));
    std::vector<std::atomic<int64_t>> per_rank(static_cast<size_t>(threads));
    int64_t miscovered = 0, chunks = 0, region_misses = 0;
    std::atomic<int64_t> misaligned{0}, nchunks{0};
    for (int64_t r = 0; r < rounds; r++) {
      for (auto& h : hits) h.store(0, std::memory_order_relaxed);
      pool.run_chunks(n, align, min_chunk, [&](int64_t b, int64_t e) {
        if (b % align != 0 || (e != n && e % align != 0) || b >= e) misaligned++;
        nchunks++;
        for (int64_t i = b; i < e; i++) hits[i].fetch_add(1, std::memory_order_relaxed);
      });
      for (auto& h : hits) miscovered += h.load(std::memory_order_relaxed) != 1;
      // a tiny region between the chunked ones: every rank runs it once
      pool.run([&](int rank, int) { per_rank[rank].fetch_add(1, std::memory_order_relaxed); });
    }
    for (auto& c : per_rank) region_misses += c.load() != rounds;
    chunks = nchunks.load();
    Napi::Object out = Napi::Object::New(env);
    out.Set("miscovered", Napi::Number::New(env, static_cast<double>(miscovered)));
    out.Set("misaligned", Napi::Number::New(env, static_cast<double>(misaligned.load())));
    out.Set("chunks", Napi::Number::New(env, static_cast<double>(chunks)));
    out.Set("regionMisses", Napi::Number::New(env, static_cast<double>(region_misses)));
    return out;
  });
}

Napi::Value PoolShutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const int threads = static_cast<int>(int_arg(info, 0, "threads"));
    const int64_t times = int_arg(info, 1, "times");
    int64_t done = 0;
    for (int64_t t = 0; t < times; t++) {
      ThreadPool pool(std::max(1, threads));
      std::atomic<int> ran{0};
      pool.run([&](int, int) { ran++; });  // the workers now spin, waiting for the next region
      done += ran.load() == pool.size();
    }
    return Napi::Number::New(env, static_cast<double>(done));
  });
}

void MatmulGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guard(env, [&] {
    const int threads = static_cast<int>(int_arg(info, 0, "threads"));
    const int64_t M = int_arg(info, 2, "M"), K = int_arg(info, 3, "K");
    auto x = typed<float>(info[1], "x", M * K);
    if (info.Length() < 5 || !info[4].IsArray()) throw Error("invalid_argument", "matmulGroup needs an array of products");
    const Napi::Array ps = info[4].As<Napi::Array>();
    std::vector<cpu::MatmulOut> outs;
    for (uint32_t i = 0; i < ps.Length(); i++) {
      const Napi::Object p = ps.Get(i).As<Napi::Object>();
      const int64_t N = int_of(p, "N");
      const DType dt = dtype_arg(p.Get("dtype"), true);
      const Napi::Value wv = p.Get("w");
      if (!wv.IsTypedArray()) throw Error("invalid_argument", "w must be a typed array");
      const Napi::TypedArray w = wv.As<Napi::TypedArray>();
      if (static_cast<int64_t>(w.ByteLength()) < dtype_bytes(dt, N * K)) throw Error("invalid_argument", "w is too short");
      const void* wp = static_cast<const char*>(w.ArrayBuffer().Data()) + w.ByteOffset();
      const float* bias = absent(p.Get("bias")) ? nullptr : typed<float>(p.Get("bias"), "bias", N).Data();
      outs.push_back({typed<float>(p.Get("out"), "out", M * N).Data(), wp, dt, bias, N});
    }
    ThreadPool pool(std::max(1, threads));
    cpu::matmul_group(outs.data(), static_cast<int>(outs.size()), x.Data(), M, K, pool);
  });
}

}  // namespace hc::addon
