// In-process ranks: one Communicator per thread, all sharing one ThreadGroup, so a
// collective is a few barriers around plain loads and stores of the other ranks' buffers.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "dist/communicator.h"

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
// The group behind a communicator made above (nullptr for other kinds), to abort it.
ThreadGroup* thread_group_of(Communicator& c);

// One rank's part of a group run (run_on_ranks, or a launcher with threads of its own):
// f(rank); if it throws, the error is kept in `err` and the rank's group aborted, so the
// other ranks' collectives fail instead of waiting forever.
void run_guarded(Communicator& comm, std::exception_ptr& err, int rank, const std::function<void(int)>& f);
// The error a group run reports: the first real failure, not another rank's "comm_aborted"
// echo of it; null when no rank failed.
std::exception_ptr first_failure(const std::vector<std::exception_ptr>& errs);

// Runs f(rank) on one thread per communicator and waits for all. A rank that throws aborts
// the group (the others' collectives fail instead of waiting forever); the first real failure,
// not another rank's "comm_aborted" echo, is rethrown. An aborted group stays aborted.
void run_on_ranks(std::vector<std::unique_ptr<Communicator>>& comms, const std::function<void(int)>& f);

}  // namespace hc::dist
