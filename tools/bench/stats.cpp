#include "tools/bench/stats.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace tether::bench {
namespace {

constexpr uint64_t kMaxPlausibleAgeNs = 3600ull * 1'000'000'000ull;

double percentile_us(const std::vector<uint64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest sample with at least q of them at or below it.
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  if (rank == 0) rank = 1;
  if (rank > sorted.size()) rank = sorted.size();
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

}  // namespace

EventBasePtr make_precise_base() {
  std::unique_ptr<event_config, CFree<event_config_free>> cfg(event_config_new());
  if (!cfg) return nullptr;
  event_config_set_flag(cfg.get(), EVENT_BASE_FLAG_PRECISE_TIMER);
  return EventBasePtr(event_base_new_with_config(cfg.get()));
}

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void make_payload(std::string& out, uint64_t send_ns, size_t size, uint64_t seq) {
  char num[48];
  int n = seq > 0 ? std::snprintf(num, sizeof num, "%llu %llu", static_cast<unsigned long long>(send_ns),
                                  static_cast<unsigned long long>(seq))
                  : std::snprintf(num, sizeof num, "%llu", static_cast<unsigned long long>(send_ns));
  out.assign(num, static_cast<size_t>(n));
  if (size > out.size()) {
    out.push_back(' ');
    if (size > out.size()) out.append(size - out.size(), 'x');
  }
}

uint64_t parse_send_time(std::string_view payload, uint64_t now) {
  uint64_t v = 0;
  size_t i = 0;
  for (; i < payload.size() && i < 20; ++i) {
    char c = payload[i];
    if (c < '0' || c > '9') break;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (i == 0 || (i < payload.size() && payload[i] != ' ')) return 0;
  if (v > now || now - v > kMaxPlausibleAgeNs) return 0;
  return v;
}

uint64_t parse_seq(std::string_view payload) {
  size_t sp = payload.find(' ');
  if (sp == std::string_view::npos) return 0;
  uint64_t v = 0;
  size_t i = sp + 1;
  for (; i < payload.size() && i < sp + 1 + 19; ++i) {
    char c = payload[i];
    if (c < '0' || c > '9') break;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (i == sp + 1 || (i < payload.size() && payload[i] != ' ')) return 0;
  return v;
}

uint64_t LatencyReservoir::next_random() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_;
}

void LatencyReservoir::add(uint64_t latency_ns) {
  ++count_;
  max_ = std::max(max_, latency_ns);
  if (samples_.size() < kCapacity) {
    samples_.push_back(latency_ns);
    return;
  }
  uint64_t slot = next_random() % count_;
  if (slot < kCapacity) samples_[slot] = latency_ns;
}

Percentiles LatencyReservoir::percentiles() {
  std::sort(samples_.begin(), samples_.end());
  Percentiles p;
  p.count = count_;
  p.p50_us = percentile_us(samples_, 0.50);
  p.p90_us = percentile_us(samples_, 0.90);
  p.p99_us = percentile_us(samples_, 0.99);
  p.max_us = static_cast<double>(max_) / 1000.0;
  return p;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace tether::bench
