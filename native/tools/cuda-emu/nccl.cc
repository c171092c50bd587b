// A stand-in libnccl.so.2 for the host emulator (build.sh builds it beside the emulated
// CUDA library, where native/src/dist/comm_nccl.cc looks first): the C ABI of the NCCL 2.x
// entry points the engine calls, with the ranks of a communicator as threads of this one
// process — as the engine runs them, one thread per device — meeting by their unique id.
// "Device" memory is host memory under the emulator, so a collective is a rendezvous of
// the ranks around plain loads and stores of each other's buffers. Every rank sums in
// rank order in fp32 (bf16 rounded once at the end), so all ranks hold the same bits.
// The stream argument is ignored: emulated launches run to completion when issued, so a
// collective is complete when it returns, and ncclGroupStart/End need not defer anything
// (every rank issues a group's calls in the same order, so running them one by one meets).
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

enum : int { kSuccess = 0, kInvalidArgument = 4, kInvalidUsage = 5, kRemoteError = 6 };
enum : int { kFloat32 = 7, kBfloat16 = 9 };
struct UniqueId {
  char bytes[128];
};

float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f) {  // round to nearest even; NaN kept quiet
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float load(const void* p, size_t i, int dt) {
  return dt == kFloat32 ? static_cast<const float*>(p)[i] : bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}
void store(void* p, size_t i, float v, int dt) {
  if (dt == kFloat32)
    static_cast<float*>(p)[i] = v;
  else
    static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
}

// The ranks of one communicator: what each has published for the collective in progress,
// and a generation-counted barrier that ncclCommAbort breaks.
struct Group {
  explicit Group(int n) : size(n), send(n), recv(n), count(n), root(n) {}
  const int size;
  std::vector<const void*> send;
  std::vector<void*> recv;
  std::vector<size_t> count;
  std::vector<int> root;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0, joined = 0;
  uint64_t generation = 0;
  bool aborted = false;

  // false once the group is aborted (then every waiting and later call fails)
  bool meet() {
    std::unique_lock<std::mutex> lk(mu);
    if (aborted) return false;
    const uint64_t gen = generation;
    if (++arrived == size) {
      arrived = 0, generation++;
      cv.notify_all();
      return true;
    }
    cv.wait(lk, [&] { return generation != gen || aborted; });
    return generation != gen;
  }
  void abort() {
    std::lock_guard<std::mutex> lk(mu);
    aborted = true;
    cv.notify_all();
  }
};

struct Comm {
  std::shared_ptr<Group> g;
  int rank;
};

// communicators being formed, by unique id; removed once every rank has joined
std::mutex g_registry_mu;
std::map<std::string, std::shared_ptr<Group>> g_forming;

size_t elem_bytes(int dt) { return dt == kFloat32 ? 4 : 2; }
bool bad_type(int dt) { return dt != kFloat32 && dt != kBfloat16; }

// Publishes this rank's buffers and waits for the others; checks that all called alike.
int publish(Comm* c, const void* send, void* recv, size_t count, int root) {
  Group& g = *c->g;
  g.send[c->rank] = send, g.recv[c->rank] = recv, g.count[c->rank] = count, g.root[c->rank] = root;
  if (!g.meet()) return kRemoteError;
  for (int r = 0; r < g.size; r++)
    if (g.count[r] != count || g.root[r] != root) return kInvalidUsage;
  return kSuccess;
}

// sum over ranks of their send[off, off + n) into out[0, n), in rank order, fp32
void sum_ranks(const Group& g, size_t off, size_t n, void* out, int dt, std::vector<float>& acc) {
  acc.assign(n, 0.0f);
  for (int r = 0; r < g.size; r++)
    for (size_t i = 0; i < n; i++) acc[i] = r == 0 ? load(g.send[r], off + i, dt) : acc[i] + load(g.send[r], off + i, dt);
  for (size_t i = 0; i < n; i++) store(out, i, acc[i], dt);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int ncclGetVersion(int* v) {
  *v = 22105;  // reports itself as the 2.21.5 whose ABI it follows
  return kSuccess;
}

__attribute__((visibility("default"))) const char* ncclGetErrorString(int r) {
  switch (r) {
    case kSuccess: return "no error";
    case kInvalidArgument: return "invalid argument (emulated NCCL)";
    case kInvalidUsage: return "invalid usage: ranks called a collective with different counts or roots (emulated NCCL)";
    case kRemoteError: return "remote process exited or there was a network error: the communicator was aborted (emulated NCCL)";
    default: return "unhandled error (emulated NCCL)";
  }
}

__attribute__((visibility("default"))) int ncclGetUniqueId(UniqueId* id) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  static uint64_t counter = 0;
  std::lock_guard<std::mutex> lk(mu);
  std::memset(id->bytes, 0, sizeof id->bytes);
  const uint64_t parts[3] = {static_cast<uint64_t>(getpid()), ++counter, rng()};
  std::memcpy(id->bytes, parts, sizeof parts);
  return kSuccess;
}

// Blocks until all nranks ranks have called it with the same id, as NCCL does.
__attribute__((visibility("default"))) int ncclCommInitRank(void** comm, int nranks, UniqueId id, int rank) {
  if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return kInvalidArgument;
  const std::string key(id.bytes, sizeof id.bytes);
  std::shared_ptr<Group> g;
  {
    std::lock_guard<std::mutex> lk(g_registry_mu);
    auto& slot = g_forming[key];
    if (!slot) slot = std::make_shared<Group>(nranks);
    if (slot->size != nranks) return kInvalidUsage;
    g = slot;
    if (++g->joined == nranks) g_forming.erase(key);
  }
  if (!g->meet()) return kRemoteError;
  *comm = new Comm{g, rank};
  return kSuccess;
}

__attribute__((visibility("default"))) int ncclCommDestroy(void* comm) {
  delete static_cast<Comm*>(comm);
  return kSuccess;
}

// Breaks the rendezvous: this rank's and every other rank's waiting or later collectives fail.
// The Comm is not freed (a few bytes per aborted communicator): another thread may still be
// inside a collective on it, since the stand-in's calls block where NCCL's only enqueue.
__attribute__((visibility("default"))) int ncclCommAbort(void* comm) {
  if (comm) static_cast<Comm*>(comm)->g->abort();
  return kSuccess;
}

__attribute__((visibility("default"))) int ncclGroupStart() { return kSuccess; }
__attribute__((visibility("default"))) int ncclGroupEnd() { return kSuccess; }

__attribute__((visibility("default"))) int ncclAllReduce(const void* send, void* recv, size_t count, int dt, int op,
                                                         void* comm, void*) {
  if (bad_type(dt) || op != 0) return kInvalidArgument;
  Comm* c = static_cast<Comm*>(comm);
  if (int rc = publish(c, send, recv, count, 0)) return rc;
  // every rank reduces the whole buffer into private memory, then all write at once
  std::vector<float> acc;
  std::vector<unsigned char> out(count * elem_bytes(dt));
  sum_ranks(*c->g, 0, count, out.data(), dt, acc);
  if (!c->g->meet()) return kRemoteError;  // every rank has read every send buffer
  if (count) std::memcpy(recv, out.data(), out.size());
  return c->g->meet() ? kSuccess : kRemoteError;
}

// recvcount elements per rank: rank r gets the sum of every send[r·recvcount, +recvcount)
__attribute__((visibility("default"))) int ncclReduceScatter(const void* send, void* recv, size_t recvcount, int dt,
                                                             int op, void* comm, void*) {
  if (bad_type(dt) || op != 0) return kInvalidArgument;
  Comm* c = static_cast<Comm*>(comm);
  if (int rc = publish(c, send, recv, recvcount, 0)) return rc;
  std::vector<float> acc;
  std::vector<unsigned char> out(recvcount * elem_bytes(dt));
  sum_ranks(*c->g, static_cast<size_t>(c->rank) * recvcount, recvcount, out.data(), dt, acc);
  if (!c->g->meet()) return kRemoteError;
  if (recvcount) std::memcpy(recv, out.data(), out.size());
  return c->g->meet() ? kSuccess : kRemoteError;
}

// recv[r·sendcount, +sendcount) <- rank r's send, on every rank
__attribute__((visibility("default"))) int ncclAllGather(const void* send, void* recv, size_t sendcount, int dt,
                                                         void* comm, void*) {
  if (bad_type(dt)) return kInvalidArgument;
  Comm* c = static_cast<Comm*>(comm);
  if (int rc = publish(c, send, recv, sendcount, 0)) return rc;
  const size_t b = sendcount * elem_bytes(dt);
  std::vector<unsigned char> out(b * static_cast<size_t>(c->g->size));
  for (int r = 0; r < c->g->size; r++)
    if (b) std::memcpy(out.data() + r * b, c->g->send[r], b);
  if (!c->g->meet()) return kRemoteError;
  if (!out.empty()) std::memcpy(recv, out.data(), out.size());
  return c->g->meet() ? kSuccess : kRemoteError;
}

__attribute__((visibility("default"))) int ncclBroadcast(const void* send, void* recv, size_t count, int dt, int root,
                                                         void* comm, void*) {
  if (bad_type(dt)) return kInvalidArgument;
  Comm* c = static_cast<Comm*>(comm);
  if (root < 0 || root >= c->g->size) return kInvalidArgument;
  if (int rc = publish(c, send, recv, count, root)) return rc;
  const size_t b = count * elem_bytes(dt);
  std::vector<unsigned char> out(static_cast<const unsigned char*>(c->g->send[root]),
                                 static_cast<const unsigned char*>(c->g->send[root]) + (b ? b : 0));
  if (!c->g->meet()) return kRemoteError;
  if (b) std::memcpy(recv, out.data(), b);
  return c->g->meet() ? kSuccess : kRemoteError;
}

// root's recv <- the sum of every rank's send; recv is ignored on the other ranks
__attribute__((visibility("default"))) int ncclReduce(const void* send, void* recv, size_t count, int dt, int op,
                                                      int root, void* comm, void*) {
  if (bad_type(dt) || op != 0) return kInvalidArgument;
  Comm* c = static_cast<Comm*>(comm);
  if (root < 0 || root >= c->g->size) return kInvalidArgument;
  if (int rc = publish(c, send, recv, count, root)) return rc;
  std::vector<float> acc;
  std::vector<unsigned char> out;
  if (c->rank == root) {
    out.resize(count * elem_bytes(dt));
    sum_ranks(*c->g, 0, count, out.data(), dt, acc);
  }
  if (!c->g->meet()) return kRemoteError;
  if (c->rank == root && count) std::memcpy(recv, out.data(), out.size());
  return c->g->meet() ? kSuccess : kRemoteError;
}

}  // extern "C"
