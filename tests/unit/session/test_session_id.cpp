// Tests for proxy/session/session_id.cpp: random base64url ids and their log form.

#include <array>
#include <string>
#include <string_view>
#include <unordered_set>

#include "cmocka.hpp"
#include "proxy/session/session_id.h"

namespace {

namespace session = tether::session;

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr int kDraws = 10000;

struct Fixture {
  std::unordered_set<std::string> seen;
  std::string id;
  std::string prefix;
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

void ids_are_22_base64url_characters(void** state) {
  auto& f = fixture(state);
  for (int i = 0; i < 1000; ++i) {
    f.id = session::new_session_id();
    assert_int_equal(f.id.size(), 22);
    assert_int_equal(session::kSessionIdLength, 22);
    for (char c : f.id) assert_true(kAlphabet.find(c) != std::string_view::npos);
    assert_true(session::is_session_id(f.id));
    // 128 bits fill 21 characters and 2 bits of the 22nd: its low 4 bits are zero.
    assert_true(std::string_view("AQgw").find(f.id.back()) != std::string_view::npos);
  }
}

void ids_are_unique_and_spread(void** state) {
  auto& f = fixture(state);
  std::array<int, 64> counts{};
  for (int i = 0; i < kDraws; ++i) {
    f.id = session::new_session_id();
    assert_true(f.seen.insert(f.id).second);
    for (size_t k = 0; k < 21; ++k) ++counts[kAlphabet.find(f.id[k])];
  }
  assert_int_equal(f.seen.size(), kDraws);
  // 210000 characters over 64 values: about 3281 each. A broken generator (a fixed byte, a
  // short seed, the wrong alphabet) misses this by far; chance alone never does.
  for (size_t v = 0; v < counts.size(); ++v) {
    if (counts[v] < 2800 || counts[v] > 3800) {
      print_error("'%c' drawn %d times\n", kAlphabet[v], counts[v]);
      fail_msg("uneven distribution");
    }
  }
}

void is_session_id_checks_the_form(void** state) {
  (void)state;
  assert_true(session::is_session_id("AAAAAAAAAAAAAAAAAAAAAA"));
  assert_true(session::is_session_id("AbCdEfGhIjKlMnOpQr-_09"));
  assert_true(session::is_session_id("----------------------"));
  assert_true(session::is_session_id("______________________"));
  assert_false(session::is_session_id(""));
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-_0"));    // 21
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-_090"));  // 23
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr+_09"));
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-/09"));
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-_0="));
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-_0."));
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-_0 "));
  assert_false(session::is_session_id(std::string_view("AbCdEfGhIjKlMnOpQr-_0\0", 22)));
  assert_false(session::is_session_id("AbCdEfGhIjKlMnOpQr-_\xC3\xA9"));  // 22 bytes, not ASCII
}

void log_prefix_shows_six_characters(void** state) {
  auto& f = fixture(state);
  assert_string_equal(session::log_prefix("AbCdEfGhIjKlMnOpQr-_09").c_str(), "AbCdEf\xE2\x80\xA6");
  f.id = session::new_session_id();
  f.prefix = session::log_prefix(f.id);
  assert_int_equal(f.prefix.size(), 6 + 3);
  assert_true(f.prefix.compare(0, 6, f.id, 0, 6) == 0);
  assert_true(f.prefix.find(f.id.substr(6)) == std::string::npos);
  // Shorter input (never a real id) is shown whole, still marked as cut.
  assert_string_equal(session::log_prefix("abc").c_str(), "abc\xE2\x80\xA6");
  assert_string_equal(session::log_prefix("").c_str(), "\xE2\x80\xA6");
  assert_string_equal(session::log_prefix("abcdef").c_str(), "abcdef\xE2\x80\xA6");
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(ids_are_22_base64url_characters),
      TEST(ids_are_unique_and_spread),
      TEST(is_session_id_checks_the_form),
      TEST(log_prefix_shows_six_characters),
  };
#undef TEST
  return cmocka_run_group_tests_name("session/session_id.cpp", tests, nullptr, nullptr);
}
