#pragma once
// The runtime state of one upstream pool: its servers' weights, failures and active sessions,
// and the balancing that picks a server for a new session. Lives apart from the parsed config
// (a reload keeps it for servers that stay). No I/O; time comes from a Clock.
//
// A server is usable when it is not `down`, not marked failed (down_until in the future), and
// not excluded by the caller. Backup servers are used only when no primary server is usable.
// Failures: max_fails failures within fail_timeout mark the server failed for fail_timeout
// (nginx semantics; max_fails 0 never marks it). A success clears the failure count.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/routing/clock.h"

namespace tether::routing {

enum class Balance { kRoundRobin, kLeastConn, kHash };

struct ServerSpec {
  std::string id;  // "host:port", stable across reloads
  int weight = 1;  // >= 1
  int max_fails = 1;
  int64_t fail_timeout_ms = 10'000;
  bool backup = false;
  bool down = false;
};

struct ServerState {
  ServerSpec spec;
  int fails = 0;  // within the current window
  TimePoint fail_window_start = 0;
  TimePoint down_until = 0;     // failed until then (passive marking)
  bool probe_failed = false;    // the health check says down, until a probe succeeds
  uint64_t active = 0;          // sessions/relays open on it now
  int64_t current_weight = 0;   // smooth weighted round robin
  uint64_t total_failures = 0;  // for stats
  uint64_t total_picks = 0;
};

class Pool {
 public:
  Pool(std::string name, std::vector<ServerSpec> servers, Balance balance,
       const Clock& clock = steady_clock());

  // Replaces the server list (a reload): servers whose id stays keep their state; new ones
  // start fresh; removed ones are dropped (their live sessions keep running: see release).
  void reconfigure(std::vector<ServerSpec> servers, Balance balance);

  // Picks a usable server for a new session: kHash uses KEY (rendezvous over usable servers,
  // weighted); without a KEY, kHash falls back to round robin. kRoundRobin is nginx's smooth
  // weighted round robin; kLeastConn the fewest active per weight (ties: round robin order).
  // EXCLUDE lists server indexes already tried for this session. nullopt: none usable.
  std::optional<size_t> pick(std::optional<std::string_view> key, std::span<const size_t> exclude = {});
  // Index of the server with ID, if it is in the pool.
  std::optional<size_t> find(std::string_view id) const;
  bool usable(size_t index) const;

  void report_failure(size_t index);
  void report_success(size_t index);
  void set_probe_result(size_t index, bool ok);
  void acquire(size_t index) { ++servers_[index].active; }
  // Decrements the active count of the server with ID, if it is still in the pool.
  void release(std::string_view id);

  const std::string& name() const { return name_; }
  Balance balance() const { return balance_; }
  const std::vector<ServerState>& servers() const { return servers_; }
  size_t size() const { return servers_.size(); }
  // "marked down for 10s after 3 failures" etc.: why a server is not usable ("" if usable).
  std::string why_unusable(size_t index) const;

 private:
  std::string name_;
  Balance balance_;
  std::vector<ServerState> servers_;
  const Clock& clock_;
  size_t rr_start_ = 0;  // least_conn tie breaking
};

}  // namespace tether::routing
