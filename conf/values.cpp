#include "conf/values.h"

#include <charconv>
#include <limits>
#include <string>

namespace tether::conf {

namespace {

Error invalid(std::string_view why) {
  return Error{Errc::kInvalid, std::string(why)};
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Leading decimal digits of S, removed from S. No sign, no spaces: from_chars takes neither for unsigned.
std::from_chars_result take_number(std::string_view& s, uint64_t& value) {
  const auto result = std::from_chars(s.data(), s.data() + s.size(), value);
  if (result.ec == std::errc{}) s.remove_prefix(static_cast<size_t>(result.ptr - s.data()));
  return result;
}

// A number with at most one suffix from SUFFIXES (either case); the i-th suffix multiplies by BASE^(i+1).
Result<uint64_t> parse_scaled(std::string_view s, std::string_view suffixes, uint64_t base,
                              std::string_view not_a, std::string_view too_large) {
  uint64_t value = 0;
  const auto number = take_number(s, value);
  if (number.ec == std::errc::result_out_of_range) return invalid(too_large);
  if (number.ec != std::errc{} || s.size() > 1) return invalid(not_a);
  if (s.empty()) return value;
  const size_t index = suffixes.find(lower(s[0]));
  if (index == std::string_view::npos) return invalid(not_a);
  for (size_t i = 0; i <= index; ++i) {
    if (__builtin_mul_overflow(value, base, &value)) return invalid(too_large);
  }
  return value;
}

struct DurationUnit {
  std::string_view name;
  uint64_t ms;
};

// Largest first: units must come in this order, each at most once ("1h30m", not "30m1h"), as in nginx.
constexpr DurationUnit kDurationUnits[] = {
    {"d", 24 * 60 * 60 * 1000}, {"h", 60 * 60 * 1000}, {"m", 60 * 1000}, {"s", 1000}, {"ms", 1},
};

// The index in kDurationUnits of the unit S starts with, removed from S; npos if none.
size_t take_duration_unit(std::string_view& s) {
  // "ms" before "m": "1ms" is a millisecond, and "1m" followed by "s" would be a unit without a number.
  size_t best = std::string_view::npos;
  for (size_t i = 0; i < std::size(kDurationUnits); ++i) {
    if (s.starts_with(kDurationUnits[i].name) &&
        (best == std::string_view::npos ||
         kDurationUnits[i].name.size() > kDurationUnits[best].name.size())) {
      best = i;
    }
  }
  if (best != std::string_view::npos) s.remove_prefix(kDurationUnits[best].name.size());
  return best;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view s) {
  return parse_scaled(s, "kmg", 1024, "not a size", "size is too large");
}

Result<uint64_t> parse_count(std::string_view s) {
  return parse_scaled(s, "km", 1000, "not a count", "count is too large");
}

Result<std::chrono::milliseconds> parse_duration(std::string_view s) {
  constexpr std::string_view kNotADuration = "not a duration";
  constexpr std::string_view kTooLarge = "duration is too large";
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<std::chrono::milliseconds::rep>::max());
  if (s.empty()) return invalid(kNotADuration);
  uint64_t total = 0;
  size_t next_unit = 0;  // units before this one in kDurationUnits are used up
  bool first = true;
  while (!s.empty()) {
    uint64_t value = 0;
    const auto number = take_number(s, value);
    if (number.ec == std::errc::result_out_of_range) return invalid(kTooLarge);
    if (number.ec != std::errc{}) return invalid(kNotADuration);
    uint64_t unit_ms = 1000;  // a bare number is seconds, but only on its own: "1h30" is more likely a typo
    if (!s.empty() || !first) {
      const size_t unit = take_duration_unit(s);
      if (unit == std::string_view::npos || unit < next_unit) return invalid(kNotADuration);
      next_unit = unit + 1;
      unit_ms = kDurationUnits[unit].ms;
    }
    if (__builtin_mul_overflow(value, unit_ms, &value) || __builtin_add_overflow(total, value, &total) ||
        total > kMax) {
      return invalid(kTooLarge);
    }
    first = false;
  }
  return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(total));
}

Result<bool> parse_flag(std::string_view s) {
  // Case-insensitive, as nginx's ngx_conf_set_flag_slot.
  auto equals = [s](std::string_view word) {
    if (s.size() != word.size()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (lower(s[i]) != word[i]) return false;
    }
    return true;
  };
  if (equals("on")) return true;
  if (equals("off")) return false;
  return invalid("it must be \"on\" or \"off\"");
}

Result<std::pair<std::string_view, std::string_view>> split_key_value(std::string_view s) {
  const size_t eq = s.find('=');
  if (eq == std::string_view::npos) return invalid("expected key=value");
  if (eq == 0) return invalid("empty key");
  return std::pair{s.substr(0, eq), s.substr(eq + 1)};
}

}  // namespace tether::conf
