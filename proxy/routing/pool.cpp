// An upstream pool's balancing and failure accounting.
//
// A pick first finds its tier: the primary servers that are usable and not excluded, or, when
// there is none, the backup servers that are. Balancing then runs over that tier only:
//   - round robin: nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every
//     candidate's current_weight grows by its weight, the largest wins (the first on a tie) and
//     pays back the total. Weights {5,1,1} give a a b a c a a, and every cycle of sum(weights)
//     picks gives each server exactly its weight.
//   - least_conn: the fewest active per weight, compared by cross-multiplying (no division);
//     ties go to the first in index order from rr_start_, which then moves past the winner, so
//     tied servers take turns.
//   - hash with a key: weighted rendezvous over the tier, so only a failed server's keys move.
//     Without a key (no sticky value in the request): round robin.
//
// Failures (report_failure) follow nginx's max_fails/fail_timeout: a window opens at the first
// failure; max_fails failures inside one window of fail_timeout mark the server failed for
// fail_timeout; a failure after the window closed opens a new one.

#include "proxy/routing/pool.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "proxy/routing/rendezvous.h"
#include "proxy/util/assert.h"

namespace tether::routing {
namespace {

ServerState fresh_state(ServerSpec spec) {
  TETHER_ASSERT(spec.weight >= 1);
  ServerState s;
  s.spec = std::move(spec);
  return s;
}

bool excluded(size_t index, std::span<const size_t> exclude) {
  return std::find(exclude.begin(), exclude.end(), index) != exclude.end();
}

}  // namespace

Pool::Pool(std::string name, std::vector<ServerSpec> servers, Balance balance, const Clock& clock)
    : name_(std::move(name)), balance_(balance), clock_(clock) {
  servers_.reserve(servers.size());
  for (auto& spec : servers) servers_.push_back(fresh_state(std::move(spec)));
}

void Pool::reconfigure(std::vector<ServerSpec> servers, Balance balance) {
  // Where each new server's state comes from: the old server with its id, or nowhere. A
  // repeated id (nginx allows `server a; server a;`) hands its state to the first occurrence
  // only, so active counts are not doubled. Resolved before any state moves: OLD's keys view
  // the old states' ids.
  std::vector<size_t> source(servers.size(), SIZE_MAX);
  {
    std::unordered_map<std::string_view, size_t> old;
    for (size_t i = 0; i < servers_.size(); ++i) old.emplace(servers_[i].spec.id, i);
    for (size_t j = 0; j < servers.size(); ++j) {
      auto it = old.find(servers[j].id);
      if (it == old.end()) continue;
      source[j] = it->second;
      old.erase(it);
    }
  }

  std::vector<ServerState> next;
  next.reserve(servers.size());
  for (size_t j = 0; j < servers.size(); ++j) {
    if (source[j] == SIZE_MAX) {
      next.push_back(fresh_state(std::move(servers[j])));
      continue;
    }
    TETHER_ASSERT(servers[j].weight >= 1);
    ServerState s = std::move(servers_[source[j]]);
    s.spec = std::move(servers[j]);
    // The smooth round robin restarts: old current weights were relative to the old list.
    s.current_weight = 0;
    next.push_back(std::move(s));
  }
  servers_ = std::move(next);
  balance_ = balance;
  if (rr_start_ >= servers_.size()) rr_start_ = 0;
}

bool Pool::usable(size_t index) const {
  TETHER_ASSERT(index < servers_.size());
  const ServerState& s = servers_[index];
  return !s.spec.down && !s.probe_failed && clock_.now() >= s.down_until;
}

std::optional<size_t> Pool::find(std::string_view id) const {
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i].spec.id == id) return i;
  }
  return std::nullopt;
}

