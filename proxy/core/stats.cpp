#include "proxy/core/stats.h"

#include <chrono>

namespace tether {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string_view session_end_name(SessionEnd e) {
  switch (e) {
    case SessionEnd::kBackend:
      return "backend";
    case SessionEnd::kClient:
      return "client";
    case SessionEnd::kLinger:
      return "linger";
    case SessionEnd::kSlowClient:
      return "slow_client";
    case SessionEnd::kUpstreamLost:
      return "upstream_lost";
    case SessionEnd::kShutdown:
      return "shutdown";
    case SessionEnd::kCount:
      break;
  }
  return "unknown";
}

void RateCounter::advance(int64_t second) {
  if (second <= current_) return;
  // Clear the buckets of the seconds that passed with nothing counted.
  for (int64_t s = std::max(current_ + 1, second - 60); s <= second; ++s) buckets_[s % 61] = 0;
  current_ = second;
}

void RateCounter::add(int64_t now, uint64_t n) {
  int64_t second = now / 1000;
  advance(second);
  buckets_[second % 61] += n;
}

double RateCounter::per_second(int64_t now, int seconds) const {
  int64_t second = now / 1000;
  uint64_t sum = 0;
  // The last SECONDS complete seconds (the current one is still filling).
  for (int64_t s = second - seconds; s < second; ++s) {
    if (s > current_ || s <= current_ - 61 || s < 0) continue;
    sum += buckets_[s % 61];
  }
  return static_cast<double>(sum) / seconds;
}

void Stats::message(MessageCounters& c, bool in, size_t bytes) {
  if (in) {
    ++c.in;
    c.in_bytes += bytes;
  } else {
    ++c.out;
    c.out_bytes += bytes;
  }
  rate.add(now_ms());
}

Stats& stats() {
  static Stats s = [] {
    Stats init;
    init.start_ms = now_ms();
    return init;
  }();
  return s;
}

}  // namespace tether
