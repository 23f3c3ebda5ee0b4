// HTTP/1.1 request parsing on http-parser 2.9.4 (Debian 12's libhttp-parser).
//
// http-parser does the byte-level work; this file adds what a proxy in front of other servers
// needs on top of it: our own limits, and one interpretation of every head (RFC 7230 3.3.3), so
// that no upstream can read a different request boundary than the one we read.
//
// Byte accounting: feed() pauses the parser in on_headers_complete and in on_message_complete,
// so each http_parser_execute() call covers either part of one head or part of one body. Head
// bytes are then counted exactly, including a head that never ends.

#include "proxy/http/request_parser.h"

#include <http_parser.h>

#include <cstdint>
#include <utility>

#include "proxy/util/assert.h"

namespace tether::http {

namespace {

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Content-Length = 1*DIGIT (RFC 7230 3.3.2). Saturates at SIZE_MAX: anything that large is over
// every body limit anyway.
bool parse_content_length(std::string_view s, size_t& out) {
  if (s.empty()) return false;
  size_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const size_t digit = static_cast<size_t>(c - '0');
    v = (v > (SIZE_MAX - digit) / 10) ? SIZE_MAX : v * 10 + digit;
  }
  out = v;
  return true;
}

// Splits the request-target into path and query (neither decoded). Origin-form "/p?q", absolute-form
// "http://host/p?q" (path "/p", or "/" when absent) and asterisk-form "*" (path "*").
bool split_target(Request& r) {
  if (r.target == "*") {
    r.path = "*";
    return true;
  }
  // http_parser_url stores offsets as uint16_t.
  if (r.target.empty() || r.target.size() > UINT16_MAX) return false;
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(r.target.data(), r.target.size(), 0, &u) != 0) return false;
  auto field = [&](int f) -> std::string_view {
    if (!(u.field_set & (1u << f))) return {};
    return std::string_view(r.target).substr(u.field_data[f].off, u.field_data[f].len);
  };
  r.path = field(UF_PATH);
  if (r.path.empty()) r.path = "/";
  r.query = field(UF_QUERY);
  return true;
}

RequestParser& self(http_parser* p) {
  return *static_cast<RequestParser*>(p->data);
}

}  // namespace

// One noexcept trampoline per http-parser callback (STYLE 2.5): an escaping exception (only
// std::bad_alloc can occur) terminates, never unwinds through C.
struct RequestParser::Callbacks {
  template <auto Handle, class... Args>
  static int call(http_parser* p, Args... args) noexcept {
    return (self(p).*Handle)(args...);
  }
  static int on_down_message_begin(http_parser* p) noexcept {
    return call<&RequestParser::handle_message_begin>(p);
  }
  static int on_down_url(http_parser* p, const char* at, size_t len) noexcept {
    return call<&RequestParser::handle_url>(p, at, len);
  }
  static int on_down_header_field(http_parser* p, const char* at, size_t len) noexcept {
    return call<&RequestParser::handle_header_field>(p, at, len);
  }
  static int on_down_header_value(http_parser* p, const char* at, size_t len) noexcept {
    return call<&RequestParser::handle_header_value>(p, at, len);
  }
  static int on_down_headers_complete(http_parser* p) noexcept {
    return call<&RequestParser::handle_headers_complete>(p);
  }
  static int on_down_body(http_parser* p, const char* at, size_t len) noexcept {
    return call<&RequestParser::handle_body>(p, at, len);
  }
  static int on_down_message_complete(http_parser* p) noexcept {
    return call<&RequestParser::handle_message_complete>(p);
  }
  static int on_down_chunk_header(http_parser* p) noexcept {
    return call<&RequestParser::handle_chunk_header>(p);
  }
  static int on_down_chunk_complete(http_parser* p) noexcept {
    return call<&RequestParser::handle_chunk_complete>(p);
  }

  static const http_parser_settings kSettings;
};

const http_parser_settings RequestParser::Callbacks::kSettings = {
    .on_message_begin = on_down_message_begin,
    .on_url = on_down_url,
    .on_status = nullptr,
    .on_header_field = on_down_header_field,
    .on_header_value = on_down_header_value,
    .on_headers_complete = on_down_headers_complete,
    .on_body = on_down_body,
    .on_message_complete = on_down_message_complete,
    .on_chunk_header = on_down_chunk_header,
    .on_chunk_complete = on_down_chunk_complete,
};

// ---- Request ----

