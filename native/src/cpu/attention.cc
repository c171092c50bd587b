// Causal grouped-query attention over contiguous or paged keys/values, one query row
// at a time with an online softmax (running max and sum), so no [T,S] score matrix
// is ever stored. Work items are (token, head) pairs spread over the pool; at the AVX-512
// level a prompt goes in tiles and a decode step by GQA group (attention_avx512). The
// paged pool holds f32, bf16 or f16 (kv_elem.h): every kernel is one template over the
// element type, widening rows to fp32 as it reads them.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "../errors.h"
#include "attention_avx512.h"
#include "dispatch.h"
#include "gemm.h"
#include "kv_elem.h"
#include "ops.h"
#include "simd_avx2.h"

namespace hc::cpu {

static constexpr int64_t kMaxHD = 1024;
static constexpr int64_t kChunk = 16;

// Keys are scored kChunk at a time so the running max (and the rescale of the
// accumulator it may cause) is handled once per chunk.
template <class E>
static void attention_row(float* out, const float* q, const E* k, const E* v, const int32_t* blocks,
                          int64_t block_stride, int64_t token_stride, int64_t block_size, int64_t first,
                          int64_t npos, int64_t HD, float scale) {
  float acc[kMaxHD];
  float sc[kChunk];
  const E* vp[kChunk];
  for (int64_t d = 0; d < HD; d++) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = first - first % block_size; j0 < npos; j0 += block_size) {
    const int64_t off = static_cast<int64_t>(blocks[j0 / block_size]) * block_stride;
    const int64_t nb = std::min(block_size, npos - j0);  // keys in this block
    for (int64_t j = std::max<int64_t>(0, first - j0); j < nb; j += kChunk) {
      const int64_t n = std::min(kChunk, nb - j);
      float cm = -INFINITY;
      for (int64_t i = 0; i < n; i++) {
        const E* kj = k + off + (j + i) * token_stride;
        vp[i] = v + off + (j + i) * token_stride;
        float s = 0.0f;
        for (int64_t d = 0; d < HD; d++) s += q[d] * widen(kj[d]);
        sc[i] = s * scale;
        cm = std::max(cm, sc[i]);
      }
      if (cm > m) {
        const float c = std::exp(m - cm);  // rescale what was accumulated under the old max
        l *= c;
        for (int64_t d = 0; d < HD; d++) acc[d] *= c;
        m = cm;
      }
      for (int64_t i = 0; i < n; i++) {
        const float p = std::exp(sc[i] - m);
        l += p;
        for (int64_t d = 0; d < HD; d++) acc[d] += p * widen(vp[i][d]);
      }
    }
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t d = 0; d < HD; d++) out[d] = acc[d] * inv;
}

#ifdef HC_HAVE_AVX512_TU
static constexpr int64_t kMinTileRun = 4;
static constexpr int64_t kItemsPerRank = 8;  // fewer decode items than this a rank: split their contexts
static constexpr int64_t kMinPartKeys = 64;  // ... into parts of at least this many keys
// The AVX-512 level's work items (attention_avx512.h): a prompt's runs of consecutive
// tokens go in tiles of 16 rows of one head (Tile); each other token (decode steps, short
// runs) is one item per kv head for the decode kernel, all the group's query heads at once
// (Decode), or, for head sizes that kernel has no instance for, one per query head for the
// row kernel (Row). A Decode item covers keys [a, b): the token's whole range, or one part
// of it when the step has too few items to keep every rank busy (one sequence at batch 1):
// parts write partials (slot `part`) that are combined after.
struct Item {
  enum Kind : uint8_t { Tile, Decode, Row } kind;
  int rows;         // Tile: rows in the tile
  int64_t t, h;     // first token; query head (Tile, Row) or kv head (Decode)
  int64_t a, b;     // Decode: keys [a, b)
  int64_t part;     // Decode: partials slot, or -1 (the whole range: writes out)
  int64_t cost;     // keys × rows, for heaviest-first order
};

// A token's split decode item: parts [part0, part0 + parts) to combine into kv head g's outputs.
struct Split { int64_t t, g, part0, parts; };

