// Tests for proxy/http/request_parser.cpp: HTTP/1.1 request parsing, limits and smuggling defences.

#include <memory>
#include <string>
#include <string_view>

#include "cmocka.hpp"
#include "proxy/http/request_parser.h"

namespace {

using tether::http::ParserLimits;
using tether::http::query_param;
using tether::http::reason_phrase;
using tether::http::Request;
using tether::http::RequestParser;
using tether::http::url_decode;

// A failing assert longjmps past destructors: everything owned lives here (STYLE 2.9).
struct Fixture {
  std::unique_ptr<RequestParser> parser = std::make_unique<RequestParser>();
  std::unique_ptr<RequestParser> other;
  Request req;
  Request req2;
  std::string s;
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

size_t feed(RequestParser& p, std::string_view bytes) {
  return p.feed(bytes.data(), bytes.size());
}

// Feeds BYTES one at a time; returns how many were consumed.
size_t feed_bytewise(RequestParser& p, std::string_view bytes) {
  size_t consumed = 0;
  for (char c : bytes) consumed += p.feed(&c, 1);
  return consumed;
}

bool has_crlf(const std::string& s) {
  return s.find_first_of("\r\n") != std::string::npos;
}

// Feeds INPUT to a fresh parser and checks it fails with STATUS and REASON (exactly, or as a
// prefix when PREFIX is set).
void expect_error(Fixture& f, std::string_view input, int status, const char* reason, bool prefix = false) {
  f.parser = std::make_unique<RequestParser>();
  const size_t consumed = feed(*f.parser, input);
  if (!f.parser->failed() || f.parser->error_status() != status) {
    print_error("input: %.*s\nreason: %s\n", static_cast<int>(input.size()), input.data(),
                f.parser->error_reason().c_str());
  }
  assert_true(f.parser->failed());
  assert_int_equal(f.parser->error_status(), status);
  if (prefix) {
    assert_true(f.parser->error_reason().starts_with(reason));
  } else {
    assert_string_equal(f.parser->error_reason().c_str(), reason);
  }
  assert_false(has_crlf(f.parser->error_reason()));
  assert_true(consumed <= input.size());
  assert_false(f.parser->has_request());
  // After a failure, nothing more is consumed.
  assert_int_equal(feed(*f.parser, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
}

// ---- requests ----

void simple_get(void** state) {
  auto& f = fixture(state);
  const std::string_view in =
      "GET /chat/room?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  curl/8 \t\r\n\r\n";
  assert_false(f.parser->in_request());
  assert_int_equal(feed(*f.parser, in), in.size());
  assert_false(f.parser->failed());
  assert_false(f.parser->in_request());
  assert_int_equal(f.parser->queued(), 1);
  f.req = f.parser->take_request();
  assert_false(f.parser->has_request());
  assert_string_equal(f.req.method.c_str(), "GET");
  assert_string_equal(f.req.target.c_str(), "/chat/room?x=1");
  assert_string_equal(f.req.path.c_str(), "/chat/room");
  assert_string_equal(f.req.query.c_str(), "x=1");
  assert_int_equal(f.req.http_major, 1);
  assert_int_equal(f.req.http_minor, 1);
  assert_int_equal(f.req.headers.size(), 2);
  assert_string_equal(f.req.headers[0].name.c_str(), "Host");
  assert_string_equal(f.req.headers[0].value.c_str(), "example.com");
  assert_string_equal(f.req.headers[1].name.c_str(), "User-Agent");
  assert_string_equal(f.req.headers[1].value.c_str(), "curl/8");
  assert_non_null(f.req.header("host"));
  assert_string_equal(f.req.header("USER-AGENT")->c_str(), "curl/8");
  assert_null(f.req.header("Accept"));
  assert_true(f.req.body.empty());
  assert_true(f.req.keep_alive);
  assert_false(f.req.upgrade);
  assert_false(f.parser->upgraded());
}

void target_forms(void** state) {
  auto& f = fixture(state);
  feed(*f.parser,
       "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"
       "GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n"
       "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"
       "GET /plain HTTP/1.1\r\nHost: h\r\n\r\n");
  assert_false(f.parser->failed());
  assert_int_equal(f.parser->queued(), 4);
  f.req = f.parser->take_request();
  assert_string_equal(f.req.method.c_str(), "OPTIONS");
  assert_string_equal(f.req.path.c_str(), "*");
  assert_string_equal(f.req.query.c_str(), "");
  f.req = f.parser->take_request();
  assert_string_equal(f.req.target.c_str(), "http://example.com/p?q");
  assert_string_equal(f.req.path.c_str(), "/p");
  assert_string_equal(f.req.query.c_str(), "q");
  f.req = f.parser->take_request();
  assert_string_equal(f.req.path.c_str(), "/");
  f.req = f.parser->take_request();
  assert_string_equal(f.req.path.c_str(), "/plain");
  assert_string_equal(f.req.query.c_str(), "");
}

void keep_alive_semantics(void** state) {
  auto& f = fixture(state);
  struct Case {
    const char* head;
    bool keep_alive;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    f.parser = std::make_unique<RequestParser>();
    feed(*f.parser, c.head);
    assert_false(f.parser->failed());
    assert_true(f.parser->has_request());
    f.req = f.parser->take_request();
    if (f.req.keep_alive != c.keep_alive) print_error("head: %s\n", c.head);
    assert_int_equal(f.req.keep_alive, c.keep_alive);
  }
  // HTTP/1.0 needs no Host header.
  f.parser = std::make_unique<RequestParser>();
  feed(*f.parser, "GET / HTTP/1.0\r\n\r\n");
  f.req = f.parser->take_request();
  assert_int_equal(f.req.http_minor, 0);
}

void close_ignores_what_follows(void** state) {
  auto& f = fixture(state);
  const std::string_view in =
      "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  assert_int_equal(feed(*f.parser, in), in.size());
  assert_false(f.parser->failed());
  assert_int_equal(f.parser->queued(), 1);
  assert_int_equal(feed(*f.parser, "garbage"), 7);
  assert_false(f.parser->failed());
  assert_int_equal(f.parser->queued(), 1);
}

constexpr std::string_view kChunkedPost =
    "POST /upload?id=7 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Transfer-Encoding: chunked\r\n"
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
    "\r\n"
    "5;name=value\r\nhello\r\n"
    "6 ; x=\"y\"\r\n world\r\n"
    "0\r\n"
    "X-Trailer: t\r\n"
    "Content-Length: 99\r\n"
    "\r\n";

void chunked_body_with_extensions_and_trailers(void** state) {
  auto& f = fixture(state);
  assert_int_equal(feed(*f.parser, kChunkedPost), kChunkedPost.size());
  assert_false(f.parser->failed());
  assert_int_equal(f.parser->queued(), 1);
  f.req = f.parser->take_request();
  assert_string_equal(f.req.method.c_str(), "POST");
  assert_string_equal(f.req.body.c_str(), "hello world");
  // Trailers are dropped, never merged into the head.
  assert_int_equal(f.req.headers.size(), 3);
  assert_null(f.req.header("X-Trailer"));
  assert_null(f.req.header("Content-Length"));
  assert_true(f.req.keep_alive);
}

void content_length_body(void** state) {
  auto& f = fixture(state);
  assert_int_equal(feed(*f.parser, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello"), 54);
  assert_false(f.parser->has_request());
  assert_true(f.parser->in_request());
  assert_int_equal(feed(*f.parser, " world"), 6);
  assert_false(f.parser->in_request());
  assert_true(f.parser->has_request());
  f.req = f.parser->take_request();
  assert_string_equal(f.req.body.c_str(), "hello world");
}

void byte_at_a_time_matches_whole(void** state) {
  auto& f = fixture(state);
  assert_int_equal(feed_bytewise(*f.parser, kChunkedPost), kChunkedPost.size());
  assert_false(f.parser->failed());
  assert_int_equal(f.parser->queued(), 1);
  f.req = f.parser->take_request();

  f.other = std::make_unique<RequestParser>();
  feed(*f.other, kChunkedPost);
  f.req2 = f.other->take_request();

  assert_string_equal(f.req.method.c_str(), f.req2.method.c_str());
  assert_string_equal(f.req.target.c_str(), f.req2.target.c_str());
  assert_string_equal(f.req.path.c_str(), f.req2.path.c_str());
  assert_string_equal(f.req.query.c_str(), f.req2.query.c_str());
  assert_string_equal(f.req.body.c_str(), f.req2.body.c_str());
  assert_int_equal(f.req.headers.size(), f.req2.headers.size());
  for (size_t i = 0; i < f.req.headers.size(); ++i) {
    assert_string_equal(f.req.headers[i].name.c_str(), f.req2.headers[i].name.c_str());
    assert_string_equal(f.req.headers[i].value.c_str(), f.req2.headers[i].value.c_str());
  }
  assert_string_equal(f.req.header("X-Long")->c_str(), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  assert_int_equal(f.req.keep_alive, f.req2.keep_alive);
}

// Every two-piece split of a pipelined buffer gives the same requests, and stops at the upgrade.
void any_split_gives_the_same_requests(void** state) {
  auto& f = fixture(state);
  constexpr std::string_view kTail = "\x81\x05hello";
  f.s = std::string(kChunkedPost) + "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" +
        std::string(kTail);
  const size_t head_end = f.s.size() - kTail.size();
  for (size_t split = 0; split <= f.s.size(); ++split) {
    f.parser = std::make_unique<RequestParser>();
    size_t consumed = f.parser->feed(f.s.data(), split);
    if (consumed == split) consumed += f.parser->feed(f.s.data() + split, f.s.size() - split);
    if (consumed != head_end || f.parser->queued() != 3) print_error("split at %zu\n", split);
    assert_false(f.parser->failed());
    assert_true(f.parser->upgraded());
    assert_int_equal(consumed, head_end);
    assert_int_equal(f.parser->queued(), 3);
    f.req = f.parser->take_request();
    assert_string_equal(f.req.body.c_str(), "hello world");
    f.req = f.parser->take_request();
    assert_string_equal(f.req.body.c_str(), "abc");
    f.req = f.parser->take_request();
    assert_true(f.req.upgrade);
  }
}

void in_request_tracks_partial_requests(void** state) {
  auto& f = fixture(state);
  assert_false(f.parser->in_request());
  feed(*f.parser, "\r\n");  // empty lines before a request are not a request (RFC 7230 3.5)
  assert_false(f.parser->in_request());
  feed(*f.parser, "G");
  assert_true(f.parser->in_request());
  feed(*f.parser, "ET / HTTP/1.1\r\nHost: h\r\n\r");
  assert_true(f.parser->in_request());
  feed(*f.parser, "\n");
  assert_false(f.parser->in_request());
  assert_true(f.parser->has_request());
}

void pipelined_requests_queue_in_order(void** state) {
  auto& f = fixture(state);
  const std::string_view in =
      "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
  assert_int_equal(feed(*f.parser, in), in.size());
  assert_int_equal(f.parser->queued(), 3);
  f.req = f.parser->take_request();
  assert_string_equal(f.req.path.c_str(), "/1");
  f.req = f.parser->take_request();
  assert_string_equal(f.req.path.c_str(), "/2");
  assert_string_equal(f.req.body.c_str(), "abc");
  f.req = f.parser->take_request();
  assert_string_equal(f.req.path.c_str(), "/3");
  assert_true(f.req.body.empty());
  assert_false(f.parser->has_request());
}

// ---- upgrade ----

constexpr std::string_view kUpgradeHead =
    "GET /ws HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Upgrade: websocket\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "\r\n";

void upgrade_leaves_the_rest(void** state) {
  auto& f = fixture(state);
  const std::string_view frames = "\x81\x05hello\r\nGET / HTTP/1.1\r\n\r\n";
  f.s = std::string(kUpgradeHead) + std::string(frames);
  const size_t consumed = feed(*f.parser, f.s);
  assert_int_equal(consumed, kUpgradeHead.size());
  assert_true(f.parser->upgraded());
  assert_false(f.parser->failed());
  assert_int_equal(f.parser->queued(), 1);
  assert_true(f.s.substr(consumed) == frames);
  f.req = f.parser->take_request();
  assert_true(f.req.upgrade);
  assert_true(f.req.has_token("Connection", "upgrade"));
  assert_string_equal(f.req.header("upgrade")->c_str(), "websocket");
  // After an upgrade, nothing more is consumed.
  assert_int_equal(feed(*f.parser, frames), 0);
  assert_false(f.parser->has_request());
}

void upgrade_byte_at_a_time(void** state) {
  auto& f = fixture(state);
  f.s = std::string(kUpgradeHead) + "\x81\x05hello";
  assert_int_equal(feed_bytewise(*f.parser, f.s), kUpgradeHead.size());
  assert_true(f.parser->upgraded());
  f.req = f.parser->take_request();
  assert_true(f.req.upgrade);
}

void upgrade_needs_both_headers(void** state) {
  auto& f = fixture(state);
  // Connection: upgrade without Upgrade, and Upgrade without the Connection token: plain requests.
  const std::string_view in =
      "GET /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
  assert_int_equal(feed(*f.parser, in), in.size());
  assert_false(f.parser->upgraded());
  assert_int_equal(f.parser->queued(), 3);
  f.req = f.parser->take_request();
  assert_false(f.req.upgrade);
  f.req = f.parser->take_request();
  assert_false(f.req.upgrade);
}

// ---- headers and tokens ----

void has_token_lists(void** state) {
  auto& f = fixture(state);
  feed(*f.parser,
       "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nX-List: a,,b ,\tc\r\n\r\n");
  f.req = f.parser->take_request();
  assert_true(f.req.has_token("Connection", "upgrade"));
  assert_true(f.req.has_token("connection", "KEEP-ALIVE"));
  assert_false(f.req.has_token("Connection", "close"));
  assert_false(f.req.has_token("Connection", "up"));
  assert_false(f.req.has_token("Connection", "keep-alive, Upgrade"));
  assert_false(f.req.has_token("Upgrade", "upgrade"));
  assert_true(f.req.has_token("X-List", "b"));
  assert_true(f.req.has_token("X-List", "c"));
}

// ---- errors ----

void smuggling_framing_errors(void** state) {
  auto& f = fixture(state);
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
               400, "both Content-Length and Transfer-Encoding");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
               400, "both Content-Length and Transfer-Encoding");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", 400,
               "both Content-Length and Transfer-Encoding");
  // Any second Content-Length is refused, whether or not the values agree.
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
               "duplicate Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400,
               "duplicate Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
               "unsupported Transfer-Encoding");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
               "unsupported Transfer-Encoding");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501,
               "unsupported Transfer-Encoding");
  expect_error(
      f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      501, "unsupported Transfer-Encoding");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400,
               "invalid Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400,
               "invalid Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400,
               "invalid Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,5\r\n\r\n", 400,
               "invalid Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400,
               "invalid Content-Length header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400,
               "invalid Content-Length header");
  // "Transfer-Encoding :" is read as Transfer-Encoding by lenient parsers, not by others.
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
               "whitespace in header field name");
  // obs-fold: a server behind us might join the lines differently.
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", 400,
               "obsolete line folding in request header");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\t2\r\n\r\n", 400,
               "obsolete line folding in request header");
  expect_error(f, "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, "obsolete line folding in request header");
}

