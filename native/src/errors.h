// Errors the native side throws. `code` is stable: addon.cc copies it onto the JS
// Error so the TypeScript layer (NativeError) and the server can map it to a status.
#pragma once
#include <new>
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

// The code and message JS is given for the exception being handled (call it in a catch):
// thrown at once on the JS thread (addon.h's guard), or kept by work done off it until its
// Promise settles.
struct Failure {
  std::string code, message;
};
inline Failure current_failure() {
  Failure f;
  try {
    throw;
  } catch (const Error& e) {
    f = {e.code(), e.what()};
  } catch (const std::bad_alloc&) {
    f = {"out_of_memory", "out of memory"};
  } catch (const std::exception& e) {
    f = {"internal", e.what()};
  } catch (...) {
    f = {"internal", "unknown exception"};
  }
  if (f.message.empty()) f.message = f.code;  // an Error thrown without words still says what it was
  return f;
}

}  // namespace hc