// Work (keys × query heads × head dim) from which a step's attention is spread over the
// ranks. A decode step's keys come from memory, not cache (the layer's GEMVs streamed
// megabytes since this layer's cache was last read), so one rank reads them at one
// core's bandwidth: 110M at 64 positions (393 KB of f32 keys and values a layer) took
// 18–25 µs cold on one rank. A region costs a few µs when the ranks are awake, as they
// are between a step's GEMVs, so from ≈ 16 positions of a 12-head layer both ranks take a
// share of the kv heads (the threshold was 65536, ≈ 85 positions: rank 0 alone below).
static constexpr int64_t kParallelWork = 12288;

// The step's work list and split partials, kept per thread between calls: a decode step
// runs this once a layer, and its allocations (the items growing, the sort's buffer, the
// partials) were a fixed cost of each call.
struct AttnScratch {
  std::vector<Item> items, split;
  std::vector<Split> splits;
  std::vector<float> pacc, pm, pl;
};
static AttnScratch& attn_scratch() {
  static thread_local AttnScratch s;
  return s;
}

template <class E, class FirstOf, class Row>
static void attention_avx512(float* out, const float* q, const KVSpan* spans, const int32_t* seq_of,
                             const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, float scale,
                             const FirstOf& first_of, int64_t work, bool tiles, bool decode, const Row& row,
                             ThreadPool& pool) {
  const int64_t group = NH / NKV;
  const bool parallel = work >= kParallelWork && pool.size() > 1;  // a small model's first positions: not worth a wake-up
  AttnScratch& sc = attn_scratch();
  std::vector<Item>& items = sc.items;
  items.clear();
  int64_t ndecode = 0;
  for (int64_t t0 = 0; t0 < T;) {
    int64_t t1 = t0 + 1;
    while (t1 < T && seq_of[t1] == seq_of[t0] && npos[t1] == npos[t1 - 1] + 1) t1++;
    if (tiles && t1 - t0 >= kMinTileRun) {
      for (int64_t a = t0; a < t1; a += avx512::kTileRows) {
        const int rows = static_cast<int>(std::min<int64_t>(avx512::kTileRows, t1 - a));
        const int64_t keys = npos[a + rows - 1] - first_of(a);
        for (int64_t h = 0; h < NH; h++) items.push_back({Item::Tile, rows, a, h, 0, 0, -1, keys * rows});
      }
    } else {
      for (int64_t t = t0; t < t1; t++) {
        const int64_t f = first_of(t), n = npos[t];
        if (decode) {
          for (int64_t g = 0; g < NKV; g++) items.push_back({Item::Decode, 0, t, g, f, n, -1, (n - f) * group});
          ndecode += NKV;
        } else {
          for (int64_t h = 0; h < NH; h++) items.push_back({Item::Row, 0, t, h, 0, 0, -1, n - f});
        }
      }
    }
    t0 = t1;
  }
  // Too few items for the ranks (a decode step of one or two sequences): each decode
  // item's context in parts, so the ranks share even a single sequence's keys.
  std::vector<Split>& splits = sc.splits;
  splits.clear();
  int64_t nparts = 0;
  const int64_t want = kItemsPerRank * pool.size();
  if (parallel && ndecode > 0 && static_cast<int64_t>(items.size()) < want) {
    const int64_t per = (want + static_cast<int64_t>(items.size()) - 1) / static_cast<int64_t>(items.size());
    std::vector<Item>& split = sc.split;
    split.clear();
    for (const Item& it : items) {
      const int64_t keys = it.b - it.a;
      const int64_t parts = it.kind == Item::Decode ? std::min(per, keys / kMinPartKeys) : 1;
      if (parts <= 1) {
        split.push_back(it);
        continue;
      }
      splits.push_back({it.t, it.h, nparts, parts});
      for (int64_t i = 0; i < parts; i++) {
        const int64_t a = it.a + keys * i / parts, b = it.a + keys * (i + 1) / parts;
        split.push_back({Item::Decode, 0, it.t, it.h, a, b, nparts++, (b - a) * group});
      }
    }
    items.swap(split);
  }
  std::vector<float>&pacc = sc.pacc, &pm = sc.pm, &pl = sc.pl;
  if (static_cast<int64_t>(pacc.size()) < nparts * group * HD) pacc.resize(static_cast<size_t>(nparts * group * HD));
  if (static_cast<int64_t>(pm.size()) < nparts * group) {
    pm.resize(static_cast<size_t>(nparts * group));
    pl.resize(static_cast<size_t>(nparts * group));
  }
  auto run = [&](const Item& it) {
    if (it.kind == Item::Row) return row(it.t * NH + it.h);
    const KVSpan& sp = spans[seq_of[it.t]];
    const int64_t head = (it.kind == Item::Tile ? it.h / group : it.h) * sp.head_stride;
    const E* k = static_cast<const E*>(sp.k) + head;
    const E* v = static_cast<const E*>(sp.v) + head;
    if (it.kind == Item::Decode) {
      const int64_t o = (it.t * NH + it.h * group) * HD;
      if (it.part < 0)
        return avx512::attention_decode(out + o, q + o, static_cast<int>(group), k, v, sp.blocks, sp.block_stride,
                                        sp.token_stride, sp.block_size, it.a, it.b, HD, scale, nullptr, nullptr);
      const int64_t p = it.part * group;
      return avx512::attention_decode(pacc.data() + p * HD, q + o, static_cast<int>(group), k, v, sp.blocks,
                                      sp.block_stride, sp.token_stride, sp.block_size, it.a, it.b, HD, scale,
                                      pm.data() + p, pl.data() + p);
    }
    int64_t fr[avx512::kTileRows], nr[avx512::kTileRows];
    for (int r = 0; r < it.rows; r++) {
      fr[r] = first_of(it.t + r);
      nr[r] = npos[it.t + r];
    }
    const int64_t o = (it.t * NH + it.h) * HD;
    avx512::attention_tile(out + o, NH * HD, q + o, NH * HD, it.rows, k, v, sp.blocks, sp.block_stride,
                           sp.token_stride, sp.block_size, fr, nr, HD, scale);
  };
  const int64_t n = static_cast<int64_t>(items.size());
  if (!parallel) {
    for (int64_t i = 0; i < n; i++) run(items[i]);
  } else {
    // items differ in cost (later tiles, longer contexts see more keys): heaviest first,
    // from a shared counter, so the last items to finish are the small ones (std::sort, not
    // stable_sort, which allocates: each item writes its own outputs, so the order among
    // equal costs changes no result)
    std::sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.cost > y.cost; });
    std::atomic<int64_t> next{0};
    pool.run([&](int, int) {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) run(items[i]);
    });
  }
  // each split item's parts: out = Σ acc·e^(m − M) / Σ l·e^(m − M), M the parts' max
  for (const Split& s : splits)
    for (int64_t h = 0; h < group; h++) {
      float M = -INFINITY;
      for (int64_t i = 0; i < s.parts; i++) M = std::max(M, pm[(s.part0 + i) * group + h]);
      float* o = out + (s.t * NH + s.g * group + h) * HD;
      float l = 0.0f;
      for (int64_t d = 0; d < HD; d++) o[d] = 0.0f;
      for (int64_t i = 0; i < s.parts; i++) {
        const int64_t p = (s.part0 + i) * group + h;
        const float c = std::exp(pm[p] - M);
        l += pl[p] * c;
        const float* a = pacc.data() + p * HD;
        for (int64_t d = 0; d < HD; d++) o[d] += a[d] * c;
      }
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < HD; d++) o[d] *= inv;
    }
}
#endif

