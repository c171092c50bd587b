// Checkpoint tensors, memory-mapped from their safetensors files: linear weights are
// used in place (zero copy, any storage dtype), small vectors are copied to fp32.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace hc {

// Where one tensor lives, as the TypeScript side describes it (native/index.ts TensorRef).
struct TensorDesc {
  std::string name;
  std::string file;
  int64_t offset = 0;  // absolute byte offset in `file`
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // > 0: the rows are in llama.cpp's rope order (convert_hf_to_gguf permutes q/k rows so
  // its interleaved rope sees each head's pairs adjacent), in heads of this many rows'
  // count (shape[0] / rope_heads rows each): loaded into an owned copy in HF row order.
  int64_t rope_heads = 0;
};

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct Tensor {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel() const;
};

class WeightStore {
 public:
  // Maps each distinct file once; checks every tensor lies inside its file.
  explicit WeightStore(const std::vector<TensorDesc>& descs);

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws code "tensor_missing" / "shape_mismatch" with the tensor's name.
  const Tensor& get(const std::string& name, const std::vector<int64_t>& shape) const;
  // fp32 copy of a (small) tensor, whatever its storage type.
  std::vector<float> f32(const std::string& name, const std::vector<int64_t>& shape) const;
  std::vector<std::string> names() const;
  // Whether p lies in one of the mapped files (not in an owned, un-permuted copy).
  bool mapped(const void* p) const;

 private:
  const uint8_t* unpermute_rows(const TensorDesc& d, const uint8_t* src, int64_t bytes);
  std::map<std::string, std::unique_ptr<MappedFile>> files_;
  std::map<std::string, Tensor> tensors_;
  std::vector<std::vector<uint8_t>> owned_;  // tensors un-permuted from a GGUF's rope order
};

std::string shape_str(const std::vector<int64_t>& s);

// Lets the kernel drop the resident pages of a mapped range nobody reads any more (a
// tensor copied into an fp32 master): they stop counting against the process and come
// back from the file if something does read them again. Whole pages inside the range only.
void drop_resident(const void* p, int64_t bytes);

}  // namespace hc
