// Tests for proxy/routing/pool.cpp: nginx's smooth weighted round robin, least_conn, backup
// servers, `down`, passive failure marking (max_fails within fail_timeout), health check
// results, exclusion, hashing, reconfiguration and the reasons a server is unusable.

#include <optional>
#include <string>
#include <vector>

#include "proxy/routing/pool.h"
#include "proxy/routing/rendezvous.h"

// Last: cmocka.h defines macros (fail, ...) that break standard headers included after it.
#include "cmocka.hpp"

namespace {

using tether::routing::Balance;
using tether::routing::Clock;
using tether::routing::HashCandidate;
using tether::routing::Pool;
using tether::routing::rendezvous_pick;
using tether::routing::ServerSpec;
using tether::routing::TimePoint;

class FakeClock final : public Clock {
 public:
  TimePoint now() const override { return now_; }
  void set(TimePoint t) { now_ = t; }
  void advance(int64_t ms) { now_ += ms; }

 private:
  TimePoint now_ = 1'000'000;
};

struct Fixture {
  FakeClock clock;
  std::optional<Pool> pool;
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

ServerSpec spec(std::string id, int weight = 1) {
  ServerSpec s;
  s.id = std::move(id);
  s.weight = weight;
  return s;
}

ServerSpec backup(std::string id) {
  ServerSpec s = spec(std::move(id));
  s.backup = true;
  return s;
}

Pool& make(Fixture& f, std::vector<ServerSpec> servers, Balance balance = Balance::kRoundRobin) {
  return f.pool.emplace("chat", std::move(servers), balance, f.clock);
}

// Picks N times without a key and returns the picked ids, one letter each (ids are letters).
std::string picks(Pool& p, int n, std::span<const size_t> exclude = {}) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    auto k = p.pick(std::nullopt, exclude);
    assert_true(k.has_value());
    out += p.servers()[*k].spec.id;
  }
  return out;
}

size_t pick_index(Pool& p, std::optional<std::string_view> key = std::nullopt) {
  auto k = p.pick(key);
  assert_true(k.has_value());
  return *k;
}

void smooth_round_robin_matches_nginx(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {spec("a", 5), spec("b", 1), spec("c", 1)});
  assert_string_equal(p.name().c_str(), "chat");
  assert_int_equal(p.size(), 3);
  assert_string_equal(picks(p, 21).c_str(), "aabacaaaabacaaaabacaa");
  assert_int_equal(p.servers()[0].total_picks, 15);
  assert_int_equal(p.servers()[1].total_picks, 3);
  assert_int_equal(p.servers()[2].total_picks, 3);
}

