#pragma once
// Time for the routing tables, injectable so tests can move it.

#include <chrono>
#include <cstdint>

namespace tether::routing {

using TimePoint = int64_t;  // milliseconds on a monotonic clock

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  TimePoint now() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

// The process-wide steady clock.
const Clock& steady_clock();

}  // namespace tether::routing
