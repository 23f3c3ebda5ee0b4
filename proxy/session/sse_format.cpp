// The text/event-stream framing (WHATWG HTML, "Server-sent events", 9.2.5/9.2.6). A field
// line ends at CR, LF or CRLF, so a text message is cut at each of them into data: lines; the
// client joins those with LF, which turns every line ending into LF (the one change SSE makes
// to text). Binary has no line structure: one data: line of base64.

#include "proxy/session/sse_format.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "proxy/session/session_id.h"
#include "proxy/util/assert.h"

namespace tether::session {
namespace {

constexpr size_t kPaddingBytes = 2048;

// Used only in assertions.
[[maybe_unused]] bool is_one_line(std::string_view s) {
  return s.find_first_of("\r\n") == std::string_view::npos;
}

void append_decimal(std::string& out, uint64_t v) {
  char buf[20];  // 2^64 - 1 has 20 digits
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  TETHER_ASSERT(ec == std::errc());
  out.append(buf, end);
}

void append_data_line(std::string& out, std::string_view line) {
  out += "data: ";
  out += line;
  out += '\n';
}

}  // namespace

void append_sse_message(std::string& out, std::string_view sid, uint64_t seq, bool binary,
                        std::string_view payload) {
  out += "id: ";
  out += sid;
  out += '.';
  append_decimal(out, seq);
  out += '\n';
  if (binary) {
    out += "event: binary\n";
    append_data_line(out, base64_encode(payload));
  } else {
    size_t start = 0;
    for (size_t eol; (eol = payload.find_first_of("\r\n", start)) != std::string_view::npos;) {
      append_data_line(out, payload.substr(start, eol - start));
      start = eol + 1;
      if (payload[eol] == '\r' && start < payload.size() && payload[start] == '\n') ++start;  // CRLF is one
    }
    // The last line: empty after a trailing line ending, and for an empty message.
    append_data_line(out, payload.substr(start));
  }
  out += '\n';
}

void append_sse_event(std::string& out, std::string_view name, std::string_view data, std::string_view id) {
  // A line ending inside would end the field early and let the rest be read as other fields.
  TETHER_ASSERT(is_one_line(name) && is_one_line(data) && is_one_line(id));
  if (!id.empty()) {
    out += "id: ";
    out += id;
    out += '\n';
  }
  out += "event: ";
  out += name;
  out += '\n';
  append_data_line(out, data);
  out += '\n';
}

void append_sse_comment(std::string& out, std::string_view text) {
  TETHER_ASSERT(is_one_line(text));
  out += ": ";
  out += text;
  out += "\n\n";
}

void append_sse_retry(std::string& out, uint64_t ms) {
  out += "retry: ";
  append_decimal(out, ms);
  out += "\n\n";
}

void append_sse_padding(std::string& out) {
  out += ':';
  out.append(kPaddingBytes, ' ');
  out += "\n\n";
}

constexpr size_t kMaxIdToken = 64;

bool parse_last_event_id(std::string_view value, std::string& sid, uint64_t& seq) {
  const size_t dot = value.find('.');
  if (dot == std::string_view::npos) return false;
  std::string_view id = value.substr(0, dot);
  std::string_view digits = value.substr(dot + 1);
  // Ids are opaque to clients (a routing prefix may come), so any base64url token up to 64
  // characters is well formed; whether it names a session is the table's question.
  if (id.empty() || id.size() > kMaxIdToken || digits.empty()) return false;
  for (char c : id) {
    bool b64url =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!b64url) return false;
  }
  for (char c : digits) {
    if (c < '0' || c > '9') return false;  // also rejects a second '.', signs and spaces
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size()) return false;
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  sid.assign(id);
  seq = n;
  return true;
}

std::string base64_encode(std::string_view data) {
  // EVP_EncodeBlock takes an int length: encode in pieces that are a multiple of 3 bytes, so
  // only the last one is padded.
  constexpr size_t kChunk = 3 * (size_t{1} << 28);
  std::string out;
  out.resize(4 * ((data.size() + 2) / 3) + 1);  // + EVP_EncodeBlock's NUL
  size_t written = 0;
  for (size_t pos = 0; pos < data.size(); pos += kChunk) {
    const size_t n = std::min(kChunk, data.size() - pos);
    written += static_cast<size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + written),
                                                   reinterpret_cast<const unsigned char*>(data.data() + pos),
                                                   static_cast<int>(n)));
  }
  out.resize(written);
  return out;
}

}  // namespace tether::session
