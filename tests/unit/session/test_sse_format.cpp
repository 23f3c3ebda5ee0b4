// Tests for proxy/session/sse_format.cpp: byte-exact text/event-stream output, read back with a
// parser written from the WHATWG HTML "Server-sent events" section, and Last-Event-ID parsing.

#include <cstdio>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cmocka.hpp"
#include "proxy/session/sse_format.h"

namespace {

using namespace std::string_view_literals;
namespace session = tether::session;

constexpr std::string_view kSid = "AbCdEfGhIjKlMnOpQr-_09";

struct SseEvent {
  std::string id;
  std::string type;
  std::string data;
};

struct Fixture {
  std::string out;
  std::string want;
  std::string payload;
  std::string sid;
  std::vector<SseEvent> events;
  std::mt19937 rng{20240608};
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

std::string printable(std::string_view s) {
  std::string r;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      r += "\\n";
    } else if (c == '\r') {
      r += "\\r";
    } else if (c >= 0x20 && c < 0x7F && c != '\\') {
      r += ch;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      r += hex;
    }
  }
  return r;
}

void expect_bytes(std::string_view got, std::string_view want) {
  if (got == want) return;
  print_error("got  \"%s\"\nwant \"%s\"\n", printable(got).c_str(), printable(want).c_str());
  fail_msg("output differs");
}

// Parses a whole event stream (WHATWG HTML 9.2.6), with "message" as the default type.
void parse_stream(std::string_view stream, std::vector<SseEvent>& events) {
  events.clear();
  std::string data, type, last_id;
  bool has_data = false;
  size_t pos = 0;
  while (pos < stream.size()) {
    size_t eol = stream.find_first_of("\r\n", pos);
    assert_true(eol != std::string_view::npos);  // every line we write is terminated
    std::string_view line = stream.substr(pos, eol - pos);
    pos = eol + 1;
    if (stream[eol] == '\r' && pos < stream.size() && stream[pos] == '\n') ++pos;
    if (line.empty()) {
      if (has_data) {
        data.pop_back();  // the LF after the last data line
        events.push_back({last_id, type.empty() ? "message" : type, data});
      }
      data.clear();
      type.clear();
      has_data = false;
      continue;
    }
    if (line[0] == ':') continue;
    size_t colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? ""sv : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    if (field == "data") {
      data.append(value);
      data += '\n';
      has_data = true;
    } else if (field == "event") {
      type = value;
    } else if (field == "id") {
      last_id = value;
    }
  }
}

// PAYLOAD with CRLF and CR turned into LF: what an EventSource hands to the page.
std::string normalized(std::string_view payload) {
  std::string r;
  for (size_t i = 0; i < payload.size(); ++i) {
    if (payload[i] == '\r') {
      r += '\n';
      if (i + 1 < payload.size() && payload[i + 1] == '\n') ++i;
    } else {
      r += payload[i];
    }
  }
  return r;
}

void expect_text(Fixture& f, std::string_view payload, std::string_view data_lines) {
  f.out.clear();
  session::append_sse_message(f.out, kSid, 7, false, payload);
  f.want = "id: " + std::string(kSid) + ".7\n";
  f.want += data_lines;
  f.want += "\n";
  expect_bytes(f.out, f.want);
  parse_stream(f.out, f.events);
  assert_int_equal(f.events.size(), 1);
  expect_bytes(f.events[0].data, normalized(payload));
  assert_string_equal(f.events[0].type.c_str(), "message");
}

void text_single_line(void** state) {
  auto& f = fixture(state);
  expect_text(f, "hello", "data: hello\n");
  expect_text(f, " leading space", "data:  leading space\n");
  expect_text(f, "a: b", "data: a: b\n");
  expect_text(f, ":not a comment", "data: :not a comment\n");
  expect_text(f, "data: nested", "data: data: nested\n");
}

void text_line_endings(void** state) {
  auto& f = fixture(state);
  expect_text(f, "a\nb", "data: a\ndata: b\n");
  expect_text(f, "a\rb", "data: a\ndata: b\n");
  expect_text(f, "a\r\nb", "data: a\ndata: b\n");
  expect_text(f, "a\n\rb", "data: a\ndata: \ndata: b\n");  // LF then CR: two endings
  expect_text(f, "a\r\rb", "data: a\ndata: \ndata: b\n");
  expect_text(f, "a\n\nb", "data: a\ndata: \ndata: b\n");
  expect_text(f, "a\r\nb\rc\nd\r\n\re", "data: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: e\n");
}