void round_robin_spread_is_exact(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {spec("a", 1), spec("b", 2), spec("c", 3)});
  size_t count[3] = {0, 0, 0};
  for (int i = 0; i < 3'000; ++i) ++count[pick_index(p)];
  assert_int_equal(count[0], 500);
  assert_int_equal(count[1], 1'000);
  assert_int_equal(count[2], 1'500);
  // Equal weights alternate strictly.
  Pool& q = make(f, {spec("a"), spec("b"), spec("c")});
  assert_string_equal(picks(q, 9).c_str(), "abcabcabc");
}

void least_conn_follows_active_per_weight(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {spec("a"), spec("b"), spec("c")}, Balance::kLeastConn);
  // All idle: ties take turns.
  assert_string_equal(picks(p, 6).c_str(), "abcabc");
  // Sessions opened on what is picked spread them evenly.
  for (int i = 0; i < 6; ++i) p.acquire(pick_index(p));
  for (const auto& s : p.servers()) assert_int_equal(s.active, 2);
  p.release("b");
  assert_int_equal(p.servers()[1].active, 1);
  assert_string_equal(picks(p, 3).c_str(), "bbb");  // picking alone opens nothing
  p.acquire(1);
  p.acquire(1);  // b: 3
  p.release("a");
  p.release("a");  // a: 0
  assert_string_equal(picks(p, 1).c_str(), "a");
  // Turns are taken among the tied servers only: a busier c never skews them.
  Pool& t = make(f, {spec("a"), spec("b"), spec("c")}, Balance::kLeastConn);
  t.acquire(2);
  assert_string_equal(picks(t, 6).c_str(), "ababab");

  // Weighted: a (weight 1) with 1 active has as much per weight as b (weight 3) with 3.
  Pool& w = make(f, {spec("a", 1), spec("b", 3)}, Balance::kLeastConn);
  w.acquire(0);
  w.acquire(1);
  w.acquire(1);
  assert_string_equal(picks(w, 1).c_str(), "b");  // 2/3 < 1/1
  w.acquire(1);                                   // 3/3 == 1/1: a tie, taken in turn
  const std::string tied = picks(w, 4);
  assert_true(tied == "abab" || tied == "baba");
  w.acquire(1);  // 4/3 > 1/1
  assert_string_equal(picks(w, 3).c_str(), "aaa");
}

void backup_only_when_no_primary_is_usable(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a"), spec("b"), backup("x"), backup("y")};
  for (auto& s : servers) s.fail_timeout_ms = 1'000;
  Pool& p = make(f, std::move(servers));
  assert_string_equal(picks(p, 6).c_str(), "ababab");
  // Trying the primaries (exclude) reaches the backups.
  const size_t tried[] = {0, 1};
  assert_string_equal(picks(p, 4, tried).c_str(), "xyxy");
  const size_t one_tried[] = {0};
  assert_string_equal(picks(p, 3, one_tried).c_str(), "bbb");
  // Primaries marked failed: backups.
  p.report_failure(0);
  assert_string_equal(picks(p, 2).c_str(), "bb");
  p.report_failure(1);
  assert_false(p.usable(0));
  assert_false(p.usable(1));
  assert_string_equal(picks(p, 4).c_str(), "xyxy");
  // Back after fail_timeout: primaries again.
  f.clock.advance(1'000);
  assert_string_equal(picks(p, 4).c_str(), "abab");
  // No usable server at all.
  for (size_t i = 0; i < 4; ++i) p.set_probe_result(i, false);
  assert_false(p.pick(std::nullopt).has_value());
  assert_false(p.pick("user-1").has_value());
}

void down_is_never_picked(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a"), spec("b", 5), spec("c")};
  servers[1].down = true;
  Pool& p = make(f, std::move(servers));
  assert_false(p.usable(1));
  assert_string_equal(p.why_unusable(1).c_str(), "down in the config");
  assert_string_equal(picks(p, 6).c_str(), "acacac");
  // A passing health check does not override `down`.
  p.set_probe_result(1, true);
  assert_false(p.usable(1));
  const size_t tried[] = {0, 2};
  assert_false(p.pick(std::nullopt, tried).has_value());
}

void failures_mark_within_one_window(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a"), spec("b")};
  servers[0].max_fails = 3;
  servers[0].fail_timeout_ms = 1'000;
  Pool& p = make(f, std::move(servers));
  const TimePoint t0 = f.clock.now();
  // Spread across windows: never three within 1000ms of the window's first failure.
  p.report_failure(0);  // window [t0, t0+1000)
  f.clock.set(t0 + 600);
  p.report_failure(0);
  f.clock.set(t0 + 1'000);  // exactly fail_timeout after the window opened: a new window
  p.report_failure(0);
  assert_int_equal(p.servers()[0].fails, 1);
  assert_int_equal(p.servers()[0].fail_window_start, t0 + 1'000);
  assert_true(p.usable(0));
  f.clock.set(t0 + 1'500);
  p.report_failure(0);
  assert_true(p.usable(0));
  assert_string_equal(p.why_unusable(0).c_str(), "");
  // The third within [t0+1000, t0+2000): marked for fail_timeout from now.
  f.clock.set(t0 + 1'999);
  p.report_failure(0);
  assert_int_equal(p.servers()[0].fails, 0);
  assert_int_equal(p.servers()[0].down_until, t0 + 2'999);
  assert_int_equal(p.servers()[0].total_failures, 5);
  assert_false(p.usable(0));
  assert_true(p.why_unusable(0).size() > 0);
  assert_string_equal(picks(p, 3).c_str(), "bbb");
  f.clock.set(t0 + 2'998);
  assert_false(p.usable(0));
  f.clock.set(t0 + 2'999);  // usable again at exactly down_until
  assert_true(p.usable(0));
  assert_string_equal(p.why_unusable(0).c_str(), "");
  // Marking left no count behind: it takes max_fails again.
  p.report_failure(0);
  p.report_failure(0);
  assert_true(p.usable(0));
  p.report_failure(0);
  assert_false(p.usable(0));
}

void window_opens_at_the_first_failure(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a")};
  servers[0].max_fails = 2;
  servers[0].fail_timeout_ms = 1'000;
  Pool& p = make(f, std::move(servers));
  const TimePoint t0 = f.clock.now();
  p.report_failure(0);  // a window opens at t0
  f.clock.set(t0 + 100);
  p.report_success(0);  // the count restarts
  // The next failure opens a window of its own, not one left over from t0: two failures
  // 200ms apart are two within fail_timeout.
  f.clock.set(t0 + 900);
  p.report_failure(0);
  assert_int_equal(p.servers()[0].fail_window_start, t0 + 900);
  f.clock.set(t0 + 1'100);
  p.report_failure(0);
  assert_false(p.usable(0));
}

void success_clears_the_failure_count(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a")};
  servers[0].max_fails = 2;
  Pool& p = make(f, std::move(servers));
  p.report_failure(0);
  p.report_success(0);
  assert_int_equal(p.servers()[0].fails, 0);
  p.report_failure(0);
  assert_true(p.usable(0));
  p.report_failure(0);
  assert_false(p.usable(0));
}

void max_fails_zero_never_marks(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a")};
  servers[0].max_fails = 0;
  Pool& p = make(f, std::move(servers));
  for (int i = 0; i < 100; ++i) p.report_failure(0);
  assert_true(p.usable(0));
  assert_int_equal(p.servers()[0].fails, 0);
  assert_int_equal(p.servers()[0].total_failures, 100);
  assert_int_equal(pick_index(p), 0);
}

void probe_results(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {spec("a"), spec("b")});
  p.set_probe_result(0, false);
  assert_false(p.usable(0));
  assert_string_equal(p.why_unusable(0).c_str(), "marked failed by the health check");
  assert_string_equal(picks(p, 3).c_str(), "bbb");
  // Time alone does not bring it back.
  f.clock.advance(3'600'000);
  assert_false(p.usable(0));
  p.set_probe_result(0, true);
  assert_true(p.usable(0));
  assert_string_equal(p.why_unusable(0).c_str(), "");
  // A passing probe also lifts passive marking and its count.
  p.report_failure(1);
  assert_false(p.usable(1));
  p.set_probe_result(1, true);
  assert_true(p.usable(1));
  assert_int_equal(p.servers()[1].down_until, 0);
  assert_int_equal(p.servers()[1].fails, 0);
}

void exclude_skips_tried_servers(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {spec("a"), spec("b"), spec("c")});
  const size_t tried[] = {1};
  assert_string_equal(picks(p, 4, tried).c_str(), "acac");
  const size_t all[] = {2, 0, 1, 7};  // an out-of-range index is ignored
  assert_false(p.pick(std::nullopt, all).has_value());
  assert_false(p.pick("user-1", all).has_value());
  Pool& h = make(f, {spec("a"), spec("b"), spec("c")}, Balance::kHash);
  const size_t home = pick_index(h, "user-1");
  const size_t other[] = {home};
  auto next = h.pick("user-1", other);
  assert_true(next.has_value());
  assert_int_not_equal(*next, home);
  Pool& l = make(f, {spec("a"), spec("b"), spec("c")}, Balance::kLeastConn);
  const size_t two[] = {0, 2};
  assert_string_equal(picks(l, 3, two).c_str(), "bbb");
}

void hash_is_stable_and_round_robin_without_key(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers;
  for (int i = 0; i < 5; ++i) servers.push_back(spec("10.0.0." + std::to_string(i + 1) + ":9001", i + 1));
  Pool& p = make(f, std::move(servers), Balance::kHash);
  assert_true(p.balance() == Balance::kHash);
  std::vector<HashCandidate> candidates;
  for (const auto& s : p.servers()) {
    candidates.push_back(HashCandidate{.id = s.spec.id, .weight = static_cast<double>(s.spec.weight)});
  }
  std::vector<size_t> home;
  for (int k = 0; k < 500; ++k) {
    const std::string key = "user-" + std::to_string(k);
    const size_t i = pick_index(p, key);
    assert_int_equal(i, rendezvous_pick(key, candidates));
    assert_int_equal(pick_index(p, key), i);
    home.push_back(i);
  }
  // A failed server's keys move; no other key does.
  p.set_probe_result(2, false);
  for (int k = 0; k < 500; ++k) {
    const size_t i = pick_index(p, "user-" + std::to_string(k));
    if (home[k] == 2) {
      assert_int_not_equal(i, 2);
    } else {
      assert_int_equal(i, home[k]);
    }
  }
  // Without a key: smooth weighted round robin (weights 1..5 over 15 picks).
  p.set_probe_result(2, true);
  size_t count[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < 15; ++i) ++count[pick_index(p)];
  for (size_t i = 0; i < 5; ++i) assert_int_equal(count[i], i + 1);
}

void reconfigure_keeps_state_by_id(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a"), spec("b"), spec("c")};
  servers[1].max_fails = 3;
  Pool& p = make(f, std::move(servers));
  picks(p, 5);  // leaves current weights non-zero
  p.acquire(1);
  p.acquire(1);
  p.acquire(0);
  p.report_failure(1);
  p.set_probe_result(2, false);
  const uint64_t b_picks = p.servers()[1].total_picks;

  std::vector<ServerSpec> next = {spec("c"), spec("b", 4), spec("d")};
  next[1].max_fails = 3;
  p.reconfigure(std::move(next), Balance::kLeastConn);
  assert_true(p.balance() == Balance::kLeastConn);
  assert_int_equal(p.size(), 3);
  assert_false(p.find("a").has_value());
  assert_int_equal(*p.find("c"), 0);
  assert_int_equal(*p.find("b"), 1);
  assert_int_equal(*p.find("d"), 2);
  const auto& s = p.servers();
  assert_int_equal(s[1].spec.weight, 4);  // the new spec
  assert_int_equal(s[1].active, 2);       // the kept state
  assert_int_equal(s[1].fails, 1);
  assert_int_equal(s[1].total_failures, 1);
  assert_int_equal(s[1].total_picks, b_picks);
  assert_true(s[0].probe_failed);
  assert_int_equal(s[2].active, 0);
  assert_int_equal(s[2].total_picks, 0);
  for (const auto& st : s) assert_int_equal(st.current_weight, 0);
  // A session on the removed server ends: nothing to release, nothing breaks.
  p.release("a");
  for (const auto& st : s) assert_true(st.active <= 2);
  // A repeated id gets the old state once.
  p.reconfigure({spec("b"), spec("b")}, Balance::kRoundRobin);
  assert_int_equal(p.servers()[0].active, 2);
  assert_int_equal(p.servers()[1].active, 0);
  // Down to nothing and back.
  p.reconfigure({}, Balance::kLeastConn);
  assert_int_equal(p.size(), 0);
  assert_false(p.pick(std::nullopt).has_value());
  p.reconfigure({spec("z")}, Balance::kLeastConn);
  assert_int_equal(pick_index(p), 0);
}

void release_is_harmless_when_unknown_or_idle(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {spec("a"), spec("b")});
  p.acquire(0);
  p.release("nope");
  p.release("");
  assert_int_equal(p.servers()[0].active, 1);
  p.release("b");  // idle: stays 0
  assert_int_equal(p.servers()[1].active, 0);
  p.release("a");
  p.release("a");
  assert_int_equal(p.servers()[0].active, 0);
}

void why_unusable_says_why(void** state) {
  auto& f = fixture(state);
  std::vector<ServerSpec> servers = {spec("a"), spec("b"), spec("c")};
  servers[0].down = true;
  servers[2].max_fails = 2;
  servers[2].fail_timeout_ms = 10'000;
  Pool& p = make(f, std::move(servers));
  assert_string_equal(p.why_unusable(1).c_str(), "");
  p.set_probe_result(1, false);
  assert_string_equal(p.why_unusable(0).c_str(), "down in the config");
  assert_string_equal(p.why_unusable(1).c_str(), "marked failed by the health check");
  p.report_failure(2);
  assert_string_equal(p.why_unusable(2).c_str(), "");
  p.report_failure(2);
  f.clock.advance(4'000);
  assert_string_equal(p.why_unusable(2).c_str(),
                      "marked failed for 10000ms after 2 failures (usable again in 6000ms)");
  for (size_t i = 0; i < p.size(); ++i) assert_int_equal(p.usable(i), p.why_unusable(i).empty());
}

void empty_pool_picks_nothing(void** state) {
  auto& f = fixture(state);
  Pool& p = make(f, {}, Balance::kLeastConn);
  assert_false(p.pick(std::nullopt).has_value());
  assert_false(p.find("a").has_value());
  p.release("a");
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(smooth_round_robin_matches_nginx),
      TEST(round_robin_spread_is_exact),
      TEST(least_conn_follows_active_per_weight),
      TEST(backup_only_when_no_primary_is_usable),
      TEST(down_is_never_picked),
      TEST(failures_mark_within_one_window),
      TEST(window_opens_at_the_first_failure),
      TEST(success_clears_the_failure_count),
      TEST(max_fails_zero_never_marks),
      TEST(probe_results),
      TEST(exclude_skips_tried_servers),
      TEST(hash_is_stable_and_round_robin_without_key),
      TEST(reconfigure_keeps_state_by_id),
      TEST(release_is_harmless_when_unknown_or_idle),
      TEST(why_unusable_says_why),
      TEST(empty_pool_picks_nothing),
  };
#undef TEST
  return cmocka_run_group_tests_name("routing/pool.cpp", tests, nullptr, nullptr);
}
