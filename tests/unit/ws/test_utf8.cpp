// Tests for proxy/ws/utf8.cpp: the incremental UTF-8 validator.

#include <string>
#include <string_view>

#include "cmocka.hpp"
#include "proxy/ws/codec.h"

namespace {

using tether::ws::is_valid_utf8;
using tether::ws::Utf8Validator;

// A plain decoder written from RFC 3629 section 4, to check the DFA against.
bool reference_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t len;
    uint32_t cp;
    uint32_t min;
    if (b < 0x80) {
      ++i;
      continue;
    }
    if (b >= 0xC0 && b < 0xE0) {
      len = 2;
      cp = b & 0x1F;
      min = 0x80;
    } else if (b >= 0xE0 && b < 0xF0) {
      len = 3;
      cp = b & 0x0F;
      min = 0x800;
    } else if (b >= 0xF0 && b < 0xF8) {
      len = 4;
      cp = b & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = cp << 6 | (c & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Whether some continuation of S is valid UTF-8. Continuations only need bytes 80..BF, and the
// validator's ranges change only at 8F/90, 9F/A0: one byte on each side of those edges suffices.
bool reference_prefix(std::string_view s) {
  static const char kReps[] = {'\x80', '\x8F', '\x90', '\x9F', '\xA0', '\xBF'};
  char buf[8];
  const size_t n = s.size();
  s.copy(buf, n);
  if (reference_valid({buf, n})) return true;
  for (char a : kReps) {
    buf[n] = a;
    if (reference_valid({buf, n + 1})) return true;
    for (char b : kReps) {
      buf[n + 1] = b;
      if (reference_valid({buf, n + 2})) return true;
      for (char c : kReps) {
        buf[n + 2] = c;
        if (reference_valid({buf, n + 3})) return true;
      }
    }
  }
  return false;
}

void accepts_valid_samples(void**) {
  const char* const samples[] = {
      "",
      "hello, world",
      "\xC2\x80",                                      // U+0080
      "\xDF\xBF",                                      // U+07FF
      "\xE0\xA0\x80",                                  // U+0800
      "\xED\x9F\xBF",                                  // U+D7FF, just below the surrogates
      "\xEE\x80\x80",                                  // U+E000, just above them
      "\xEF\xBF\xBF",                                  // U+FFFF
      "\xF0\x90\x80\x80",                              // U+10000
      "\xF4\x8F\xBF\xBF",                              // U+10FFFF, the last code point
      "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",  // "kosme" in Greek
      "0123456789abcdef0123456789abcdef\xF0\x9F\x98\x80 0123456789abcdef",
  };
  for (const char* s : samples) {
    Utf8Validator v;
    assert_true(v.feed(s));
    assert_true(v.complete());
    assert_true(is_valid_utf8(s));
  }
}

// Each sample fails at the byte at index `at`, not later: the prefix before it is still viable.
void rejects_at_the_first_bad_byte(void**) {
  struct Case {
    std::string_view bytes;
    size_t at;
  };
  const Case cases[] = {
      {"\xC0\x80", 0},              // overlong NUL
      {"\xC1\xBF", 0},              // overlong U+007F
      {"\xE0\x80\x80", 1},          // overlong 3-byte
      {"\xE0\x9F\xBF", 1},          // overlong U+07FF
      {"\xF0\x80\x80\x80", 1},      // overlong 4-byte
      {"\xF0\x8F\xBF\xBF", 1},      // overlong U+FFFF
      {"\xED\xA0\x80", 1},          // U+D800
      {"\xED\xBF\xBF", 1},          // U+DFFF
      {"\xF4\x90\x80\x80", 1},      // U+110000
      {"\xF5\x80\x80\x80", 0},      // lead byte past U+10FFFF
      {"\xF8\x88\x80\x80\x80", 0},  // 5-byte form
      {"\xFE", 0},
      {"\xFF", 0},
      {"\x80", 0},  // lone continuation
      {"\xBF", 0},
      {"a\xC2"
       "A",
       2},  // missing continuation
      {"\xE2\x82"
       "A",
       2},
      {"\xF0\x9F\x98"
       "A",
       3},
      {"0123456789abcdef\xC3\xA9\xFF", 18},  // after the ASCII fast path
      {"0123456789abcdef0123456789abcdef\x80", 32},
  };
  for (const Case& c : cases) {
    Utf8Validator v;
    for (size_t i = 0; i < c.at; ++i) assert_true(v.feed(c.bytes.substr(i, 1)));
    assert_false(v.feed(c.bytes.substr(c.at, 1)));
    assert_false(v.feed("a"));  // rejection is sticky
    assert_false(v.complete());
    Utf8Validator whole;
    assert_false(whole.feed(c.bytes));
    assert_false(is_valid_utf8(c.bytes));
  }
}

void truncated_sequences_are_viable_but_incomplete(void**) {
  for (std::string_view s : {"\xC3", "\xE2\x82", "\xF0\x9F\x98", "abc\xF4\x8F"}) {
    Utf8Validator v;
    assert_true(v.feed(s));
    assert_false(v.complete());
    assert_false(is_valid_utf8(s));
  }
  Utf8Validator v;
  assert_true(v.feed("\xE2\x82"));
  assert_true(v.feed("\xAC"));  // completes the euro sign
  assert_true(v.complete());
  v.reset();
  assert_true(v.feed("\xF0"));
  v.reset();
  assert_true(v.complete());
}

// Every 1-, 2- and 3-byte string: complete-validity matches the reference decoder, and the
// validator's verdict is the same whether the bytes come together or one at a time.
void agrees_with_reference_on_all_short_strings(void**) {
  std::string s;
  for (unsigned len = 1; len <= 3; ++len) {
    const unsigned total = 1u << (8 * len);
    s.resize(len);
    for (unsigned n = 0; n < total; ++n) {
      for (unsigned k = 0; k < len; ++k) s[k] = static_cast<char>(n >> (8 * k));
      const bool ok = reference_valid(s);
      if (is_valid_utf8(s) != ok) fail_msg("disagrees on length %u sample %06x", len, n);
      if (len == 3) continue;
      Utf8Validator v;
      bool viable = true;
      for (unsigned k = 0; k < len && viable; ++k) viable = v.feed(std::string_view(s).substr(k, 1));
      if (viable != reference_prefix(s)) fail_msg("fail-fast disagrees on length %u sample %04x", len, n);
    }
  }
}

// 4-byte strings: every lead byte from E0 up, with the other bytes at each range edge.
void agrees_with_reference_on_four_byte_edges(void**) {
  const uint8_t edges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
  std::string s(4, '\0');
  for (unsigned lead = 0xE0; lead <= 0xFF; ++lead) {
    for (uint8_t a : edges) {
      for (uint8_t b : edges) {
        for (uint8_t c : edges) {
          s[0] = static_cast<char>(lead);
          s[1] = static_cast<char>(a);
          s[2] = static_cast<char>(b);
          s[3] = static_cast<char>(c);
          if (is_valid_utf8(s) != reference_valid(s))
            fail_msg("disagrees on %02x %02x %02x %02x", lead, a, b, c);
        }
      }
    }
  }
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(accepts_valid_samples),
      cmocka_unit_test(rejects_at_the_first_bad_byte),
      cmocka_unit_test(truncated_sequences_are_viable_but_incomplete),
      cmocka_unit_test(agrees_with_reference_on_all_short_strings),
      cmocka_unit_test(agrees_with_reference_on_four_byte_edges),
  };
  return cmocka_run_group_tests_name("ws/utf8.cpp", tests, nullptr, nullptr);
}
