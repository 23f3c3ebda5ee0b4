// conf/values.cpp: sizes, counts, durations, flags and key=value arguments, and their error reasons.

#include <optional>
#include <string>

#include "conf/parser.h"
#include "conf/values.h"

// Last: cmocka.h defines macros (fail, ...) that break standard headers included after it.
#include "cmocka.hpp"

namespace {

using tether::Errc;
using tether::Result;
using namespace tether::conf;

struct Fixture {
  std::optional<Result<uint64_t>> number;
  std::optional<Result<std::chrono::milliseconds>> duration;
  std::optional<Result<bool>> flag;
  std::optional<Result<std::pair<std::string_view, std::string_view>>> pair;
  std::optional<Result<Tree>> tree;
  std::optional<tether::Error> error;
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

// The value of R (a result kept in the fixture), or the test fails naming INPUT.
template <class T>
const T& ok_value(const Result<T>& r, std::string_view input) {
  if (!r.ok()) fail_msg("\"%.*s\": %s", static_cast<int>(input.size()), input.data(), r.error().what.c_str());
  return r.value();
}

// The reason of R (a result kept in the fixture); an error result is always Errc::kInvalid.
template <class T>
const char* reason(const Result<T>& r) {
  if (r.ok()) return "(no error)";
  assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(Errc::kInvalid));
  return r.error().what.c_str();
}

uint64_t size(Fixture& f, std::string_view s) {
  return ok_value(f.number.emplace(parse_size(s)), s);
}
const char* size_error(Fixture& f, std::string_view s) {
  return reason(f.number.emplace(parse_size(s)));
}
uint64_t count(Fixture& f, std::string_view s) {
  return ok_value(f.number.emplace(parse_count(s)), s);
}
const char* count_error(Fixture& f, std::string_view s) {
  return reason(f.number.emplace(parse_count(s)));
}
int64_t ms(Fixture& f, std::string_view s) {
  return ok_value(f.duration.emplace(parse_duration(s)), s).count();
}
const char* duration_error(Fixture& f, std::string_view s) {
  return reason(f.duration.emplace(parse_duration(s)));
}
bool flag(Fixture& f, std::string_view s) {
  return ok_value(f.flag.emplace(parse_flag(s)), s);
}
const char* flag_error(Fixture& f, std::string_view s) {
  return reason(f.flag.emplace(parse_flag(s)));
}

void sizes(void** state) {
  Fixture& f = fixture(state);
  assert_int_equal(size(f, "0"), 0);
  assert_int_equal(size(f, "512"), 512);
  assert_int_equal(size(f, "16k"), 16 * 1024);
  assert_int_equal(size(f, "16K"), 16 * 1024);
  assert_int_equal(size(f, "1m"), 1024 * 1024);
  assert_int_equal(size(f, "3M"), 3 * 1024 * 1024);
  assert_int_equal(size(f, "2g"), 2ull << 30);
  assert_int_equal(size(f, "2G"), 2ull << 30);
  assert_int_equal(size(f, "007"), 7);
  assert_int_equal(size(f, "18446744073709551615"), UINT64_MAX);
  assert_int_equal(size(f, "17179869183g"), 17179869183ull << 30);
}

void size_errors(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(size_error(f, ""), "not a size");
  assert_string_equal(size_error(f, "k"), "not a size");
  assert_string_equal(size_error(f, "-1"), "not a size");
  assert_string_equal(size_error(f, "+1"), "not a size");
  assert_string_equal(size_error(f, " 1"), "not a size");
  assert_string_equal(size_error(f, "1 "), "not a size");
  assert_string_equal(size_error(f, "1.5k"), "not a size");
  assert_string_equal(size_error(f, "16kb"), "not a size");
  assert_string_equal(size_error(f, "16t"), "not a size");
  assert_string_equal(size_error(f, "0x10"), "not a size");
  assert_string_equal(size_error(f, "18446744073709551616"), "size is too large");
  assert_string_equal(size_error(f, "17179869184g"), "size is too large");  // exactly 2^64
  assert_string_equal(size_error(f, "18014398509481984k"), "size is too large");
}

void counts(void** state) {
  Fixture& f = fixture(state);
  assert_int_equal(count(f, "0"), 0);
  assert_int_equal(count(f, "100"), 100);
  assert_int_equal(count(f, "100k"), 100000);
  assert_int_equal(count(f, "1K"), 1000);
  assert_int_equal(count(f, "2m"), 2000000);
  assert_int_equal(count(f, "2M"), 2000000);
}

void count_errors(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(count_error(f, ""), "not a count");
  assert_string_equal(count_error(f, "1g"), "not a count");
  assert_string_equal(count_error(f, "ten"), "not a count");
  assert_string_equal(count_error(f, "-5"), "not a count");
  assert_string_equal(count_error(f, "1km"), "not a count");
  assert_string_equal(count_error(f, "18446744073709552k"), "count is too large");
  assert_string_equal(count_error(f, "99999999999999999999"), "count is too large");
}

void durations(void** state) {
  Fixture& f = fixture(state);
  assert_int_equal(ms(f, "0"), 0);
  assert_int_equal(ms(f, "0s"), 0);
  assert_int_equal(ms(f, "30"), 30000);  // a bare number is seconds
  assert_int_equal(ms(f, "500ms"), 500);
  assert_int_equal(ms(f, "30s"), 30000);
  assert_int_equal(ms(f, "5m"), 300000);
  assert_int_equal(ms(f, "1h"), 3600000);
  assert_int_equal(ms(f, "1d"), 86400000);
  assert_int_equal(ms(f, "1m30s"), 90000);
  assert_int_equal(ms(f, "1h30m"), 5400000);
  assert_int_equal(ms(f, "1s500ms"), 1500);
  assert_int_equal(ms(f, "1d2h3m4s5ms"), 86400000 + 2 * 3600000 + 3 * 60000 + 4 * 1000 + 5);
  assert_int_equal(ms(f, "90m"), 5400000);  // no carrying rules: 90m is fine
  assert_int_equal(ms(f, "9223372036854775807ms"), INT64_MAX);
}

void duration_errors(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(duration_error(f, ""), "not a duration");
  assert_string_equal(duration_error(f, "s"), "not a duration");
  assert_string_equal(duration_error(f, "ms"), "not a duration");
  assert_string_equal(duration_error(f, "1.5h"), "not a duration");
  assert_string_equal(duration_error(f, "-1s"), "not a duration");
  assert_string_equal(duration_error(f, "1x"), "not a duration");
  assert_string_equal(duration_error(f, "1H"), "not a duration");
  assert_string_equal(duration_error(f, "1 h"), "not a duration");
  assert_string_equal(duration_error(f, "1h "), "not a duration");
  assert_string_equal(duration_error(f, "30s1m"), "not a duration");  // units largest first
  assert_string_equal(duration_error(f, "1m1m"), "not a duration");   // each at most once
  assert_string_equal(duration_error(f, "1h30"), "not a duration");   // a bare number only on its own
  assert_string_equal(duration_error(f, "1hm"), "not a duration");
  assert_string_equal(duration_error(f, "1mss"), "not a duration");
  assert_string_equal(duration_error(f, "9223372036854775808ms"), "duration is too large");
  assert_string_equal(duration_error(f, "9223372036854775807"), "duration is too large");
  assert_string_equal(duration_error(f, "99999999999999999999d"), "duration is too large");
  assert_string_equal(duration_error(f, "106751991167d1d"), "not a duration");
  assert_string_equal(duration_error(f, "106751991167d23h59m59s"), "duration is too large");
}

void flags(void** state) {
  Fixture& f = fixture(state);
  assert_true(flag(f, "on"));
  assert_false(flag(f, "off"));
  assert_true(flag(f, "ON"));  // nginx compares without case
  assert_false(flag(f, "Off"));
  assert_string_equal(flag_error(f, "yes"), "it must be \"on\" or \"off\"");
  assert_string_equal(flag_error(f, ""), "it must be \"on\" or \"off\"");
  assert_string_equal(flag_error(f, "onn"), "it must be \"on\" or \"off\"");
  assert_string_equal(flag_error(f, "o"), "it must be \"on\" or \"off\"");
}

void key_values(void** state) {
  Fixture& f = fixture(state);
  const auto& kv = ok_value(f.pair.emplace(split_key_value("weight=5")), "weight=5");
  assert_true(kv.first == "weight");
  assert_true(kv.second == "5");
  const auto& empty = ok_value(f.pair.emplace(split_key_value("backup=")), "backup=");
  assert_int_equal(empty.first.size(), 6);
  assert_int_equal(empty.second.size(), 0);
  const auto& two = ok_value(f.pair.emplace(split_key_value("a=b=c")), "a=b=c");  // split at the first '='
  assert_true(two.first == "a");
  assert_true(two.second == "b=c");
}

void key_value_errors(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(reason(f.pair.emplace(split_key_value("weight"))), "expected key=value");
  assert_string_equal(reason(f.pair.emplace(split_key_value(""))), "expected key=value");
  assert_string_equal(reason(f.pair.emplace(split_key_value("=5"))), "empty key");
}

// How a directive setter reports a bad value: the reason joins invalid_value's message.
void reason_in_directive_error(void** state) {
  Fixture& f = fixture(state);
  f.tree.emplace(parse_string("\nclient_max_body_size 16q;\n", "t.conf"));
  assert_true(f.tree->ok());
  const Node& node = f.tree->value()[0];
  f.number.emplace(parse_size(node.args[0]));
  assert_false(f.number->ok());
  f.error = invalid_value(node, 0, f.number->error().what);
  assert_string_equal(f.error->what.c_str(),
                      "invalid value \"16q\" in \"client_max_body_size\" directive, not a size in t.conf:2");
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(sizes, setup, teardown),
      cmocka_unit_test_setup_teardown(size_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(counts, setup, teardown),
      cmocka_unit_test_setup_teardown(count_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(durations, setup, teardown),
      cmocka_unit_test_setup_teardown(duration_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(flags, setup, teardown),
      cmocka_unit_test_setup_teardown(key_values, setup, teardown),
      cmocka_unit_test_setup_teardown(key_value_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(reason_in_directive_error, setup, teardown),
  };
  return cmocka_run_group_tests_name("conf/values.cpp", tests, nullptr, nullptr);
}
