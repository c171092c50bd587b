// The CUDA Exec: every op through the CUDA library's device-pointer API (hc_cuda_dev_*,
// cuda/resident.cu) on memory resident on one device: weights uploaded once in their
// checkpoint dtype, the KV block pool, the step's scratch. Ops queue on the device's
// forward stream (cuda/graph.cu); read() (the logits) is the step's one synchronisation.
// With graphs on, a decode step of a known shape is one graph launch (run_step): the
// kernels and their arguments as captured on the shape's second step, the step's inputs
// copied into the same fixed buffers first. Any buffer a graph holds that is freed or
// reallocated drops every graph (invalidate()); each is captured again when next met.
#include <array>
#include <cstring>
#include <map>
#include <vector>
#include <iterator>
#include <unordered_map>

#include "cuda_library.h"
#include "errors.h"
#include "exec.h"

namespace hc {

namespace {

const CudaLibrary& lib() { return cuda_library(); }

// Device memory, freed with its owner.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t bytes) : bytes_(bytes) { cuda_call(lib().hc_cuda_malloc(&p_, static_cast<size_t>(bytes))); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_), std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() {
    if (p_) lib().hc_cuda_free(p_);
  }
  void* get() const { return p_; }
  int64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

// HC_CUDA_* share hc::DType's values. The device GEMM dequantizes q8_0/q4_0/q4_k blocks
// while loading its tiles (gemm.cuh); q6_k (GGUF files) has no CUDA kernel.
int dev_dtype(DType t) {
  if (t == DType::Q6_K)
    throw Error("unsupported_dtype", "q6_k weights have no CUDA kernel: serve this checkpoint with --device cpu");
  return static_cast<int>(t);
}
// the embedding's gather reads element types only
int dev_table_dtype(DType t) {
  if (is_quantized(t))
    throw Error("unsupported_dtype", std::string("a ") + dtype_name(t) + " embedding table has no CUDA kernel: serve this checkpoint with --device cpu");
  return static_cast<int>(t);
}

// Thrown by an allocation or upload asked for while a graph is being captured (the driver
// refuses both there): the capture is dropped and the step runs eagerly.
struct NotCapturable {};

class CudaExec final : public Exec {
 public:
  CudaExec(int device, const KvGeometry& kv, bool graphs) : device_(device), kv_(kv), graphs_on_(graphs) {
    cuda_require_usable();
    if (device < 0 || device >= lib().devices)
      throw Error("backend_unavailable", "CUDA device " + std::to_string(device) + " does not exist (" +
                                             std::to_string(lib().devices) + " present)");
    bind();
    train_ = make_cuda_train_ops();
    if (kv.dtype != DType::F32 && kv.dtype != DType::BF16)
      throw Error("unsupported", std::string("a ") + dtype_name(kv.dtype) + " KV pool: f32 or bf16");
    const int64_t pool = dtype_bytes(kv.dtype, kv.layers * kv.layer_stride * kv.blocks);
    k_ = DeviceBuffer(pool);
    v_ = DeviceBuffer(pool);
  }
  ~CudaExec() override { invalidate(); }
  const char* device() const override { return "cuda"; }
  std::string device_name() const override { return lib().device_name; }
  void bind() override { cuda_call(lib().hc_cuda_set_device(device_)); }

