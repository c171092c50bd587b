// The CPU Exec: host memory, the CPU kernels (cpu/ops.h, cpu/matmul.h) on the model's pool.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/kv_elem.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "errors.h"
#include "exec.h"

namespace hc {

namespace {

class CpuExec final : public Exec {
 public:
  CpuExec(ThreadPool& pool, void* k, void* v, const KvGeometry& kv, cpu::MatmulPrecision precision)
      : pool_(pool),
        k_(static_cast<char*>(k)),
        v_(static_cast<char*>(v)),
        kv_(kv),
        precision_(precision),
        train_(make_cpu_train_ops(pool)) {
    cpu::with_kv_elem(kv.dtype, [](auto) {});  // f32, bf16 or f16: anything else refused by name
  }
  const char* device() const override { return "cpu"; }
  std::string device_name() const override { return "cpu"; }

  float* scratch(Slot s, int64_t n) override {
    auto& v = f_[static_cast<size_t>(s)];
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
  }
  const int32_t* ints(ISlot, const int32_t* host, int64_t) override { return host; }
  const void* weight(const void* host, int64_t, bool) override { return host; }
  void weights_changed() override {}
  void* kv_k(int64_t l) override { return k_ + dtype_bytes(kv_.dtype, l * kv_.layer_stride); }
  void* kv_v(int64_t l) override { return v_ + dtype_bytes(kv_.dtype, l * kv_.layer_stride); }

