#pragma once
// Result<T>: a value or an Error, a stand-in for std::expected (not in GCC 12's library).
// Errors carry a category and a one-line, human-readable reason.

#include <string>
#include <utility>
#include <variant>

namespace tether {

enum class Errc {
  kConfig,    // a config file is wrong; `what` ends with "in FILE:LINE"
  kSyntax,    // bytes from a peer do not parse
  kResource,  // allocation, fd or socket failure
  kIo,        // a system call failed
  kUpstream,  // an upstream refused, failed or timed out
  kInvalid,   // an argument is out of range
};

struct Error {
  Errc code;
  std::string what;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

using Status = Result<std::monostate>;
inline Status ok_status() {
  return Status(std::monostate{});
}

}  // namespace tether