  float* scratch(Slot s, int64_t n) override { return static_cast<float*>(grow(f_[static_cast<size_t>(s)], n * 4)); }
  // Outside any capture: the copies are plain uploads, ordered before the graph launch.
  const int32_t* ints(ISlot s, const int32_t* host, int64_t n) override {
    void* d = grow(i_[static_cast<size_t>(s)], n * 4);
    cuda_call(lib().hc_cuda_upload(d, host, static_cast<size_t>(n) * 4));
    return static_cast<const int32_t*>(d);
  }
  const void* weight(const void* host, int64_t bytes, bool mut) override {
    if (!host) return nullptr;
    auto it = weights_.find(host);
    if (it != weights_.end() && it->second.buf.bytes() == bytes) return it->second.buf.get();
    if (capturing_) throw NotCapturable{};
    Resident& r = weights_[host];
    if (r.buf.bytes() != bytes) {
      if (r.buf.get()) invalidate();  // a graph may hold the old copy
      r.buf = DeviceBuffer(bytes);
    }
    cuda_call(lib().hc_cuda_upload(r.buf.get(), host, static_cast<size_t>(bytes)));
    moved_ += bytes;
    r.mut = mut;
    return r.buf.get();
  }
  // the mutable copies are dropped (their host arrays may be gone or rewritten) and
  // uploaded again when next read; the mapped checkpoint tensors stay
  void weights_changed() override {
    invalidate();
    for (auto it = weights_.begin(); it != weights_.end();)
      it = it->second.mut && !it->second.pinned ? weights_.erase(it) : std::next(it);
    for (auto it = views_.begin(); it != views_.end();) it = it->second.mut ? views_.erase(it) : std::next(it);
  }
  void* kv_k(int64_t l) override { return static_cast<char*>(k_.get()) + dtype_bytes(kv_.dtype, l * kv_.layer_stride); }
  void* kv_v(int64_t l) override { return static_cast<char*>(v_.get()) + dtype_bytes(kv_.dtype, l * kv_.layer_stride); }

