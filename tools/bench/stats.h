#pragma once
// Clock, timestamped payloads and latency percentiles for tether-loadgen.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/util/handles.h"

namespace tether::bench {

// An event_base with EVENT_BASE_FLAG_PRECISE_TIMER: libevent's default clock on Linux is
// CLOCK_MONOTONIC_COARSE (4 ms steps), which would pace 1 ms timers in 4 ms bursts.
EventBasePtr make_precise_base();

// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine, so the send time
// a backend writes into a message compares with the time a client receives it.
uint64_t now_ns();

// Writes a text payload "<send_ns> xxx..." of SIZE bytes into OUT (longer when SIZE cannot hold
// the number; never shorter than the number). A SEQ over 0 goes after the time,
// "<send_ns> <seq> xxx...", so a receiver can count the messages it never got.
void make_payload(std::string& out, uint64_t send_ns, size_t size, uint64_t seq = 0);

// The send time PAYLOAD starts with: decimal digits followed by a space or the end. 0 when there
// is none, or when it is not a plausible CLOCK_MONOTONIC time (after NOW, or over an hour old),
// so text that merely starts with digits does not become a latency.
uint64_t parse_send_time(std::string_view payload, uint64_t now);

// The sequence number of a payload made with a SEQ: the digits between the first and the second
// space (or the end). 0 when there is none.
uint64_t parse_seq(std::string_view payload);

// Latency percentiles in microseconds; count is the number of samples taken.
struct Percentiles {
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double max_us = 0;
  uint64_t count = 0;
};

// Latency samples: every one up to kCapacity, then a uniform reservoir (Vitter's algorithm R),
// so memory stays bounded (8 MB) and the percentiles unbiased. count and max stay exact.
class LatencyReservoir {
 public:
  static constexpr size_t kCapacity = 1'000'000;

  void add(uint64_t latency_ns);
  uint64_t count() const { return count_; }
  // Sorts the samples; call once at the end.
  Percentiles percentiles();

 private:
  uint64_t next_random();

  std::vector<uint64_t> samples_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;  // xorshift64 state: fixed seed, runs are repeatable
};

// Case-insensitive ASCII comparison (HTTP header names and tokens).
bool iequals(std::string_view a, std::string_view b);
// True when the comma-separated LIST holds TOKEN (case-insensitive), as in `Connection: keep-alive, Upgrade`.
bool has_token(std::string_view list, std::string_view token);

}  // namespace tether::bench
