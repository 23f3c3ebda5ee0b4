#pragma once
// A duration as the timeval libevent's timers and bufferevent timeouts take.

#include <sys/time.h>

#include <chrono>

namespace tether {

inline timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

}  // namespace tether