void text_trailing_and_leading_endings(void** state) {
  auto& f = fixture(state);
  expect_text(f, "a\n", "data: a\ndata: \n");
  expect_text(f, "a\r", "data: a\ndata: \n");
  expect_text(f, "a\r\n", "data: a\ndata: \n");
  expect_text(f, "\na", "data: \ndata: a\n");
  expect_text(f, "\n", "data: \ndata: \n");
  expect_text(f, "\r\n", "data: \ndata: \n");
  expect_text(f, "\r", "data: \ndata: \n");
  expect_text(f, "\r\n\r\n", "data: \ndata: \ndata: \n");
}

void text_empty_message(void** state) {
  auto& f = fixture(state);
  expect_text(f, "", "data: \n");
}

void text_unicode_passes_unchanged(void** state) {
  auto& f = fixture(state);
  expect_text(f, "h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x98\x80",
              "data: h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x98\x80\n");
  // U+2028, U+2029 and U+0085 end lines elsewhere, not in SSE.
  static_assert(std::string_view("a\u2028b\u2029c\u0085d").size() == 12);  // UTF-8 literals
  expect_text(f, "a\u2028b\u2029c\u0085d", "data: a\u2028b\u2029c\u0085d\n");
  // U+FEFF inside a message is data (only a BOM at the start of the stream is dropped).
  expect_text(f, "\xEF\xBB\xBFx", "data: \xEF\xBB\xBFx\n");
}

void text_appends_and_formats_seq(void** state) {
  auto& f = fixture(state);
  f.out = "before";
  session::append_sse_message(f.out, kSid, 0, false, "x");
  expect_bytes(f.out, "beforeid: AbCdEfGhIjKlMnOpQr-_09.0\ndata: x\n\n");
  f.out.clear();
  session::append_sse_message(f.out, kSid, UINT64_MAX, false, "x");
  expect_bytes(f.out, "id: AbCdEfGhIjKlMnOpQr-_09.18446744073709551615\ndata: x\n\n");
  f.out.clear();
  session::append_sse_message(f.out, kSid, 1, false, "a");
  session::append_sse_message(f.out, kSid, 2, false, "b\nc");
  expect_bytes(f.out,
               "id: AbCdEfGhIjKlMnOpQr-_09.1\ndata: a\n\n"
               "id: AbCdEfGhIjKlMnOpQr-_09.2\ndata: b\ndata: c\n\n");
}

void text_random_round_trip(void** state) {
  auto& f = fixture(state);
  static const std::string_view kPieces[] = {"a",  "b",    " ",        ":",     "\r",
                                             "\n", "\r\n", "\xC3\xA9", "data:", "id:"};
  for (int round = 0; round < 2000; ++round) {
    f.payload.clear();
    const size_t n = f.rng() % 12;
    for (size_t i = 0; i < n; ++i) f.payload += kPieces[f.rng() % std::size(kPieces)];
    f.out.clear();
    session::append_sse_message(f.out, kSid, static_cast<uint64_t>(round) + 1, false, f.payload);
    session::append_sse_message(f.out, kSid, static_cast<uint64_t>(round) + 2, true, f.payload);
    parse_stream(f.out, f.events);
    assert_int_equal(f.events.size(), 2);
    expect_bytes(f.events[0].data, normalized(f.payload));
    assert_string_equal(f.events[0].id.c_str(),
                        (std::string(kSid) + "." + std::to_string(round + 1)).c_str());
    assert_string_equal(f.events[1].type.c_str(), "binary");
    expect_bytes(f.events[1].data, session::base64_encode(f.payload));
  }
}

void binary_all_byte_values(void** state) {
  auto& f = fixture(state);
  for (int i = 0; i < 256; ++i) f.payload += static_cast<char>(i);
  session::append_sse_message(f.out, kSid, 42, true, f.payload);
  expect_bytes(
      f.out,
      "id: AbCdEfGhIjKlMnOpQr-_09.42\n"
      "event: binary\n"
      "data: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZH"
      "SElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+"
      "AgYKDhIWGh4iJiouMjY6PkJGSk5SV"
      "lpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/"
      "g4eLj"
      "5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==\n"
      "\n");
}