template <class E>
static void attention_paged(float* out, const float* q, const KVSpan* spans, const int32_t* seq_of,
                            const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window,
                            ThreadPool& pool) {
  const int64_t group = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  // estimated work, to keep tiny decode steps on the calling thread
  int64_t work = 0;
  // the first key query t sees: its window's start, or 0
  auto first_of = [&](int64_t t) { return window > 0 ? std::max<int64_t>(0, npos[t] - window) : 0; };
  for (int64_t t = 0; t < T; t++) work += (npos[t] - first_of(t)) * NH * HD;
  const int64_t items = T * NH;
#ifdef HC_HAVE_AVX2_TU
  const bool simd = use_avx2() && HD % 8 == 0;
#endif
  auto row = [&](int64_t it) {
    const int64_t t = it / NH, h = it % NH, g = h / group;
    const KVSpan& sp = spans[seq_of[t]];
    const E* k = static_cast<const E*>(sp.k) + g * sp.head_stride;
    const E* v = static_cast<const E*>(sp.v) + g * sp.head_stride;
#ifdef HC_HAVE_AVX2_TU
    if (simd)
      return avx2::attention_row(out + it * HD, q + it * HD, k, v, sp.blocks, sp.block_stride, sp.token_stride,
                                 sp.block_size, first_of(t), npos[t], HD, scale);
#endif
    attention_row(out + it * HD, q + it * HD, k, v, sp.blocks, sp.block_stride, sp.token_stride, sp.block_size,
                  first_of(t), npos[t], HD, scale);
  };
#ifdef HC_HAVE_AVX512_TU
  // AVX-512: a prompt's runs of at least kMinTileRun tokens of one sequence at consecutive
  // positions through the tile kernel, every other token through the decode kernel (a GQA
  // group's heads at once); a head size neither has an instance for stays on the row kernels.
  if (kernel_level() >= KernelLevel::Avx512) {
    const bool tiles = T >= kMinTileRun && avx512::attention_tile_supports(HD);
    const bool decode = avx512::attention_decode_supports(HD);
    if (tiles || decode)
      return attention_avx512<E>(out, q, spans, seq_of, npos, T, NH, NKV, HD, scale, first_of, work, tiles, decode, row,
                              pool);
  }
#endif
  if (work < 65536 || pool.size() == 1) {  // a decode step of a small model: not worth a wake-up
    for (int64_t it = 0; it < items; it++) row(it);
    return;
  }
  // Rows differ in cost (causal: later queries see more keys), so ranks take small
  // chunks from a shared counter instead of fixed ranges, heaviest (last) rows first.
  std::atomic<int64_t> next{0};
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(NH, items / (pool.size() * 16)));
  pool.run([&](int, int) {
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= items) return;
      const int64_t e = std::min(items, b + chunk);
      for (int64_t it = b; it < e; it++) row(items - 1 - it);
    }
  });
}

