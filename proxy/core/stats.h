#pragma once
// The counters behind /tether/stats: one Stats per core, plain integers (one loop, no locks).
// Gauges ("now") are kept exact at the moment things open and close, not when objects are
// freed a loop iteration later, so a stats request right after an event sees it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/core/limits.h"

namespace tether {

// Data messages (not pings or closes) and their payload bytes; in = client -> backend.
struct MessageCounters {
  uint64_t in = 0, out = 0, in_bytes = 0, out_bytes = 0;
};

enum class SessionEnd { kBackend, kClient, kLinger, kSlowClient, kUpstreamLost, kShutdown, kCount };
std::string_view session_end_name(SessionEnd e);

// Messages per second over the last 10 s and 1 min: 60 one-second buckets.
class RateCounter {
 public:
  void add(int64_t now_ms, uint64_t n = 1);
  double per_second(int64_t now_ms, int seconds) const;

 private:
  void advance(int64_t second);
  std::array<uint64_t, 61> buckets_{};
  int64_t current_ = 0;  // the second of buckets_[current_ % 61]
};

struct Stats {
  int64_t start_ms = 0;
  // Now open.
  uint64_t websocket_relays = 0;
  uint64_t sse_streams = 0;
  uint64_t polls_waiting = 0;
  uint64_t http_connections = 0;  // includes those holding a poll
  uint64_t accepted_total = 0;
  // Sessions (SSE and long poll).
  uint64_t sessions_opened = 0, sessions_resumed = 0, sessions_expired = 0;
  std::array<uint64_t, static_cast<size_t>(SessionEnd::kCount)> sessions_closed{};
  MessageCounters websocket, sse, poll;
  uint64_t buffer_full_pauses = 0;
  // Requests, connections and sessions refused or closed by a limit.
  std::array<uint64_t, static_cast<size_t>(Limit::kCount)> limit_hits{};
  RateCounter rate;

  void message(MessageCounters& c, bool in, size_t bytes);
  void hit(Limit l) { ++limit_hits[static_cast<size_t>(l)]; }
};

// The process's stats (one core per process for now).
Stats& stats();

}  // namespace tether