void binary_is_one_line(void** state) {
  auto& f = fixture(state);
  session::append_sse_message(f.out, kSid, 1, true, "\r\n\n");
  expect_bytes(f.out, "id: AbCdEfGhIjKlMnOpQr-_09.1\nevent: binary\ndata: DQoK\n\n");
  f.out.clear();
  session::append_sse_message(f.out, kSid, 2, true, "");
  expect_bytes(f.out, "id: AbCdEfGhIjKlMnOpQr-_09.2\nevent: binary\ndata: \n\n");
  f.out.clear();
  f.payload.assign(100000, '\xFF');  // far past EVP_EncodeBlock's 64-character lines in PEM
  session::append_sse_message(f.out, kSid, 3, true, f.payload);
  parse_stream(f.out, f.events);
  assert_int_equal(f.events.size(), 1);
  assert_int_equal(f.events[0].data.size(), 4 * ((100000 + 2) / 3));
  expect_bytes(f.events[0].data, std::string(4 * 33333, '/') + "/w==");  // 100000 = 3 * 33333 + 1
}

void base64_rfc4648_vectors(void** state) {
  (void)state;
  // RFC 4648 section 10.
  expect_bytes(session::base64_encode(""), "");
  expect_bytes(session::base64_encode("f"), "Zg==");
  expect_bytes(session::base64_encode("fo"), "Zm8=");
  expect_bytes(session::base64_encode("foo"), "Zm9v");
  expect_bytes(session::base64_encode("foob"), "Zm9vYg==");
  expect_bytes(session::base64_encode("fooba"), "Zm9vYmE=");
  expect_bytes(session::base64_encode("foobar"), "Zm9vYmFy");
  expect_bytes(session::base64_encode("\0\0\0"sv), "AAAA");
  expect_bytes(session::base64_encode("\xFB\xFF"sv), "+/8=");  // standard alphabet, not url
}

void event_with_and_without_id(void** state) {
  auto& f = fixture(state);
  session::append_sse_event(f.out, "tether-open", R"({"session":"AbCdEfGhIjKlMnOpQr-_09","protocol":""})",
                            "AbCdEfGhIjKlMnOpQr-_09.0");
  expect_bytes(f.out,
               "id: AbCdEfGhIjKlMnOpQr-_09.0\n"
               "event: tether-open\n"
               "data: {\"session\":\"AbCdEfGhIjKlMnOpQr-_09\",\"protocol\":\"\"}\n"
               "\n");
  f.out.clear();
  session::append_sse_event(f.out, "tether-gap", R"({"lost":3})");
  expect_bytes(f.out, "event: tether-gap\ndata: {\"lost\":3}\n\n");
  f.out.clear();
  session::append_sse_event(f.out, "tether-close", R"({"code":1000,"reason":""})", "");
  expect_bytes(f.out, "event: tether-close\ndata: {\"code\":1000,\"reason\":\"\"}\n\n");
  parse_stream(f.out, f.events);
  assert_int_equal(f.events.size(), 1);
  assert_string_equal(f.events[0].type.c_str(), "tether-close");
}

void comment_retry_and_heartbeat(void** state) {
  auto& f = fixture(state);
  session::append_sse_comment(f.out, "heartbeat");
  expect_bytes(f.out, ": heartbeat\n\n");
  f.out.clear();
  session::append_sse_comment(f.out, "");
  expect_bytes(f.out, ": \n\n");
  f.out.clear();
  session::append_sse_retry(f.out, 3000);
  expect_bytes(f.out, "retry: 3000\n\n");
  f.out.clear();
  session::append_sse_retry(f.out, 0);
  expect_bytes(f.out, "retry: 0\n\n");
  // None of them is an event.
  f.out.clear();
  session::append_sse_comment(f.out, "x");
  session::append_sse_retry(f.out, 10);
  parse_stream(f.out, f.events);
  assert_int_equal(f.events.size(), 0);
}

void padding_is_a_2k_comment(void** state) {
  auto& f = fixture(state);
  f.out = "x";
  session::append_sse_padding(f.out);
  assert_true(f.out.size() - 1 >= 2048);
  assert_int_equal(f.out[1], ':');
  assert_true(f.out.compare(f.out.size() - 2, 2, "\n\n") == 0);
  // One comment line: no line ending before the final blank line.
  assert_true(f.out.find_first_of("\r\n") == f.out.size() - 2);
  expect_bytes(f.out, "x:" + std::string(2048, ' ') + "\n\n");
  parse_stream(std::string_view(f.out).substr(1), f.events);
  assert_int_equal(f.events.size(), 0);
}

struct IdCase {
  std::string_view value;
  bool ok;
  uint64_t seq;
};

