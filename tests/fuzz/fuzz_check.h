#pragma once
// What every fuzz target shares: FUZZ_CHECK, an invariant that aborts with its text (libFuzzer
// then saves the input), the entry point each target defines, and Splitter, which cuts input
// into pieces as a byte of the input decides.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace tether::fuzz {

// A small deterministic generator for split points, seeded from the input.
struct Splitter {
  uint32_t state;
  explicit Splitter(uint8_t seed) : state(seed * 2654435761u + 1) {}
  uint32_t next() {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }
  // A chunk length in [1, max].
  size_t chunk(size_t max) { return 1 + next() % std::max<size_t>(max, 1); }
};

}  // namespace tether::fuzz