// http-parser, built without HTTP_PARSER_STRICT, takes "\r" + any byte for a CRLF in places.
void bare_cr_and_chunk_framing(void** state) {
  auto& f = fixture(state);
  constexpr std::string_view kHead = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  f.s = std::string(kHead) + "5\r\nhelloAB0\r\n\r\n";
  expect_error(f, f.s, 400, "malformed request body: chunk line not ended by CRLF");
  f.s = std::string(kHead) + "5\rXhello\r\n0\r\n\r\n";
  expect_error(f, f.s, 400, "malformed request body: chunk line not ended by CRLF");
  f.s = std::string(kHead) + "5\r\nhello\r\n0\r\n\rX";
  expect_error(f, f.s, 400, "bare CR in request trailer");
  f.s = std::string(kHead) + "5\r\nhello\r\n0\r\nX: y\r\n\rX";
  expect_error(f, f.s, 400, "bare CR in request trailer");
  expect_error(f, "GET / HTTP/1.1\r\nHost: h\r\n\rX", 400, "bare CR in request header");
  expect_error(f, "GET / HTTP/1.1\r\nHost: h\r\nX:\rYZ: 1\r\n\r\n", 400, "bare CR in request header");
  expect_error(f, "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare CR in request header");

  // The same, one byte at a time: the checks see across feed() calls.
  f.parser = std::make_unique<RequestParser>();
  f.s = std::string(kHead) + "5\r\nhelloAB0\r\n\r\n";
  feed_bytewise(*f.parser, f.s);
  assert_int_equal(f.parser->error_status(), 400);
  assert_false(f.parser->has_request());

  // Bare LFs are accepted as line ends (RFC 7230 3.5), and chunk data may hold any byte.
  f.parser = std::make_unique<RequestParser>();
  f.s = "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n4\r\n\r\r\n\n\r\n0\r\n\r\n";
  assert_int_equal(feed_bytewise(*f.parser, f.s), f.s.size());
  assert_false(f.parser->failed());
  f.req = f.parser->take_request();
  assert_true(f.req.body == "\r\r\n\n");
}

