#pragma once
// Parsers for directive argument values. Each returns an Error whose `what` is a short reason
// ("not a size"), which callers turn into `invalid value "X" in "D" directive in FILE:LINE`.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "proxy/util/result.h"

namespace tether::conf {

// Bytes: "512", "16k", "16K", "1m", "2g" (1024-based). No sign, no fraction; overflow is an error.
Result<uint64_t> parse_size(std::string_view s);
// A count: "100", "100k" (1000-based: k, m). Used for table sizes and message counts.
Result<uint64_t> parse_count(std::string_view s);
// A duration, nginx-style: "500ms", "30s", "5m", "1h", "1d", "1m30s"; a bare number is seconds.
Result<std::chrono::milliseconds> parse_duration(std::string_view s);
// "on" / "off".
Result<bool> parse_flag(std::string_view s);
// "key=value" -> {key, value}; an error if there is no '=' or the key is empty.
Result<std::pair<std::string_view, std::string_view>> split_key_value(std::string_view s);

}  // namespace tether::conf
