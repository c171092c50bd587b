#include "kvcache.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "errors.h"

namespace hc {

KVCache::KVCache(int64_t L, int64_t NKV, int64_t HD, int64_t block_size, int64_t blocks, int64_t horizon,
                 bool host_storage, int64_t elem_bytes)
    : L_(L), NKV_(NKV), HD_(HD), bs_(block_size), nblocks_(blocks), horizon_(horizon), esize_(elem_bytes) {
  if (block_size < 1 || blocks < 1) throw Error("bad_options", "kvBlockSize and kvBlocks must be >= 1");
  if (blocks > INT32_MAX) throw Error("bad_options", "kvBlocks too large");
  free_.reserve(static_cast<size_t>(blocks));
  // lowest ids handed out first (popped from the back)
  for (int64_t b = blocks - 1; b >= 0; b--) free_.push_back(static_cast<int32_t>(b));
  if (!host_storage) return;
  const size_t n = static_cast<size_t>(blocks) * static_cast<size_t>(block_stride()) * static_cast<size_t>(esize_);
  // malloc, not new[]: pages stay untouched (and unbacked) until a block is used
  k_ = static_cast<char*>(std::malloc(n));
  v_ = static_cast<char*>(std::malloc(n));
  if (!k_ || !v_) {
    std::free(k_);
    std::free(v_);
    throw Error("out_of_memory", "cannot allocate a KV cache of " + std::to_string(2 * n) + " bytes");
  }
}

KVCache::~KVCache() {
  std::free(k_);
  std::free(v_);
}

KVCache::Reservation KVCache::reserve(const int32_t* seq_ids, const int32_t* counts, int64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  int64_t need = 0;
  std::vector<int64_t> start(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; s++) {
    auto it = seqs_.find(seq_ids[s]);
    const int64_t len = it == seqs_.end() ? 0 : it->second.len;
    const int64_t have = it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size());
    const int64_t want = (len + counts[s] + bs_ - 1) / bs_;
    if (want > have) need += want - have;
    start[s] = len;
  }
  if (need > static_cast<int64_t>(free_.size()))
    throw Error("kv_full", "KV cache full: this step needs " + std::to_string(need) + " more blocks of " +
                               std::to_string(bs_) + " tokens, " + std::to_string(free_.size()) + " are free");
  Reservation r;
  r.tables.resize(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; s++) {
    Seq& q = seqs_[seq_ids[s]];
    const size_t want = static_cast<size_t>((start[s] + counts[s] + bs_ - 1) / bs_);
    while (q.blocks.size() < want) {
      q.blocks.push_back(free_.back());
      free_.pop_back();
    }
    r.tables[s] = q.blocks;
  }
  r.start = std::move(start);
  return r;
}

void KVCache::begin_step() {
  std::lock_guard<std::mutex> lk(mu_);
  in_step_ = true;
  freed_in_step_.clear();
}

void KVCache::abort_step() {
  std::lock_guard<std::mutex> lk(mu_);
  end_step_locked();
}

void KVCache::end_step_locked() {
  for (int32_t id : freed_in_step_) free_locked(id);
  freed_in_step_.clear();
  in_step_ = false;
}

void KVCache::commit(const int32_t* seq_ids, const int32_t* counts, int64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  for (int64_t s = 0; s < n; s++) {
    auto it = seqs_.find(seq_ids[s]);
    if (it == seqs_.end()) continue;
    it->second.len += counts[s];
    release_behind(it->second);
  }
  end_step_locked();
}

// The next query sits at position len and sees keys from len − horizon + 1 on: every
// block wholly before that is never read again.
void KVCache::release_behind(Seq& q) {
  if (horizon_ <= 0) return;
  const int64_t dead = std::min<int64_t>((q.len - horizon_ + 1) / bs_, static_cast<int64_t>(q.blocks.size()));
  for (int64_t b = 0; b < dead; b++) {
    int32_t& id = q.blocks[static_cast<size_t>(b)];
    if (id == kReleased) continue;
    free_.push_back(id);
    id = kReleased;
  }
}

void KVCache::trim(Seq& q) {
  const size_t keep = static_cast<size_t>((q.len + bs_ - 1) / bs_);
  while (q.blocks.size() > keep) {
    if (q.blocks.back() != kReleased) free_.push_back(q.blocks.back());
    q.blocks.pop_back();
  }
}

void KVCache::rollback(const int32_t* seq_ids, int64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  for (int64_t s = 0; s < n; s++) {
    auto it = seqs_.find(seq_ids[s]);
    if (it == seqs_.end()) continue;
    trim(it->second);
    if (it->second.len == 0) seqs_.erase(it);
  }
  end_step_locked();
}

int64_t KVCache::length(int32_t seq) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.len;
}

void KVCache::free_seq(int32_t seq) {
  std::lock_guard<std::mutex> lk(mu_);
  free_locked(seq);
  if (in_step_) freed_in_step_.push_back(seq);
}

void KVCache::free_locked(int32_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int32_t b : it->second.blocks)
    if (b != kReleased) free_.push_back(b);
  seqs_.erase(it);
}

KvStatsValue KVCache::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return {bs_, nblocks_, static_cast<int64_t>(free_.size()), static_cast<int64_t>(seqs_.size())};
}

}  // namespace hc
