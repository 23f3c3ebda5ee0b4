#pragma once
// Session ids: 128 bits from OpenSSL's RAND_bytes, base64url without padding (22 characters).
// An id is a bearer secret: logs show log_prefix() only.

#include <string>
#include <string_view>

namespace tether::session {

constexpr size_t kSessionIdLength = 22;

std::string new_session_id();
// True when S has the form of an id (22 base64url characters); says nothing of its existence.
bool is_session_id(std::string_view s);
// The first 6 characters and "…", for logs.
std::string log_prefix(std::string_view id);

}  // namespace tether::session