void parses_last_event_id(void** state) {
  auto& f = fixture(state);
  static const IdCase kCases[] = {
      {"AbCdEfGhIjKlMnOpQr-_09.0", true, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.1", true, 1},
      {"AbCdEfGhIjKlMnOpQr-_09.42", true, 42},
      {"AbCdEfGhIjKlMnOpQr-_09.007", true, 7},
      {"AbCdEfGhIjKlMnOpQr-_09.9223372036854775807", true, 9223372036854775807ULL},
      {"AbCdEfGhIjKlMnOpQr-_09.00000000000000000000009223372036854775807", true, 9223372036854775807ULL},
      {"AbCdEfGhIjKlMnOpQr-_09.9223372036854775808", false, 0},   // 2^63
      {"AbCdEfGhIjKlMnOpQr-_09.18446744073709551615", false, 0},  // 2^64 - 1
      {"AbCdEfGhIjKlMnOpQr-_09.18446744073709551616", false, 0},  // 2^64
      {"AbCdEfGhIjKlMnOpQr-_09.99999999999999999999999999", false, 0},
      {"", false, 0},
      {".", false, 0},
      {".1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.-1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.+1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09. 1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.1 ", false, 0},
      {" AbCdEfGhIjKlMnOpQr-_09.1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.1.2", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09..1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.1a", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.0x10", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.1e3", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.1\0"sv, false, 0},
      {"AbCdEfGhIjKlMnOpQr-_09.\xD9\xA1", false, 0},  // ARABIC-INDIC DIGIT ONE
      {"AbCdEfGhIjKlMnOpQr-_0.1", true, 1},           // 21 characters: opaque, still well formed
      {"AbCdEfGhIjKlMnOpQr-_090.1", true, 1},         // 23
      {"a.1", true, 1},
      {"AbCdEfGhIjKlMnOpQr-_09AbCdEfGhIjKlMnOpQr-_09AbCdEfGhIjKlMnOpQr-_09.1", false, 0},  // 66: too long
      {"AbCdEfGhIjKlMnOpQr+/09.1", false, 0},  // standard base64, not url
      {"AbCdEfGhIjKlMnOpQr-_0=.1", false, 0},
      {"AbCdEfGhIjKlMnOpQr-_0 .1", false, 0},
      {"AbCdEfGhIj.lMnOpQr-_09.1", false, 0},
      {"1.AbCdEfGhIjKlMnOpQr-_09", false, 0},
  };
  for (const IdCase& c : kCases) {
    f.sid = "unchanged";
    uint64_t seq = 12345;
    const bool ok = session::parse_last_event_id(c.value, f.sid, seq);
    if (ok != c.ok) {
      print_error("Last-Event-ID \"%s\": want %s\n", printable(c.value).c_str(), c.ok ? "valid" : "invalid");
      fail_msg("parse_last_event_id");
    }
    if (ok) {
      assert_string_equal(f.sid.c_str(), std::string(c.value.substr(0, c.value.find('.'))).c_str());
      assert_int_equal(seq, c.seq);
    } else {
      assert_string_equal(f.sid.c_str(), "unchanged");  // outputs untouched on failure
      assert_int_equal(seq, 12345);
    }
  }
}

void last_event_id_round_trips(void** state) {
  auto& f = fixture(state);
  session::append_sse_message(f.out, kSid, 9223372036854775807ULL, false, "x");
  parse_stream(f.out, f.events);
  assert_int_equal(f.events.size(), 1);
  uint64_t seq = 0;
  assert_true(session::parse_last_event_id(f.events[0].id, f.sid, seq));
  assert_string_equal(f.sid.c_str(), std::string(kSid).c_str());
  assert_int_equal(seq, 9223372036854775807ULL);
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(text_single_line),
      TEST(text_line_endings),
      TEST(text_trailing_and_leading_endings),
      TEST(text_empty_message),
      TEST(text_unicode_passes_unchanged),
      TEST(text_appends_and_formats_seq),
      TEST(text_random_round_trip),
      TEST(binary_all_byte_values),
      TEST(binary_is_one_line),
      TEST(base64_rfc4648_vectors),
      TEST(event_with_and_without_id),
      TEST(comment_retry_and_heartbeat),
      TEST(padding_is_a_2k_comment),
      TEST(parses_last_event_id),
      TEST(last_event_id_round_trips),
  };
#undef TEST
  return cmocka_run_group_tests_name("session/sse_format.cpp", tests, nullptr, nullptr);
}
