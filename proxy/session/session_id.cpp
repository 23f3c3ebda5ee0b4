// Session ids (DESIGN.md "Session id"): 16 bytes from RAND_bytes, base64url, no padding.

#include "proxy/session/session_id.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "proxy/util/assert.h"

namespace tether::session {
namespace {

constexpr size_t kIdBytes = 16;  // 128 bits: 22 base64 characters, the last one carrying 2 bits
constexpr size_t kLogPrefixLength = 6;

bool is_base64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

std::string new_session_id() {
  unsigned char raw[kIdBytes];
  // An id that might be guessed would let anyone read or write another client's session:
  // without a working CSPRNG there is nothing safe to go on with.
  TETHER_RELEASE_ASSERT(RAND_bytes(raw, sizeof raw) == 1);
  // 4 * ceil(16 / 3) = 24 characters ("==" at the end) and EVP_EncodeBlock's NUL.
  char encoded[4 * ((kIdBytes + 2) / 3) + 1];
  [[maybe_unused]] int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded), raw, sizeof raw);
  TETHER_ASSERT(n == 24);
  std::string id(encoded, kSessionIdLength);  // drops the padding
  for (char& c : id) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return id;
}

bool is_session_id(std::string_view s) {
  if (s.size() != kSessionIdLength) return false;
  for (char c : s) {
    if (!is_base64url_char(c)) return false;
  }
  return true;
}

std::string log_prefix(std::string_view id) {
  std::string out(id.substr(0, kLogPrefixLength));
  out += "\xE2\x80\xA6";  // U+2026 HORIZONTAL ELLIPSIS
  return out;
}

}  // namespace tether::session