std::optional<size_t> Pool::pick(std::optional<std::string_view> key, std::span<const size_t> exclude) {
  const size_t n = servers_.size();
  // Candidates of the tier: usable primaries, or usable backups when there is none.
  std::vector<bool> candidate(n, false);
  bool any = false;
  for (bool backup : {false, true}) {
    for (size_t i = 0; i < n; ++i) {
      if (servers_[i].spec.backup == backup && !excluded(i, exclude) && usable(i)) {
        candidate[i] = true;
        any = true;
      }
    }
    if (any) break;
  }
  if (!any) return std::nullopt;

  size_t chosen = SIZE_MAX;
  if (balance_ == Balance::kLeastConn) {
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (rr_start_ + k) % n;
      if (!candidate[i]) continue;
      if (chosen == SIZE_MAX) {
        chosen = i;
        continue;
      }
      // active_i / weight_i < active_c / weight_c, without division.
      const ServerState& a = servers_[i];
      const ServerState& c = servers_[chosen];
      if (a.active * static_cast<uint64_t>(c.spec.weight) < c.active * static_cast<uint64_t>(a.spec.weight)) {
        chosen = i;
      }
    }
    rr_start_ = (chosen + 1) % n;
  } else if (balance_ == Balance::kHash && key) {
    std::vector<HashCandidate> hc;
    hc.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      hc.push_back(HashCandidate{.id = servers_[i].spec.id,
                                 .weight = static_cast<double>(servers_[i].spec.weight),
                                 .usable = candidate[i]});
    }
    chosen = rendezvous_pick(*key, hc);
  } else {
    int64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!candidate[i]) continue;
      ServerState& s = servers_[i];
      s.current_weight += s.spec.weight;
      total += s.spec.weight;
      if (chosen == SIZE_MAX || s.current_weight > servers_[chosen].current_weight) chosen = i;
    }
    servers_[chosen].current_weight -= total;
  }
  TETHER_ASSERT(chosen < n && candidate[chosen]);
  ++servers_[chosen].total_picks;
  return chosen;
}

void Pool::report_failure(size_t index) {
  TETHER_ASSERT(index < servers_.size());
  ServerState& s = servers_[index];
  ++s.total_failures;
  if (s.spec.max_fails == 0) return;
  const TimePoint now = clock_.now();
  // A window opens at the first failure (fails == 0: none counted since a success, a marking
  // or the start), or at the first failure after the last window closed.
  if (s.fails == 0 || now - s.fail_window_start >= s.spec.fail_timeout_ms) {
    s.fails = 0;
    s.fail_window_start = now;
  }
  if (++s.fails >= s.spec.max_fails) {
    s.down_until = now + s.spec.fail_timeout_ms;
    s.fails = 0;
  }
}

void Pool::report_success(size_t index) {
  TETHER_ASSERT(index < servers_.size());
  // A server that served was usable when picked: only its failure count restarts.
  servers_[index].fails = 0;
}

void Pool::set_probe_result(size_t index, bool ok) {
  TETHER_ASSERT(index < servers_.size());
  ServerState& s = servers_[index];
  s.probe_failed = !ok;
  if (ok) {
    // A passing health check outranks passive marking: the server is back now.
    s.down_until = 0;
    s.fails = 0;
  }
}

void Pool::release(std::string_view id) {
  if (auto i = find(id); i && servers_[*i].active > 0) --servers_[*i].active;
}

std::string Pool::why_unusable(size_t index) const {
  TETHER_ASSERT(index < servers_.size());
  const ServerState& s = servers_[index];
  if (s.spec.down) return "down in the config";
  if (s.probe_failed) return "marked failed by the health check";
  const TimePoint now = clock_.now();
  if (now < s.down_until) {
    return "marked failed for " + std::to_string(s.spec.fail_timeout_ms) + "ms after " +
           std::to_string(s.spec.max_fails) + (s.spec.max_fails == 1 ? " failure" : " failures") +
           " (usable again in " + std::to_string(s.down_until - now) + "ms)";
  }
  return "";
}

}  // namespace tether::routing
