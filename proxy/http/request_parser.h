#pragma once
// HTTP/1.1 request parsing on http-parser 2.9, with no I/O: bytes in -> complete requests out.
// Pipelined requests queue up in arrival order. A request that asks for an upgrade stops the
// parser right after its head: the bytes after it belong to the new protocol.

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct http_parser;

namespace tether::http {

struct Header {
  std::string name;   // as received
  std::string value;  // leading/trailing whitespace trimmed
};

struct Request {
  std::string method;  // "GET"
  std::string target;  // request-target as received: "/chat/room?x=1"
  std::string path;    // "/chat/room" (not decoded)
  std::string query;   // "x=1" (without '?'; empty if none)
  int http_major = 1;
  int http_minor = 1;
  std::vector<Header> headers;
  std::string body;        // de-chunked
  bool keep_alive = true;  // from version and Connection
  bool upgrade = false;    // Connection: upgrade + Upgrade: <something>

  // First header named NAME (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
  // True when header NAME holds TOKEN in its comma-separated list (case-insensitive),
  // e.g. has_token("Connection", "upgrade") for "keep-alive, Upgrade".
  bool has_token(std::string_view name, std::string_view token) const;
};

struct ParserLimits {
  size_t max_header_bytes = 16 * 1024;  // request line + headers; over -> 431
  size_t max_body_bytes = 1024 * 1024;  // over -> 413
};

class RequestParser {
 public:
  explicit RequestParser(ParserLimits limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Feeds bytes. Returns how many were consumed: all of them, unless the parser failed or a
  // request asked for an upgrade (then the rest belongs to the new protocol and is not consumed).
  // After a failure, feed() consumes nothing.
  size_t feed(const char* data, size_t len);

  bool has_request() const { return !ready_.empty(); }
  Request take_request();  // the oldest complete request; requires has_request()
  size_t queued() const { return ready_.size(); }

  bool failed() const { return error_status_ != 0; }
  // 400, 413, 431 (or 501 for an unsupported Transfer-Encoding, 505 for HTTP/2.0+ request lines)
  int error_status() const { return error_status_; }
  // One line, no CRLF, e.g. "request header fields too large", "both Content-Length and
  // Transfer-Encoding", "conflicting Content-Length headers", "malformed request line".
  const std::string& error_reason() const { return error_reason_; }

  bool upgraded() const { return upgraded_; }
  // True while part of a request has been received but not all of it (for 408 vs a quiet close).
  bool in_request() const { return in_request_; }
  // True while the head of the current request is complete and its body is still arriving.
  bool in_body() const { return in_request_ && headers_done_; }

 private:
  // The helper may change private members freely.
  struct Callbacks;  // the http_parser_settings trampolines (request_parser.cpp)
  // Why http_parser_execute() last returned HPE_PAUSED. feed() pauses the parser at both ends of
  // every head, so that it knows exactly which bytes belong to a head, and at chunk boundaries,
  // where it checks the CRLFs that http-parser (built without HTTP_PARSER_STRICT) does not.
  enum class Pause { kNone, kHeadersComplete, kChunkHeader, kChunkComplete, kMessageComplete };

  // Records the first failure; later ones keep it. (Not "fail": CMocka defines a fail() macro.)
  void set_error(int status, std::string reason);
  // Callbacks: each returns 0 to go on, nonzero after set_error().
  int handle_message_begin();
  int handle_url(const char* at, size_t len);
  int handle_header_field(const char* at, size_t len);
  int handle_header_value(const char* at, size_t len);
  int handle_headers_complete();
  int handle_body(const char* at, size_t len);
  int handle_chunk_header();
  int handle_chunk_complete();
  int handle_message_complete();
  // Moves header_name_/header_value_ into current_.headers; false (after set_error()) if the name is bad.
  bool flush_header();
  // Watches the raw bytes of a head for obs-fold (RFC 7230 3.2.4), bare CRs (3.5) and the end of
  // the request line.
  void scan_head(const char* data, size_t len);
  // Keeps the last two body bytes, and looks for bare CRs in a trailer section.
  void scan_body(const char* data, size_t len, bool in_trailers);
  // Acts on the reason for a pause; false after set_error() or when feed() must stop.
  bool handle_pause();
  // The Content-Length / Transfer-Encoding rules against request smuggling; false after set_error().
  bool check_framing();
  // Everything checked once a head is complete (before its body is read); false after set_error().
  bool check_head();
  // Turns an http-parser error into a status and a one-line reason.
  void fail_from_parser(int http_errno_value, bool in_head);

  ParserLimits limits_;
  std::unique_ptr<http_parser> parser_;
  std::deque<Request> ready_;
  Request current_;
  std::string header_name_, header_value_;
  bool last_was_value_ = false;
  bool headers_done_ = false;  // current_'s head is complete; header callbacks now carry trailers
  size_t header_bytes_ = 0;    // bytes fed during the current head, leading CRLFs included
  size_t trailer_bytes_ = 0;   // trailer name + value bytes, limited like a head
  bool head_started_ = false;  // scan_head() saw the first byte of the request line
  bool request_line_done_ = false;
  bool prev_lf_ = false;
  bool prev_cr_ = false;
  bool obs_fold_ = false;
  bool bare_cr_ = false;
  bool last_chunk_ = false;     // the zero-size chunk was read: trailers (or the end) follow
  char body_tail_[2] = {0, 0};  // the last two bytes consumed in the body phase
  Pause pause_ = Pause::kNone;
  bool closed_ = false;  // a request without keep-alive completed: the rest is ignored
  int error_status_ = 0;
  std::string error_reason_;
  bool upgraded_ = false;
  bool in_request_ = false;
};

// Helpers for writing responses.
// "Bad Request" for 400 etc. (standard reason phrases for the statuses Tether sends).
std::string_view reason_phrase(int status);
// Decodes %XX and '+' in a query value; nullopt-like empty + false on bad escapes.
bool url_decode(std::string_view in, std::string& out);
// Value of query parameter NAME in QUERY ("a=1&b=2"), decoded; false if absent.
bool query_param(std::string_view query, std::string_view name, std::string& value);

}  // namespace tether::http
