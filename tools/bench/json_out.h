#pragma once
// The one JSON object tether-loadgen prints at the end, built with jansson.

#include <jansson.h>

#include <cmath>
#include <cstdio>
#include <memory>

namespace tether::bench {

// json_decref is static inline: a named functor keeps JsonPtr one type across files.
struct JsonDecref {
  void operator()(json_t* j) const noexcept { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDecref>;

// A real rounded to 3 decimals, so the output reads "12.345", not "12.345000000000001".
inline json_t* json_real3(double v) {
  return json_real(std::round(v * 1000.0) / 1000.0);
}

// Prints OBJ on one line on stdout, then flushes.
inline void print_json(json_t* obj) {
  char* text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  if (text) {
    std::fputs(text, stdout);
    std::fputc('\n', stdout);
    std::free(text);
  }
  std::fflush(stdout);
}

}  // namespace tether::bench