const std::string* Request::header(std::string_view name) const {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

// Every header named NAME counts: repeated fields are one comma-separated list (RFC 7230 3.2.2).
bool Request::has_token(std::string_view name, std::string_view token) const {
  for (const Header& h : headers) {
    if (!iequals(h.name, name)) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      if (iequals(trim(rest.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

// ---- RequestParser ----

RequestParser::RequestParser(ParserLimits limits)
    : limits_(limits), parser_(std::make_unique<http_parser>()) {
  http_parser_init(parser_.get(), HTTP_REQUEST);
  parser_->data = this;
}

RequestParser::~RequestParser() = default;

void RequestParser::set_error(int status, std::string reason) {
  if (failed()) return;  // the first reason is the true one
  error_status_ = status;
  error_reason_ = std::move(reason);
}

size_t RequestParser::feed(const char* data, size_t len) {
  size_t done = 0;
  // Never call http_parser_execute() with 0 bytes: to http-parser that means EOF.
  while (done < len && !failed() && !upgraded_) {
    if (closed_) return len;  // the connection closes after the response; later bytes are moot
    const bool in_head = !headers_done_;
    const bool in_trailers = last_chunk_;
    pause_ = Pause::kNone;
    const size_t n = http_parser_execute(parser_.get(), &Callbacks::kSettings, data + done, len - done);
    const auto err = static_cast<http_errno>(parser_->http_errno);

    if (in_head) {
      // Paused in on_headers_complete, http-parser has not consumed the head's final LF yet: it
      // reads it again on resuming, but it belongs to the head.
      const size_t head = (err == HPE_PAUSED && pause_ == Pause::kHeadersComplete) ? n + 1 : n;
      header_bytes_ += head;
      scan_head(data + done, head);
      // These outrank whatever a callback or http-parser objected to in the same bytes.
      if (header_bytes_ > limits_.max_header_bytes) {
        error_status_ = 0;
        set_error(431, "request header fields too large");
      } else if (obs_fold_) {
        error_status_ = 0;
        set_error(400, "obsolete line folding in request header");
      } else if (bare_cr_) {
        error_status_ = 0;
        set_error(400, "bare CR in request header");
      }
    } else {
      scan_body(data + done, n, in_trailers);
      if (bare_cr_) {
        if (pause_ == Pause::kMessageComplete) ready_.pop_back();
        set_error(400, "bare CR in request trailer");
      }
    }
    if (failed()) return done + n;

    if (err != HPE_OK && err != HPE_PAUSED) {
      fail_from_parser(err, in_head);
      return done + n;
    }
    done += n;
    if (err == HPE_PAUSED) {
      http_parser_pause(parser_.get(), 0);
      if (!handle_pause()) break;
    }
  }
  return done;
}

bool RequestParser::handle_pause() {
  const bool crlf = body_tail_[0] == '\r' && body_tail_[1] == '\n';
  switch (pause_) {
    case Pause::kNone:
      return true;
    case Pause::kHeadersComplete:
      if (!check_head()) return false;
      headers_done_ = true;
      body_tail_[0] = body_tail_[1] = 0;
      return true;
    case Pause::kChunkHeader:    // just read the chunk-size line
    case Pause::kChunkComplete:  // just read the two bytes after a chunk's data
      if (!crlf) {
        set_error(400, "malformed request body: chunk line not ended by CRLF");
        return false;
      }
      return true;
    case Pause::kMessageComplete: {
      Request& r = ready_.back();
      if (r.header("Transfer-Encoding") && !crlf) {  // the line that ends the trailer section
        ready_.pop_back();
        set_error(400, "malformed request body: chunked body not ended by CRLF");
        return false;
      }
      // CONNECT, the other case where http-parser stops, is refused in check_head(). Our own test
      // for an upgrade agrees with http-parser's for every other request: stop here either way.
      if (r.upgrade) {
        upgraded_ = true;
        return false;
      }
      if (!r.keep_alive) closed_ = true;
      return true;
    }
  }
  return true;
}

Request RequestParser::take_request() {
  TETHER_ASSERT(has_request());
  Request r = std::move(ready_.front());
  ready_.pop_front();
  return r;
}

int RequestParser::handle_message_begin() {
  in_request_ = true;
  return 0;
}

int RequestParser::handle_url(const char* at, size_t len) {
  current_.target.append(at, len);
  return 0;
}

int RequestParser::handle_header_field(const char* at, size_t len) {
  if (headers_done_) {  // a trailer field: counted, then dropped
    trailer_bytes_ += len;
    if (trailer_bytes_ > limits_.max_header_bytes) {
      set_error(431, "request header fields too large");
      return -1;
    }
    return 0;
  }
  if (last_was_value_) {
    if (!flush_header()) return -1;
  }
  header_name_.append(at, len);
  last_was_value_ = false;
  return 0;
}

int RequestParser::handle_header_value(const char* at, size_t len) {
  if (headers_done_) {
    trailer_bytes_ += len;
    if (trailer_bytes_ > limits_.max_header_bytes) {
      set_error(431, "request header fields too large");
      return -1;
    }
    return 0;
  }
  header_value_.append(at, len);
  last_was_value_ = true;
  return 0;
}

int RequestParser::handle_headers_complete() {
  if (!header_name_.empty() && !flush_header()) return -1;
  // Checks wait for feed(), which first settles the header byte count: see check_head().
  pause_ = Pause::kHeadersComplete;
  http_parser_pause(parser_.get(), 1);
  return 0;
}

int RequestParser::handle_body(const char* at, size_t len) {
  // A Content-Length body was checked against the limit up front; a chunked one is checked here.
  if (len > limits_.max_body_bytes - current_.body.size()) {
    set_error(413, "request body too large");
    return -1;
  }
  current_.body.append(at, len);
  return 0;
}

int RequestParser::handle_chunk_header() {
  if (parser_->content_length == 0) {
    last_chunk_ = true;
    prev_cr_ = false;
  }
  pause_ = Pause::kChunkHeader;
  http_parser_pause(parser_.get(), 1);
  return 0;
}

int RequestParser::handle_chunk_complete() {
  // After the last chunk, http-parser reports a chunk complete before it has read the CRLF that
  // ends the trailer section; the message-complete pause checks that one.
  if (last_chunk_) return 0;
  pause_ = Pause::kChunkComplete;
  http_parser_pause(parser_.get(), 1);
  return 0;
}

int RequestParser::handle_message_complete() {
  ready_.push_back(std::move(current_));
  current_ = Request{};
  in_request_ = false;
  headers_done_ = false;
  header_bytes_ = 0;
  trailer_bytes_ = 0;
  head_started_ = false;
  request_line_done_ = false;
  prev_lf_ = false;
  prev_cr_ = false;
  last_chunk_ = false;
  pause_ = Pause::kMessageComplete;
  http_parser_pause(parser_.get(), 1);
  return 0;
}

bool RequestParser::flush_header() {
  // Outside strict mode http-parser lets SP into field names, and even matches
  // "Transfer-Encoding :" as Transfer-Encoding. RFC 7230 3.2.4: reject.
  if (header_name_.find_first_of(" \t") != std::string::npos) {
    set_error(400, "whitespace in header field name");
    return false;
  }
  current_.headers.push_back(Header{std::move(header_name_), std::string(trim(header_value_))});
  header_name_.clear();
  header_value_.clear();
  last_was_value_ = false;
  return true;
}

void RequestParser::scan_head(const char* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    const char c = data[i];
    // http-parser takes "\r" + any byte for CRLF in places (HTTP_PARSER_STRICT is off); a bare CR
    // must be refused or read as SP (RFC 7230 3.5). Bare LFs are fine: they end a line.
    if (prev_cr_ && c != '\n') bare_cr_ = true;
    prev_cr_ = c == '\r';
    if (!head_started_) {  // empty lines before a request line are allowed (RFC 7230 3.5)
      head_started_ = c != '\r' && c != '\n';
      continue;
    }
    // A line starting with SP or HT continues the previous one. After the request line that is
    // obs-fold; http-parser would splice it into the previous value, which a server behind us
    // may not do. (After the final empty line come body bytes, which are never scanned.)
    if (prev_lf_ && (c == ' ' || c == '\t')) obs_fold_ = true;
    if (c == '\n') request_line_done_ = true;
    prev_lf_ = c == '\n';
  }
}

void RequestParser::scan_body(const char* data, size_t len, bool in_trailers) {
  for (size_t i = len > 2 ? len - 2 : 0; i < len; ++i) {
    body_tail_[0] = body_tail_[1];
    body_tail_[1] = data[i];
  }
  if (!in_trailers) return;  // chunk data may hold any byte
  for (size_t i = 0; i < len; ++i) {
    if (prev_cr_ && data[i] != '\n') bare_cr_ = true;
    prev_cr_ = data[i] == '\r';
  }
}

// RFC 7230 3.3.3 resolved the strict way, so that we never frame a request differently from a
// server behind us:
//  - Content-Length together with Transfer-Encoding: 400 (not "TE wins"; see 3.3.3 item 3).
//  - More than one Content-Length header: 400 "duplicate Content-Length header", even when the
//    values agree (as nginx does). http-parser 2.9 refuses a second Content-Length before its
//    value has been read, so equal and different values could not be told apart anyway.
//  - Transfer-Encoding: only a single "chunked" is supported; anything else is 501.
bool RequestParser::check_framing() {
  const std::string* content_length = nullptr;
  int content_lengths = 0;
  int transfer_encodings = 0;
  const std::string* transfer_encoding = nullptr;
  for (const Header& h : current_.headers) {
    if (iequals(h.name, "Content-Length")) {
      ++content_lengths;
      content_length = &h.value;
    } else if (iequals(h.name, "Transfer-Encoding")) {
      ++transfer_encodings;
      transfer_encoding = &h.value;
    }
  }
  if (content_lengths > 0 && transfer_encodings > 0) {
    set_error(400, "both Content-Length and Transfer-Encoding");
    return false;
  }
  if (content_lengths > 1) {
    set_error(400, "duplicate Content-Length header");
    return false;
  }
  if (transfer_encodings > 1 || (transfer_encoding && !iequals(*transfer_encoding, "chunked"))) {
    set_error(501, "unsupported Transfer-Encoding");
    return false;
  }
  size_t length = 0;
  if (content_length && !parse_content_length(*content_length, length)) {
    set_error(400, "invalid Content-Length header");
    return false;
  }
  return true;
}

bool RequestParser::check_head() {
  Request& r = current_;
  r.method = http_method_str(static_cast<http_method>(parser_->method));
  r.http_major = parser_->http_major;
  r.http_minor = parser_->http_minor;
  if (r.http_major == 0) {  // HTTP/0.9: a request line without a version
    set_error(400, "malformed request line: missing HTTP version");
    return false;
  }
  if (r.http_major > 1) {
    set_error(505, "HTTP version not supported");
    return false;
  }
  if (parser_->method == HTTP_CONNECT) {  // a tunnel: we are not a forward proxy
    set_error(501, "CONNECT is not supported");
    return false;
  }
  if (!check_framing()) return false;

  int hosts = 0;
  for (const Header& h : r.headers) hosts += iequals(h.name, "Host") ? 1 : 0;
  if (hosts > 1) {  // RFC 7230 5.4
    set_error(400, "duplicate Host header");
    return false;
  }
  if (hosts == 0 && r.http_minor >= 1) {
    set_error(400, "missing Host header");
    return false;
  }

  if (const std::string* cl = r.header("Content-Length")) {
    size_t length = 0;
    parse_content_length(*cl, length);  // valid: check_framing() said so
    if (length > limits_.max_body_bytes) {
      set_error(413, "request body too large");
      return false;
    }
  }

  if (r.target.size() > UINT16_MAX) {
    set_error(414, "request target too long");
    return false;
  }
  if (!split_target(r)) {
    set_error(400, "malformed request line: invalid request target");
    return false;
  }

  const bool close = r.has_token("Connection", "close");
  r.keep_alive = r.http_minor >= 1 ? !close : (!close && r.has_token("Connection", "keep-alive"));
  const std::string* upgrade = r.header("Upgrade");
  r.upgrade = upgrade && !upgrade->empty() && r.has_token("Connection", "upgrade");
  return true;
}

void RequestParser::fail_from_parser(int http_errno_value, bool in_head) {
  const auto err = static_cast<http_errno>(http_errno_value);
  const std::string description = http_errno_description(err);  // one line, no CR/LF
  if (!in_head) {
    set_error(400, "malformed request body: " + description);
    return;
  }
  if (err == HPE_HEADER_OVERFLOW) {  // http-parser's own, process-wide limit (80 KiB)
    set_error(431, "request header fields too large");
    return;
  }
  // http-parser stops at the first framing problem it sees, sometimes before the offending value
  // has been delivered; judging the headers received so far gives the precise reason.
  if (!header_name_.empty() && !flush_header()) return;
  if (!check_framing()) return;
  set_error(400,
            (request_line_done_ ? "malformed request header: " : "malformed request line: ") + description);
}

// ---- Helpers for responses ----

std::string_view reason_phrase(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

bool url_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (in.size() - i < 3) {  // "%" or "%4" at the end
        out.clear();
        return false;
      }
      const int h = hex_value(in[i + 1]);
      const int l = hex_value(in[i + 2]);
      if (h < 0 || l < 0) {
        out.clear();
        return false;
      }
      out.push_back(static_cast<char>(h * 16 + l));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return true;
}

bool query_param(std::string_view query, std::string_view name, std::string& value) {
  value.clear();
  std::string key;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const std::string_view raw_key = pair.substr(0, eq);
    if (!url_decode(raw_key, key) || key != name) continue;
    // "a" (no '=') is present with an empty value.
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (!url_decode(raw_value, value)) return false;
    return true;
  }
  return false;
}

}  // namespace tether::http