void malformed_requests(void** state) {
  auto& f = fixture(state);
  expect_error(f, "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line: ", true);
  expect_error(f, "BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line: invalid HTTP method");
  expect_error(f, "GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400, "malformed request line: ", true);
  expect_error(f, "GET / FTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line: ", true);
  expect_error(f, "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line: ", true);
  expect_error(f, "GET / HTTP/1.1\r\nHost h\r\n\r\n", 400, "malformed request header: ", true);
  expect_error(f, "GET / HTTP/1.1\r\nHost: h\r\nX-Bad: a\x01z\r\n\r\n", 400,
               "malformed request header: invalid character in header");
  expect_error(f, "GET / HTTP/1.1\r\nHost: h\r\nX: y\r\r\n\r\n", 400, "malformed request header: ", true);
  expect_error(f, "GET / HTTP/1.1\r\n\r\n", 400, "missing Host header");
  expect_error(f, "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "duplicate Host header");
  expect_error(f, "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP version not supported");
  expect_error(f, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501,
               "CONNECT is not supported");
  expect_error(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
               "malformed request body: invalid character in chunk size header");
}

void error_after_good_request_keeps_it(void** state) {
  auto& f = fixture(state);
  const std::string_view in = "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\n\r\n";
  feed(*f.parser, in);
  assert_true(f.parser->failed());
  assert_int_equal(f.parser->error_status(), 400);
  assert_string_equal(f.parser->error_reason().c_str(), "missing Host header");
  assert_int_equal(f.parser->queued(), 1);
  f.req = f.parser->take_request();
  assert_string_equal(f.req.path.c_str(), "/ok");
}

// ---- limits ----

void header_limit_on_a_head_that_never_ends(void** state) {
  auto& f = fixture(state);
  f.parser = std::make_unique<RequestParser>(ParserLimits{.max_header_bytes = 256, .max_body_bytes = 1024});
  size_t fed = feed(*f.parser, "GET / HTTP/1.1\r\nHost: h\r\n");
  // Lines of 32 bytes, in pieces that never end the head.
  while (!f.parser->failed()) {
    assert_true(fed <= 256);  // still under the limit when not failed
    fed += feed(*f.parser, "X-Filler: aaaaaaaaaaaaaaaaaaa\r\n");
  }
  assert_int_equal(f.parser->error_status(), 431);
  assert_string_equal(f.parser->error_reason().c_str(), "request header fields too large");
  assert_false(f.parser->has_request());

  // One endless value, no line ending at all.
  f.parser = std::make_unique<RequestParser>(ParserLimits{.max_header_bytes = 256, .max_body_bytes = 1024});
  feed(*f.parser, "GET / HTTP/1.1\r\nX-Endless: ");
  f.s.assign(64, 'a');
  for (int i = 0; i < 10 && !f.parser->failed(); ++i) feed(*f.parser, f.s);
  assert_int_equal(f.parser->error_status(), 431);

  // Endless empty lines before a request line count too.
  f.parser = std::make_unique<RequestParser>(ParserLimits{.max_header_bytes = 256, .max_body_bytes = 1024});
  for (int i = 0; i < 200 && !f.parser->failed(); ++i) feed(*f.parser, "\r\n");
  assert_int_equal(f.parser->error_status(), 431);
}

void header_limit_is_exact(void** state) {
  auto& f = fixture(state);
  const std::string_view head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";  // 27 bytes
  f.parser =
      std::make_unique<RequestParser>(ParserLimits{.max_header_bytes = head.size(), .max_body_bytes = 8});
  assert_int_equal(feed_bytewise(*f.parser, head), head.size());
  assert_false(f.parser->failed());
  assert_true(f.parser->has_request());
  // The limit applies per head: a second request of the same size is fine too.
  assert_int_equal(feed(*f.parser, head), head.size());
  assert_int_equal(f.parser->queued(), 2);

  f.parser =
      std::make_unique<RequestParser>(ParserLimits{.max_header_bytes = head.size() - 1, .max_body_bytes = 8});
  feed(*f.parser, head);
  assert_int_equal(f.parser->error_status(), 431);
  assert_false(f.parser->has_request());

  // The body does not count towards the head (47 bytes).
  f.parser = std::make_unique<RequestParser>(ParserLimits{.max_header_bytes = 47, .max_body_bytes = 8});
  f.s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n12345678";
  assert_int_equal(feed(*f.parser, f.s), f.s.size());
  assert_false(f.parser->failed());
}

void body_limit(void** state) {
  auto& f = fixture(state);
  const ParserLimits limits{.max_header_bytes = 1024, .max_body_bytes = 10};
  f.parser = std::make_unique<RequestParser>(limits);
  feed(*f.parser, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789");
  assert_false(f.parser->failed());
  assert_true(f.parser->has_request());

  // Refused from the Content-Length alone, before any body byte.
  f.parser = std::make_unique<RequestParser>(limits);
  feed(*f.parser, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
  assert_int_equal(f.parser->error_status(), 413);
  assert_string_equal(f.parser->error_reason().c_str(), "request body too large");

  f.parser = std::make_unique<RequestParser>(limits);
  feed(*f.parser,
       "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
       "chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n");
  assert_false(f.parser->failed());
  assert_true(f.parser->has_request());

  f.parser = std::make_unique<RequestParser>(limits);
  feed(*f.parser, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n56789");
  assert_false(f.parser->failed());
  feed(*f.parser, "A");
  assert_int_equal(f.parser->error_status(), 413);
  assert_string_equal(f.parser->error_reason().c_str(), "request body too large");
  assert_false(f.parser->has_request());
}

// ---- helpers ----

void reason_phrases(void** state) {
  (void)state;
  assert_true(reason_phrase(101) == "Switching Protocols");
  assert_true(reason_phrase(200) == "OK");
  assert_true(reason_phrase(400) == "Bad Request");
  assert_true(reason_phrase(413) == "Payload Too Large");
  assert_true(reason_phrase(431) == "Request Header Fields Too Large");
  assert_true(reason_phrase(501) == "Not Implemented");
  assert_true(reason_phrase(505) == "HTTP Version Not Supported");
  assert_true(reason_phrase(299) == "Unknown");
}

void url_decoding(void** state) {
  auto& f = fixture(state);
  assert_true(url_decode("a%20b+c", f.s));
  assert_string_equal(f.s.c_str(), "a b c");
  assert_true(url_decode("%41%4a%4A", f.s));
  assert_string_equal(f.s.c_str(), "AJJ");
  assert_true(url_decode("", f.s));
  assert_true(f.s.empty());
  assert_true(url_decode("%2B", f.s));
  assert_string_equal(f.s.c_str(), "+");
  assert_false(url_decode("%zz", f.s));
  assert_true(f.s.empty());
  assert_false(url_decode("ab%2", f.s));
  assert_false(url_decode("ab%", f.s));
  assert_false(url_decode("%g1", f.s));
}

void query_params(void** state) {
  auto& f = fixture(state);
  assert_true(query_param("a&b=1", "a", f.s));
  assert_string_equal(f.s.c_str(), "");
  assert_true(query_param("a&b=1", "b", f.s));
  assert_string_equal(f.s.c_str(), "1");
  assert_false(query_param("a&b=1", "c", f.s));
  assert_false(query_param("", "a", f.s));
  assert_true(query_param("x=1&x=2", "x", f.s));  // first match
  assert_string_equal(f.s.c_str(), "1");
  assert_true(query_param("q=hello+world%21&&z=", "q", f.s));
  assert_string_equal(f.s.c_str(), "hello world!");
  assert_true(query_param("q=hello+world%21&&z=", "z", f.s));
  assert_string_equal(f.s.c_str(), "");
  assert_true(query_param("a=1=2", "a", f.s));
  assert_string_equal(f.s.c_str(), "1=2");
  assert_true(query_param("my%20key=v", "my key", f.s));  // names are decoded too
  assert_string_equal(f.s.c_str(), "v");
  assert_false(query_param("ab=1", "a", f.s));
  assert_false(query_param("a=%zz", "a", f.s));  // bad escape
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(simple_get, setup, teardown),
      cmocka_unit_test_setup_teardown(target_forms, setup, teardown),
      cmocka_unit_test_setup_teardown(keep_alive_semantics, setup, teardown),
      cmocka_unit_test_setup_teardown(close_ignores_what_follows, setup, teardown),
      cmocka_unit_test_setup_teardown(chunked_body_with_extensions_and_trailers, setup, teardown),
      cmocka_unit_test_setup_teardown(content_length_body, setup, teardown),
      cmocka_unit_test_setup_teardown(byte_at_a_time_matches_whole, setup, teardown),
      cmocka_unit_test_setup_teardown(any_split_gives_the_same_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(in_request_tracks_partial_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(pipelined_requests_queue_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(upgrade_leaves_the_rest, setup, teardown),
      cmocka_unit_test_setup_teardown(upgrade_byte_at_a_time, setup, teardown),
      cmocka_unit_test_setup_teardown(upgrade_needs_both_headers, setup, teardown),
      cmocka_unit_test_setup_teardown(has_token_lists, setup, teardown),
      cmocka_unit_test_setup_teardown(smuggling_framing_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(bare_cr_and_chunk_framing, setup, teardown),
      cmocka_unit_test_setup_teardown(malformed_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(error_after_good_request_keeps_it, setup, teardown),
      cmocka_unit_test_setup_teardown(header_limit_on_a_head_that_never_ends, setup, teardown),
      cmocka_unit_test_setup_teardown(header_limit_is_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(body_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(reason_phrases, setup, teardown),
      cmocka_unit_test_setup_teardown(url_decoding, setup, teardown),
      cmocka_unit_test_setup_teardown(query_params, setup, teardown),
  };
  return cmocka_run_group_tests_name("http/request_parser.cpp", tests, nullptr, nullptr);
}
