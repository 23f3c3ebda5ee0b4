#pragma once
// HTTP/1.1 responses on http-parser 2.9: status, headers, a streamed body (Content-Length,
// chunked or close-delimited) and the switch to WebSocket after a 101. No I/O.

#include <http_parser.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tether::bench {

struct ResponseHead {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent
  bool keep_alive = true;  // http-parser's verdict: the connection carries another response

  const std::string* get(std::string_view name) const;
};

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void on_response_head(const ResponseHead& head) = 0;
  virtual void on_response_body(std::string_view chunk) = 0;
};

class ResponseParser {
 public:
  enum class State {
    kMore,      // every byte consumed, the response goes on
    kComplete,  // a response ended; bytes past `consumed` belong to the next one
    kUpgraded,  // a 101 with Upgrade: bytes past `consumed` are WebSocket frames
    kError,     // malformed; see error()
  };

  explicit ResponseParser(ResponseSink& sink);
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // Starts over, for a new connection.
  void reset();
  // Parses up to LEN bytes, calling the sink; CONSUMED is how many were used. After kComplete,
  // the next feed() starts the next response.
  State feed(const char* data, size_t len, size_t& consumed);
  // The peer closed: ends a close-delimited body (kComplete), else kMore when between
  // responses, kError when cut in the middle of one.
  State finish();
  const std::string& error() const { return error_; }
  const ResponseHead& head() const { return head_; }

 private:
  static int on_field(http_parser* p, const char* at, size_t len);
  static int on_value(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, size_t len);
  static int on_message_complete(http_parser* p);

  ResponseSink& sink_;
  http_parser parser_{};
  http_parser_settings settings_{};
  ResponseHead head_;
  bool in_value_ = false;
  bool in_message_ = false;  // bytes of a response have been seen, its end not yet
  bool complete_ = false;
  std::string error_;
};

}  // namespace tether::bench
