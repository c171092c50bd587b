// In-process ranks: one Communicator per thread, all sharing one ThreadGroup, so a
// collective is a few barriers around plain loads and stores of the other ranks' buffers;
// and RankLauncher, the one way such ranks are run (tensor parallelism, data-parallel
// groups, commRun), on a pool of threads that lives as long as the group.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "dist/communicator.h"
#include "threadpool.h"

namespace hc::dist {

// What the ranks of one group share: each rank's published buffers and a reusable barrier.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size);
  int size() const { return size_; }

  // Waits until every rank has arrived; the generation counter makes it reusable at once.
  // Throws Error("comm_aborted") once abort() was called, so one failing rank cannot leave
  // the others waiting forever.
  void arrive_and_wait();
  void abort();

  struct Slot {
    const void* send = nullptr;
    void* recv = nullptr;
    int64_t count = 0;
    int dtype = 0;
    int root = 0;
    std::vector<unsigned char> scratch;  // all_reduce: this rank's reduced shard
  };
  Slot& slot(int rank) { return slots_[static_cast<size_t>(rank)]; }

 private:
  const int size_;
  std::vector<Slot> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

// Communicators for ranks 0..size-1 of a fresh group; hand one to each thread.
std::vector<std::unique_ptr<Communicator>> make_thread_communicators(int size);

// A group of `ranks` in-process ranks and the threads that run them: a ThreadPool with one
// thread per rank (the calling thread is rank 0, the others persist between runs, spinning
// briefly and then sleeping) and a Communicator per rank (threads, or NCCL for device ranks). run(f) runs f(rank) on every
// rank and returns when all have finished. A rank that throws aborts the group, so the
// others' collectives fail instead of waiting forever; the first real failure (not another
// rank's "comm_aborted" echo of it) is rethrown and the communicators are made afresh, so
// the next run starts clean. Runs are serialised: one at a time per launcher.
// Makes one communicator per rank; given the launcher's threads for makers that must
// join on every rank's thread at once (NCCL, dist/nccl_devices.h).
using CommMaker = std::function<std::vector<std::unique_ptr<Communicator>>(ThreadPool& rank_threads)>;

class RankLauncher {
 public:
  // `make` null: thread communicators (CPU ranks)
  explicit RankLauncher(int ranks, CommMaker make = nullptr);
  RankLauncher(const RankLauncher&) = delete;
  RankLauncher& operator=(const RankLauncher&) = delete;

  int size() const { return pool_.size(); }
  // Rank r's communicator, for f(r) to use during a run.
  Communicator& comm(int rank) { return *comms_[static_cast<size_t>(rank)]; }
  void run(const std::function<void(int rank)>& f);

 private:
  ThreadPool pool_;
  CommMaker make_;
  std::vector<std::unique_ptr<Communicator>> comms_;
  std::mutex run_mu_;
};

}  // namespace hc::dist
