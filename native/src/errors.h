// Errors the native side throws. `code` is stable: addon.cc copies it onto the JS
// Error so the TypeScript layer (NativeError) and the server can map it to a status.
#pragma once
#include <stdexcept>
#include <string>

namespace hc {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

}  // namespace hc
