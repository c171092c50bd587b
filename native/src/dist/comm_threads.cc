#include "dist/comm_threads.h"

#include <cstring>
#include <exception>
#include <thread>
#include <string>

#include "errors.h"

namespace hc::dist {

ThreadGroup::ThreadGroup(int size) : size_(size), slots_(static_cast<size_t>(size > 0 ? size : 0)) {
  if (size < 1) throw Error("invalid_argument", "a rank group needs at least one rank");
}

void ThreadGroup::arrive_and_wait() {
  std::unique_lock<std::mutex> lk(mu_);
  if (aborted_) throw Error("comm_aborted", "another rank of this group failed");
  const uint64_t gen = generation_;
  if (++arrived_ == size_) {
    arrived_ = 0;
    generation_++;
    cv_.notify_all();
    return;
  }
  cv_.wait(lk, [&] { return generation_ != gen || aborted_; });
  if (generation_ == gen) throw Error("comm_aborted", "another rank of this group failed");
}

void ThreadGroup::abort() {
  std::lock_guard<std::mutex> lk(mu_);
  aborted_ = true;
  cv_.notify_all();
}

namespace {

size_t elem_size(DType dt) {
  if (dt != DType::F32 && dt != DType::BF16) throw Error("bad_dtype", "collectives take f32 or bf16 buffers");
  return dtype_size(dt);
}

float load(const void* p, int64_t i, DType dt) {
  return dt == DType::F32 ? static_cast<const float*>(p)[i] : bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}
void store(void* p, int64_t i, float v, DType dt) {
  if (dt == DType::F32)
    static_cast<float*>(p)[i] = v;
  else
    static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
}

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size(); }

  void all_reduce_sum(void* buf, int64_t count, DType dt) override {
    const size_t es = elem_size(dt);
    publish(buf, buf, count, dt, 0);
    const Shard s = shard_of(count, size(), rank_);
    // each rank reduces its own shard into its scratch, in rank order (deterministic),
    // then everyone copies every scratch back into its own buffer
    auto& mine = g_->slot(rank_).scratch;
    mine.resize(static_cast<size_t>(s.length) * es);
    sum_ranks(s, mine.data(), dt);
    g_->arrive_and_wait();
    for (int r = 0; r < size(); r++) {
      const Shard sr = shard_of(count, size(), r);
      if (sr.length > 0)
        std::memcpy(static_cast<unsigned char*>(buf) + sr.offset * es, g_->slot(r).scratch.data(), sr.length * es);
    }
    // no closing barrier: the next collective's first barrier keeps a fast rank from
    // overwriting its scratch while a slow one still reads it
  }

  void reduce_scatter_sum(const void* send, void* recv, int64_t count, DType dt) override {
    elem_size(dt);
    publish(send, recv, count, dt, 0);
    sum_ranks(shard_of(count, size(), rank_), recv, dt);
    g_->arrive_and_wait();  // the others have read our send buffer
  }

  void all_gather(const void* send, void* recv, int64_t count, DType dt) override {
    const size_t es = elem_size(dt);
    publish(send, recv, count, dt, 0);
    for (int r = 0; r < size(); r++) {
      const Shard sr = shard_of(count, size(), r);
      unsigned char* dst = static_cast<unsigned char*>(recv) + sr.offset * es;
      const void* src = g_->slot(r).send;
      if (sr.length > 0 && src != dst) std::memmove(dst, src, sr.length * es);
    }
    g_->arrive_and_wait();
  }

  void broadcast(void* buf, int64_t count, DType dt, int root) override {
    const size_t es = elem_size(dt);
    if (root < 0 || root >= size()) throw Error("invalid_argument", "broadcast root " + std::to_string(root) + " is not a rank");
    publish(buf, buf, count, dt, root);
    if (rank_ != root && count > 0) std::memcpy(buf, g_->slot(root).send, count * es);
    g_->arrive_and_wait();
  }

  void barrier() override { g_->arrive_and_wait(); }
  void abort() override { g_->abort(); }

 private:
  // Makes this rank's buffers visible to the others and checks that every rank called
  // the same collective shape; all ranks see the same slots, so all throw together.
  void publish(const void* send, void* recv, int64_t count, DType dt, int root) {
    if (count < 0) throw Error("invalid_argument", "a collective's count must be >= 0");
    ThreadGroup::Slot& s = g_->slot(rank_);
    s.send = send;
    s.recv = recv;
    s.count = count;
    s.dtype = static_cast<int>(dt);
    s.root = root;
    g_->arrive_and_wait();
    for (int r = 0; r < size(); r++) {
      const ThreadGroup::Slot& o = g_->slot(r);
      if (o.count != count || o.dtype != s.dtype || o.root != root)
        throw Error("comm_mismatch", "ranks called a collective with different counts, dtypes or roots");
    }
  }

  // out[0, shard.length) <- sum over ranks of their send[shard], accumulated in fp32.
  void sum_ranks(const Shard& sh, void* out, DType dt) {
    const int n = size();
    for (int64_t i = 0; i < sh.length; i++) {
      float acc = load(g_->slot(0).send, sh.offset + i, dt);
      for (int r = 1; r < n; r++) acc += load(g_->slot(r).send, sh.offset + i, dt);
      store(out, i, acc, dt);
    }
  }

  std::shared_ptr<ThreadGroup> g_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_communicators(int size) {
  auto g = std::make_shared<ThreadGroup>(size);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; r++) out.push_back(std::make_unique<ThreadCommunicator>(g, r));
  return out;
}

namespace {

// f(rank); an exception is kept in `err` and aborts every rank's communicator (NCCL ones
// are separate objects; thread ones share their group).
void run_guarded(std::vector<std::unique_ptr<Communicator>>& comms, std::exception_ptr& err, int rank,
                 const std::function<void(int)>& f) {
  try {
    f(rank);
  } catch (...) {
    err = std::current_exception();
    for (auto& c : comms) c->abort();
  }
}

bool is_abort_echo(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return err.code() == "comm_aborted";
  } catch (...) {
    return false;
  }
}

// The first real failure, not another rank's "comm_aborted" echo of it; null when none failed.
std::exception_ptr first_failure(const std::vector<std::exception_ptr>& errs) {
  std::exception_ptr first;
  for (const auto& e : errs)
    if (e && (!first || (is_abort_echo(first) && !is_abort_echo(e)))) first = e;
  return first;
}

}  // namespace

RankLauncher::RankLauncher(int ranks, CommMaker make)
    : pool_(ranks > 0 ? ranks : throw Error("invalid_argument", "a rank group needs at least one rank")),
      make_(make ? std::move(make) : [](ThreadPool& p) { return make_thread_communicators(p.size()); }),
      comms_(make_(pool_)) {}

void RankLauncher::run(const std::function<void(int)>& f) {
  std::lock_guard<std::mutex> lk(run_mu_);
  const int n = size();
  std::vector<std::exception_ptr> errs(static_cast<size_t>(n));
  if (comms_.empty()) comms_ = make_(pool_);  // remaking them after a failure failed too
  pool_.run([&](int r, int) { run_guarded(comms_, errs[static_cast<size_t>(r)], r, f); });
  const std::exception_ptr first = first_failure(errs);
  if (!first) return;
  comms_.clear();  // an aborted group stays aborted: the next run gets fresh communicators
  comms_ = make_(pool_);
  std::rethrow_exception(first);
}

}  // namespace hc::dist
