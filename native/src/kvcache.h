// Paged KV cache: a pool of fixed-size blocks shared by all sequences, each sequence
// holding a table of block ids (vLLM's PagedAttention layout on CPU). Elements are
// `elem_bytes` wide: 4 (f32) or 2 (a bf16 / f16 pool: cpu/kv_elem.h).
// One block stores K (and separately V) as [L][NKV][blockSize][HD], so the keys of
// one head inside a block are contiguous for the attention loop.
//
// Thread safety: the block tables are guarded by a mutex held only briefly, so the
// JS thread can read stats or free sequences while a forward computes. A forward
// works on a snapshot of its tables (reserve → compute → commit).
#pragma once
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace hc {

struct KvStatsValue {
  int64_t block_size, total_blocks, free_blocks, sequences;
};

class KVCache {
 public:
  // horizon > 0: no query will ever look further back than `horizon` keys (every layer
  // has a sliding window, the widest being `horizon`), so a committed step returns the
  // blocks that fell out of it to the pool; their table entries become kReleased.
  // host_storage false: only the block tables live here, the pool itself on a device
  // (exec_cuda.cc); k() and v() are then null.
  KVCache(int64_t L, int64_t NKV, int64_t HD, int64_t block_size, int64_t blocks, int64_t horizon = 0,
          bool host_storage = true, int64_t elem_bytes = 4);
  static constexpr int32_t kReleased = -1;
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  // A forward step was queued (called on the JS thread before the step runs): until it
  // ends, free_seq also remembers the id, so a sequence freed before or while the step
  // runs is freed again when the step ends instead of being re-created by it.
  void begin_step();
  // The step failed before reserving anything.
  void abort_step();

  struct Reservation {
    std::vector<int64_t> start;                // tokens each sequence held before this step
    std::vector<std::vector<int32_t>> tables;  // block tables covering start + count tokens
  };
  // Makes room for counts[s] more tokens in each sequence (new ids start empty).
  // Checks the whole batch first: on "kv_full" nothing has changed.
  Reservation reserve(const int32_t* seq_ids, const int32_t* counts, int64_t n);
  // The step's tokens are now in the cache: lengths grow. Sequences freed meanwhile stay freed.
  void commit(const int32_t* seq_ids, const int32_t* counts, int64_t n);
  // The step failed: give back blocks beyond each sequence's committed length.
  void rollback(const int32_t* seq_ids, int64_t n);

  int64_t length(int32_t seq) const;
  void free_seq(int32_t seq);
  KvStatsValue stats() const;

  // Pool geometry for the kernels (strides in elements): the host pool's K and V from
  // element `at` on (a tensor-parallel rank's first KV head).
  void* k(int64_t at = 0) const { return k_ ? k_ + at * esize_ : nullptr; }
  void* v(int64_t at = 0) const { return v_ ? v_ + at * esize_ : nullptr; }
  int64_t block_size() const { return bs_; }
  int64_t block_stride() const { return L_ * layer_stride(); }
  int64_t layer_stride() const { return NKV_ * head_stride(); }
  int64_t head_stride() const { return bs_ * HD_; }
  int64_t token_stride() const { return HD_; }

 private:
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t len = 0;
  };
  void trim(Seq& s);
  void end_step_locked();
  void free_locked(int32_t seq);
  void release_behind(Seq& s);
  int64_t L_, NKV_, HD_, bs_, nblocks_, horizon_, esize_;
  char* k_ = nullptr;
  char* v_ = nullptr;
  std::vector<int32_t> free_;
  std::unordered_map<int32_t, Seq> seqs_;
  bool in_step_ = false;
  std::vector<int32_t> freed_in_step_;
  mutable std::mutex mu_;
};

}  // namespace hc
