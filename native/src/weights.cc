#include "weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cpu/ops.h"
#include "errors.h"

namespace hc {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

MappedFile::MappedFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("file_missing", "cannot open weights file " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error("file_error", "cannot stat " + path + ": " + std::strerror(e));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw Error("file_error", "cannot mmap " + path + ": " + std::strerror(e));
    }
    data_ = static_cast<uint8_t*>(p);
    // start reading the file in now (asynchronously) rather than faulting it in page
    // by page during the first forward; advice only, so failure does not matter
    ::madvise(p, size_, MADV_WILLNEED);
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// convert_hf_to_gguf writes HF row r = h·D + i·(D/2) + j (head h of D rows, half i, pair
// index j) at h·D + 2j + i. Rows move whole, so any storage type (blocks never span rows).
const uint8_t* WeightStore::unpermute_rows(const TensorDesc& d, const uint8_t* src, int64_t bytes) {
  if (d.shape.size() != 2 || d.shape[0] % (2 * d.rope_heads) != 0)
    throw Error("shape_mismatch", "tensor " + d.name + " " + shape_str(d.shape) + " does not split into " +
                                      std::to_string(d.rope_heads) + " heads of pairs of rows");
  const int64_t D = d.shape[0] / d.rope_heads, row = bytes / d.shape[0];
  owned_.emplace_back(static_cast<size_t>(bytes));
  uint8_t* dst = owned_.back().data();
  for (int64_t h = 0; h < d.rope_heads; h++)
    for (int64_t i = 0; i < 2; i++)
      for (int64_t j = 0; j < D / 2; j++)
        std::memcpy(dst + (h * D + i * (D / 2) + j) * row, src + (h * D + 2 * j + i) * row, static_cast<size_t>(row));
  return dst;
}

WeightStore::WeightStore(const std::vector<TensorDesc>& descs) {
  for (const TensorDesc& d : descs) {
    if (tensors_.count(d.name)) throw Error("tensor_duplicate", "tensor " + d.name + " given twice");
    auto it = files_.find(d.file);
    if (it == files_.end()) it = files_.emplace(d.file, std::make_unique<MappedFile>(d.file)).first;
    const MappedFile& f = *it->second;
    int64_t n = 1;
    for (int64_t s : d.shape) {
      if (s < 0) throw Error("shape_mismatch", "tensor " + d.name + " has a negative dimension");
      n *= s;
    }
    const uint64_t bytes = static_cast<uint64_t>(dtype_bytes(d.dtype, n));
    if (d.offset < 0 || static_cast<uint64_t>(d.offset) + bytes > f.size())
      throw Error("tensor_out_of_file", "tensor " + d.name + " " + shape_str(d.shape) + " at byte " +
                                            std::to_string(d.offset) + " (+" + std::to_string(bytes) +
                                            " bytes) runs past the end of " + d.file + " (" +
                                            std::to_string(f.size()) + " bytes)");
    const uint8_t* data = f.data() + d.offset;
    if (d.rope_heads > 0) data = unpermute_rows(d, data, static_cast<int64_t>(bytes));
    tensors_.emplace(d.name, Tensor{data, d.dtype, d.shape});
  }
}

const Tensor& WeightStore::get(const std::string& name, const std::vector<int64_t>& shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error("tensor_missing", "tensor " + name + " is missing");
  if (it->second.shape != shape)
    throw Error("shape_mismatch", "tensor " + name + " has shape " + shape_str(it->second.shape) + ", expected " +
                                      shape_str(shape));
  return it->second;
}

std::vector<float> WeightStore::f32(const std::string& name, const std::vector<int64_t>& shape) const {
  const Tensor& t = get(name, shape);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  cpu::to_f32(out.data(), t.data, t.dtype, t.numel());
  return out;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> r;
  for (const auto& kv : tensors_) r.push_back(kv.first);
  return r;
}

bool WeightStore::mapped(const void* p) const {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  for (const auto& [name, f] : files_)
    if (b >= f->data() && b < f->data() + f->size()) return true;
  return false;
}

void drop_resident(const void* p, int64_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)) & ~(page - 1);
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // advice only: failure changes nothing
}

}  // namespace hc