void attention_forward(float* out, const float* q, const KVSpan* spans, const int32_t* seq_of,
                       const int32_t* npos, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t window,
                       ThreadPool& pool) {
  if (window < 0) throw Error("bad_shape", "attention: window must be >= 0");
  if (HD > kMaxHD) throw Error("unsupported", "head_dim above 1024 is not supported");
  if (NKV <= 0 || NH % NKV != 0) throw Error("bad_shape", "attention: NH must be a multiple of NKV");
  if (T <= 0) return;
  const DType dt = spans[seq_of[0]].dtype;
  with_kv_elem(dt, [&](auto e) {
    attention_paged<decltype(e)>(out, q, spans, seq_of, npos, T, NH, NKV, HD, window, pool);
  });
}

// ---- training: one whole sequence at positions 0..T-1 -------------------------------
// Per query head, the score matrix goes through the blocked GEMM (scores, P·V and the
// four backward products), so training attention runs at GEMM speed. Queries go in
// blocks of kRowBlock rows, each against keys [lo, end of block) only, lo being the first
// key the block's first row sees (0 without a window): the masked triangles cost at most
// one block's width instead of the whole matrix, and a window keeps the cost linear in T.

static constexpr int64_t kRowBlock = 64;

static void check_train_shapes(int64_t NH, int64_t NKV, int64_t window) {
  if (NKV <= 0 || NH % NKV != 0) throw Error("bad_shape", "attention: NH must be a multiple of NKV");
  if (window < 0) throw Error("bad_shape", "attention: window must be >= 0");
}

// First key row i sees.
static int64_t first_key(int64_t i, int64_t window) { return window > 0 ? std::max<int64_t>(0, i - window + 1) : 0; }