  void linear(float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M, int64_t N,
              int64_t K, const cpu::RepackedWeight*) override {
    cuda_call(lib().hc_cuda_dev_gemm(out, x, w, dev_dtype(dt), bias, M, N, K, K, K, N, 0, 1, 1.0f, 0.0f));
  }
  void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    cuda_call(lib().hc_cuda_dev_gemm(C, A, B, HC_CUDA_F32, nullptr, M, N, K, lda, ldb, ldc, ta, tb, alpha, beta));
  }
  void rmsnorm(float* out, const float* x, const float* w, int64_t M, int64_t C, float eps) override {
    cuda_call(lib().hc_cuda_dev_rmsnorm(out, x, w, M, C, eps));
  }
  void rope_tables(float* cos_t, float* sin_t, const int32_t* pos, const float* inv_freq, int64_t T, int64_t half,
                   float scaling) override {
    cuda_call(lib().hc_cuda_dev_rope_tables(cos_t, sin_t, pos, inv_freq, T, half, scaling));
  }
  void rope(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) override {
    cuda_call(lib().hc_cuda_dev_rope(x, cos_t, sin_t, T, H, HD));
  }
  void rope_qk(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH, int64_t NKV,
               int64_t HD) override {
    cuda_call(lib().hc_cuda_dev_rope_qk(q, k, cos_t, sin_t, T, NH, NKV, HD));
  }
  void residual_rmsnorm(float* x, float* out, const float* b, const float* w, int64_t M, int64_t C,
                        float eps) override {
    cuda_call(lib().hc_cuda_dev_residual_rmsnorm(x, out, b, w, M, C, eps));
  }
  void embedding(float* out, const int32_t* tokens, const void* table, DType dt, int64_t T, int64_t C) override {
    cuda_call(lib().hc_cuda_dev_embedding(out, tokens, table, dev_table_dtype(dt), T, C));
  }
  void residual(float* out, const float* a, const float* b, int64_t N) override {
    cuda_call(lib().hc_cuda_dev_residual(out, a, b, N));
  }
  void swiglu(float* out, const float* gate, const float* up, int64_t N) override {
    cuda_call(lib().hc_cuda_dev_swiglu(out, gate, up, N));
  }
  void kv_write(void* kp, void* vp, const float* k, const float* v, const int32_t* tables, int64_t max_blocks,
                const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV, int64_t HD,
                const KvGeometry& g) override {
    cuda_call(lib().hc_cuda_dev_kv_write(kp, vp, k, v, tables, max_blocks, seq_of, pos, T, NKV, HD, g.block_stride,
                                         g.head_stride, g.block_size, static_cast<int>(g.dtype)));
  }
  // A decode step (one query per sequence) splits long contexts over more blocks
  // (flash-decoding): the split count from the context bound (the tables' width, or the
  // window) and the device's multiprocessors, the partial rows in Slot::AttnPart.
  void paged_attention(float* out, const float* q, const void* kp, const void* vp, const int32_t* tables,
                       int64_t max_blocks, int64_t nseq, const int32_t* seq_of, const int32_t* npos, int64_t T,
                       int64_t NH, int64_t NKV, int64_t HD, const KvGeometry& g, int64_t window) override {
    int splits = 1;
    if (T <= nseq) {
      const int64_t ctx = max_blocks * g.block_size;
      cuda_call(lib().hc_cuda_attention_splits(T * NH, window > 0 && window < ctx ? window : ctx, &splits));
    }
    float* part = splits > 1 ? scratch(Slot::AttnPart, T * NH * splits * (HD + 2)) : nullptr;
    cuda_call(lib().hc_cuda_dev_paged_attention(out, q, kp, vp, tables, max_blocks, seq_of, npos, T, NH, NKV, HD,
                                                g.block_stride, g.head_stride, g.block_size, window,
                                                static_cast<int>(g.dtype), nseq, splits, part));
  }
  void gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C) override {
    cuda_call(lib().hc_cuda_dev_gather_rows(out, x, rows, R, C));
  }
  bool graphs() const override { return graphs_on_; }
  void run_step(const std::string& key, const std::function<void()>& step) override {
    if (!graphs_on_ || key.empty()) return Exec::run_step(key, step);
    // the library freed a buffer of its own that graphs may use (cuBLASLt's rounding buffer)
    if (const int64_t e = lib().hc_cuda_graph_buffers_epoch(); e != epoch_) invalidate(), epoch_ = e;
    Graph& g = graphs_[key];
    if (!g.exec && g.seen && !g.failed) capture(g, step);
    if (!g.exec) {  // the shape's first step (it sizes every buffer), or one that could not be captured
      g.seen = true;
      return Exec::run_step(key, step);
    }
    cuda_call(lib().hc_cuda_graph_launch(g.exec));
    counts_.graph_replays++;
  }
  const cpu::LoraEntry* lora_table(const cpu::LoraEntry* host, int64_t n) override {
    const int64_t bytes = n * static_cast<int64_t>(sizeof(cpu::LoraEntry));
    void* d = grow(lora_table_, bytes);
    cuda_call(lib().hc_cuda_upload(d, host, static_cast<size_t>(bytes)));
    return static_cast<const cpu::LoraEntry*>(d);
  }
  void lora(float* out, const float* x, const cpu::LoraEntry* entries, const int32_t* slot, float* u, int64_t T,
            int64_t N, int64_t K, int64_t max_rank) override {
    cuda_call(lib().hc_cuda_dev_lora(out, x, entries, slot, u, T, N, K, max_rank));
  }
  void read(float* host, const float* buf, int64_t n) override {
    cuda_call(lib().hc_cuda_download(host, buf, static_cast<size_t>(n) * sizeof(float)));
  }
  View weight_columns(const void* host, DType dt, int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                      bool mut) override {
    const int64_t row_bytes = dtype_bytes(dt, cols), off = dtype_bytes(dt, c0), len = dtype_bytes(dt, c1 - c0);
    Resident& r = views_[{host, c0}];
    if (r.buf.bytes() != rows * len) {
      std::vector<char> packed(static_cast<size_t>(rows * len));
      for (int64_t i = 0; i < rows; i++)
        std::memcpy(packed.data() + i * len, static_cast<const char*>(host) + i * row_bytes + off, static_cast<size_t>(len));
      r.buf = DeviceBuffer(rows * len);
      cuda_call(lib().hc_cuda_upload(r.buf.get(), packed.data(), packed.size()));
      moved_ += rows * len;
      r.mut = mut;
    }
    return {r.buf.get(), c1 - c0};
  }
  void linear_ld(float* out, const float* x, const void* w, DType dt, int64_t ldw, const float* bias, int64_t M,
                 int64_t N, int64_t K) override {
    cuda_call(lib().hc_cuda_dev_gemm(out, x, w, dev_dtype(dt), bias, M, N, K, K, ldw, N, 0, 1, 1.0f, 0.0f));
  }

  TrainOps& train() override { return *train_; }
  float* pin(float* host, int64_t n) override {
    float* d = static_cast<float*>(const_cast<void*>(weight(host, n * 4, true)));
    weights_[host].pinned = true;
    return d;
  }
  void unpin(const float* host) override {
    if (auto it = weights_.find(host); it != weights_.end()) it->second.pinned = false;
  }
  void pull(float* host, int64_t n) override {
    auto it = weights_.find(host);
    if (it == weights_.end()) return;  // not resident: the host copy is the only one
    cuda_call(lib().hc_cuda_download(host, it->second.buf.get(), static_cast<size_t>(n) * 4));
    moved_ += n * 4;
  }
  void push(const float* host, int64_t n) override {
    auto it = weights_.find(host);
    if (it == weights_.end() || it->second.buf.bytes() != n * 4) return;  // uploaded when next read
    cuda_call(lib().hc_cuda_upload(it->second.buf.get(), host, static_cast<size_t>(n) * 4));
    moved_ += n * 4;
  }
  int64_t weight_bytes_moved() const override { return moved_; }

 private:
  struct Graph {
    void* exec = nullptr;
    bool seen = false, failed = false;
  };
  // Records `step` as g's graph; on anything not capturable the capture is dropped and g
  // marked (it then runs eagerly until the next invalidate()).
  void capture(Graph& g, const std::function<void()>& step) {
    cuda_call(lib().hc_cuda_graph_begin());
    capturing_ = true;
    bool ok = true;
    try {
      step();
    } catch (...) {
      ok = false;
    }
    capturing_ = false;
    void* exec = nullptr;
    if (lib().hc_cuda_graph_end(&exec) != 0 || !ok) {
      if (exec) lib().hc_cuda_graph_destroy(exec);
      g.failed = true;
      return;
    }
    g.exec = exec;
    counts_.graph_captures++;
  }
  // every graph holds buffer addresses: dropped when one of those may go
  void invalidate() {
    for (auto& [key, g] : graphs_)
      if (g.exec) lib().hc_cuda_graph_destroy(g.exec);
    graphs_.clear();
  }
  struct Resident {
    DeviceBuffer buf;
    bool mut = false;
    bool pinned = false;  // a trainable tensor, updated in place on the device (pin())
  };
  void* grow(DeviceBuffer& b, int64_t bytes) {
    if (b.bytes() < bytes) {
      if (capturing_) throw NotCapturable{};
      invalidate();
      b = DeviceBuffer(bytes);
    }
    return b.get();
  }
  int device_;
  KvGeometry kv_;
  DeviceBuffer k_, v_;
  std::array<DeviceBuffer, static_cast<size_t>(Slot::Count)> f_;
  std::array<DeviceBuffer, static_cast<size_t>(ISlot::Count)> i_;
  DeviceBuffer lora_table_;  // the step's LoRA entries (lora_table())
  std::unordered_map<const void*, Resident> weights_;  // by host address
  std::map<std::pair<const void*, int64_t>, Resident> views_;  // weight_columns' shards, by host address and c0
  int64_t moved_ = 0;  // weight bytes uploaded or pulled back
  std::unique_ptr<TrainOps> train_;
  bool graphs_on_;
  bool capturing_ = false;
  std::map<std::string, Graph> graphs_;  // by step shape (Model::forward's key)
  int64_t epoch_ = 0;                    // hc_cuda_graph_buffers_epoch() when graphs_ was last valid
};

}  // namespace

std::unique_ptr<Exec> make_cuda_exec(int device, const KvGeometry& kv, bool graphs) {
  return std::make_unique<CudaExec>(device, kv, graphs);
}

}  // namespace hc
