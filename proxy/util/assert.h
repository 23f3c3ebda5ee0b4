#pragma once
// TETHER_ASSERT: an invariant of our own code, checked in debug builds.
// TETHER_RELEASE_ASSERT: a state Tether cannot go on from (out of memory at start-up, say).
// Anything a peer can trigger is handled, logged and counted instead.

#include <cassert>
#include <cstdio>
#include <cstdlib>

#define TETHER_ASSERT(cond) assert(cond)
#define TETHER_RELEASE_ASSERT(cond)                                                     \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