void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t T,
                             int64_t NH, int64_t NKV, int64_t HD, int64_t window, ThreadPool& pool) {
  check_train_shapes(NH, NKV, window);
  if (T <= 0) return;
  const int64_t group = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  std::vector<float> P(static_cast<size_t>(std::min(T, kRowBlock) * T));
  for (int64_t h = 0; h < NH; h++) {
    const int64_t g = h / group;
    for (int64_t i0 = 0; i0 < T; i0 += kRowBlock) {
      // keys [lo, lo + n): from the block's first row's first key to its last row
      const int64_t rows = std::min(kRowBlock, T - i0), lo = first_key(i0, window), n = i0 + rows - lo;
      sgemm(false, true, rows, n, HD, scale, q + (i0 * NH + h) * HD, NH * HD, k + (lo * NKV + g) * HD, NKV * HD, 0.0f,
            P.data(), n, pool);
      pool.parallel_for(rows, std::max<int64_t>(1, 16384 / n), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++) {
          const int64_t i = i0 + r, a = first_key(i, window) - lo, z = i - lo;  // visible: [a, z]
          float* row = P.data() + r * n;
          float m = -INFINITY;
          for (int64_t j = a; j <= z; j++) m = std::max(m, row[j]);
          float l = 0.0f;
          for (int64_t j = a; j <= z; j++) l += row[j] = std::exp(row[j] - m);
          const float inv = 1.0f / l;
          for (int64_t j = a; j <= z; j++) row[j] *= inv;
          for (int64_t j = 0; j < a; j++) row[j] = 0.0f;
          for (int64_t j = z + 1; j < n; j++) row[j] = 0.0f;
          lse[i * NH + h] = m + std::log(l);
        }
      });
      sgemm(false, false, rows, HD, n, 1.0f, P.data(), n, v + (lo * NKV + g) * HD, NKV * HD, 0.0f,
            out + (i0 * NH + h) * HD, NH * HD, pool);
    }
  }
}

// With P = softmax(scale·Q·Kᵀ) (rebuilt from the saved logsumexp) and dP = dO·Vᵀ:
//   dS = P∘(dP − D), D_i = Σ_j P_ij·dP_ij (= dO_i·O_i);
//   dQ = scale·dS·K,  dK += scale·dSᵀ·Q,  dV += Pᵀ·dO  (sums over the heads of a kv group).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* lse, int64_t T, int64_t NH, int64_t NKV, int64_t HD,
                        int64_t window, ThreadPool& pool) {
  check_train_shapes(NH, NKV, window);
  if (T <= 0) return;
  const int64_t group = NH / NKV;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  const size_t blk = static_cast<size_t>(std::min(T, kRowBlock) * T);
  std::vector<float> P(blk), dS(blk);
  // every block adds into dk, dv rows [lo, lo+n): start from zero
  std::fill(dk, dk + T * NKV * HD, 0.0f);
  std::fill(dv, dv + T * NKV * HD, 0.0f);
  for (int64_t h = 0; h < NH; h++) {
    const int64_t g = h / group;
    for (int64_t i0 = 0; i0 < T; i0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, T - i0), lo = first_key(i0, window), n = i0 + rows - lo;
      const float* qb = q + (i0 * NH + h) * HD;
      const float* db = dout + (i0 * NH + h) * HD;
      const float* kb = k + (lo * NKV + g) * HD;
      sgemm(false, true, rows, n, HD, scale, qb, NH * HD, kb, NKV * HD, 0.0f, P.data(), n, pool);
      sgemm(false, true, rows, n, HD, 1.0f, db, NH * HD, v + (lo * NKV + g) * HD, NKV * HD, 0.0f, dS.data(), n, pool);
      pool.parallel_for(rows, std::max<int64_t>(1, 16384 / n), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++) {
          const int64_t i = i0 + r, a = first_key(i, window) - lo, z = i - lo;
          float* p = P.data() + r * n;
          float* ds = dS.data() + r * n;
          const float l = lse[i * NH + h];
          float D = 0.0f;
          for (int64_t j = a; j <= z; j++) {
            p[j] = std::exp(p[j] - l);
            D += p[j] * ds[j];
          }
          for (int64_t j = a; j <= z; j++) ds[j] = p[j] * (ds[j] - D);
          for (int64_t j = 0; j < a; j++) p[j] = ds[j] = 0.0f;
          for (int64_t j = z + 1; j < n; j++) p[j] = ds[j] = 0.0f;
        }
      });
      sgemm(false, false, rows, HD, n, scale, dS.data(), n, kb, NKV * HD, 0.0f, dq + (i0 * NH + h) * HD, NH * HD,
            pool);
      sgemm(true, false, n, HD, rows, scale, dS.data(), n, qb, NH * HD, 1.0f, dk + (lo * NKV + g) * HD, NKV * HD,
            pool);
      sgemm(true, false, n, HD, rows, 1.0f, P.data(), n, db, NH * HD, 1.0f, dv + (lo * NKV + g) * HD, NKV * HD,
            pool);
    }
  }
}

}  // namespace hc::cpu