  void linear(float* out, const float* x, const void* w, DType dt, const float* bias, int64_t M, int64_t N,
              int64_t K, const cpu::RepackedWeight* packed) override {
    cpu::matmul(out, x, w, dt, bias, M, N, K, pool_, precision_, false, packed);
  }
  void linears(const LinearOut* outs, int count, const float* x, int64_t M, int64_t K) override {
    mo_.clear();
    for (int i = 0; i < count; i++)
      mo_.push_back({outs[i].out, outs[i].w, outs[i].dt, outs[i].bias, outs[i].N, outs[i].packed});
    cpu::matmul_group(mo_.data(), count, x, M, K, pool_, precision_);
  }
  void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    cpu::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool_);
  }
  void rmsnorm(float* out, const float* x, const float* w, int64_t M, int64_t C, float eps) override {
    cpu::rmsnorm_forward(out, x, w, M, C, eps, pool_);
  }
  void rope_tables(float* cos_t, float* sin_t, const int32_t* pos, const float* inv_freq, int64_t T, int64_t half,
                   float scaling) override {
    cpu::rope_tables(cos_t, sin_t, pos, inv_freq, T, half, scaling);
  }
  void rope(float* x, const float* cos_t, const float* sin_t, int64_t T, int64_t H, int64_t HD) override {
    cpu::rope_forward(x, cos_t, sin_t, T, H, HD, pool_);
  }
  // the CPU twins of the fused device passes: the kernels in sequence (each is already one
  // pass over memory that stays in cache at these sizes)
  void rope_qk(float* q, float* k, const float* cos_t, const float* sin_t, int64_t T, int64_t NH, int64_t NKV,
               int64_t HD) override {
    cpu::rope_forward(q, cos_t, sin_t, T, NH, HD, pool_);
    cpu::rope_forward(k, cos_t, sin_t, T, NKV, HD, pool_);
  }
  void residual_rmsnorm(float* x, float* out, const float* b, const float* w, int64_t M, int64_t C,
                        float eps) override {
    cpu::residual_forward(x, x, b, M * C);
    cpu::rmsnorm_forward(out, x, w, M, C, eps, pool_);
  }
  void embedding(float* out, const int32_t* tokens, const void* table, DType dt, int64_t T, int64_t C) override {
    cpu::embedding_forward(out, tokens, table, dt, T, C);
  }
  void residual(float* out, const float* a, const float* b, int64_t N) override { cpu::residual_forward(out, a, b, N); }
  void swiglu(float* out, const float* gate, const float* up, int64_t N) override {
    cpu::swiglu_forward(out, gate, up, N, pool_);
  }
  void kv_write(void* kpool, void* vpool, const float* k, const float* v, const int32_t* tables, int64_t max_blocks,
                const int32_t* seq_of, const int32_t* pos, int64_t T, int64_t NKV, int64_t HD,
                const KvGeometry& g) override {
    // each row rounded to the pool's type (to nearest even) once here; the kernels widen it back
    char *kp = static_cast<char*>(kpool), *vp = static_cast<char*>(vpool);
    const int64_t KD = NKV * HD;
    for (int64_t t = 0; t < T; t++) {
      const int64_t p = pos[t];
      const int64_t off = static_cast<int64_t>(tables[seq_of[t] * max_blocks + p / g.block_size]) * g.block_stride +
                          (p % g.block_size) * HD;
      for (int64_t h = 0; h < NKV; h++) {
        const int64_t at = dtype_bytes(g.dtype, off + h * g.head_stride);
        cpu::from_f32(kp + at, k + t * KD + h * HD, g.dtype, HD);
        cpu::from_f32(vp + at, v + t * KD + h * HD, g.dtype, HD);
      }
    }
  }
  void paged_attention(float* out, const float* q, const void* kpool, const void* vpool, const int32_t* tables,
                       int64_t max_blocks, int64_t nseq, const int32_t* seq_of, const int32_t* npos, int64_t T,
                       int64_t NH, int64_t NKV, int64_t HD, const KvGeometry& g, int64_t window) override {
    spans_.resize(static_cast<size_t>(nseq));
    for (int64_t s = 0; s < nseq; s++)
      spans_[s] = cpu::KVSpan{kpool, vpool, tables + s * max_blocks, g.block_stride, g.head_stride, HD, g.block_size, g.dtype};
    cpu::attention_forward(out, q, spans_.data(), seq_of, npos, T, NH, NKV, HD, window, pool_);
  }
  void gather_rows(float* out, const float* x, const int32_t* rows, int64_t R, int64_t C) override {
    for (int64_t r = 0; r < R; r++) std::copy_n(x + static_cast<int64_t>(rows[r]) * C, C, out + r * C);
  }
  const cpu::LoraEntry* lora_table(const cpu::LoraEntry* host, int64_t) override { return host; }
  void lora(float* out, const float* x, const cpu::LoraEntry* entries, const int32_t* slot, float* u, int64_t T,
            int64_t N, int64_t K, int64_t max_rank) override {
    cpu::lora_batched(out, x, entries, slot, u, T, N, K, max_rank, pool_);
  }
  void read(float* host, const float* buf, int64_t n) override {
    if (host != buf) std::memcpy(host, buf, static_cast<size_t>(n) * sizeof(float));
  }
  View weight_columns(const void* host, DType dt, int64_t, int64_t cols, int64_t c0, int64_t, bool) override {
    return {static_cast<const char*>(host) + dtype_bytes(dt, c0), cols};
  }
  void linear_ld(float* out, const float* x, const void* w, DType dt, int64_t ldw, const float* bias, int64_t M,
                 int64_t N, int64_t K) override {
    cpu::gemm(false, true, M, N, K, 1.f, x, K, w, dt, ldw, 0.f, out, N, bias, pool_);
  }

  TrainOps& train() override { return *train_; }
  float* pin(float* host, int64_t) override { return host; }
  void unpin(const float*) override {}
  void pull(float*, int64_t) override {}
  void push(const float*, int64_t) override {}
  int64_t weight_bytes_moved() const override { return 0; }

 private:
  ThreadPool& pool_;
  char *k_, *v_;  // the host pool, elements of kv_.dtype
  KvGeometry kv_;
  cpu::MatmulPrecision precision_;
  std::array<std::vector<float>, static_cast<size_t>(Slot::Count)> f_;
  std::vector<cpu::KVSpan> spans_;
  std::vector<cpu::MatmulOut> mo_;
  std::unique_ptr<TrainOps> train_;
};

}  // namespace

std::unique_ptr<Exec> make_cpu_exec(ThreadPool& pool, void* k_pool, void* v_pool, const KvGeometry& kv,
                                    cpu::MatmulPrecision precision) {
  return std::make_unique<CpuExec>(pool, k_pool, v_pool, kv, precision);
}

}  // namespace hc
