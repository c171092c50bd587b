// Collectives between the ranks of one parallel group (data- or tensor-parallel). The
// training and generation code talk to ranks only through this interface; comm_threads.cc
// fills it with in-process ranks on threads (CPU), comm_nccl.cc with NCCL (GPU buffers).
//
// Shards: reduce_scatter_sum and all_gather split `count` elements into size() contiguous
// blocks of ceil(count / size) elements, the last ones shorter or empty (shard_of), so any
// count works, including count < size. Every rank must call the same collective with the
// same count, dtype and root, in the same order.
#pragma once
#include <cstdint>
#include <memory>

#include "dtype.h"

namespace hc::dist {

struct Shard {
  int64_t offset = 0;
  int64_t length = 0;
};

// The block of `count` elements that `rank` owns among `size` ranks.
inline Shard shard_of(int64_t count, int size, int rank) {
  const int64_t block = size > 0 ? (count + size - 1) / size : count;
  const int64_t begin = block * rank < count ? block * rank : count;
  const int64_t end = begin + block < count ? begin + block : count;
  return {begin, end - begin};
}

// Buffers are fp32 (DType::F32) or bf16 bit patterns (DType::BF16); sums of bf16 are
// accumulated in fp32 and rounded once. Calls block until this rank's part is done.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // buf[0, count) <- elementwise sum of every rank's buf.
  virtual void all_reduce_sum(void* buf, int64_t count, DType dt) = 0;
  // recv[0, shard.length) <- sum over ranks of send[shard.offset, +shard.length), where
  // shard = shard_of(count, size, rank). recv may point into send at that shard (in place).
  virtual void reduce_scatter_sum(const void* send, void* recv, int64_t count, DType dt) = 0;
  // recv[0, count) <- every rank's shard, rank r's send[0, shard_of(count, size, r).length)
  // landing at its offset. send may point into recv at this rank's shard (in place).
  virtual void all_gather(const void* send, void* recv, int64_t count, DType dt) = 0;
  // buf[0, count) <- root's buf.
  virtual void broadcast(void* buf, int64_t count, DType dt, int root) = 0;
  virtual void barrier() = 0;
  // Breaks the group: every rank's waiting and later collectives throw "comm_aborted", so
  // one failing rank cannot leave the others waiting forever. The group is then spent.
  virtual void abort() {}
};

}  // namespace hc::dist
