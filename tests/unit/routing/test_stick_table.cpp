// Tests for proxy/routing/stick_table.cpp: hit/miss counting, LRU eviction, expiry at its exact
// boundary, refreshing, replacing, resizing, erasing, expire_now, and a long random run against
// a reference model.

#include <map>
#include <optional>
#include <random>
#include <string>

#include "proxy/routing/stick_table.h"

// Last: cmocka.h defines macros (fail, ...) that break standard headers included after it.
#include "cmocka.hpp"

namespace {

using tether::routing::Clock;
using tether::routing::StickTable;
using tether::routing::TimePoint;

class FakeClock final : public Clock {
 public:
  TimePoint now() const override { return now_; }
  void set(TimePoint t) { now_ = t; }
  void advance(int64_t ms) { now_ += ms; }

 private:
  TimePoint now_ = 1'000;
};

// The reference for model_matches_random_operations: a map and a touch counter; the least
// recently used entry is the one with the smallest stamp.
struct ModelEntry {
  std::string server;
  TimePoint last_used;
  uint64_t stamp;
};

struct Model {
  std::map<std::string, ModelEntry> entries;
  size_t capacity = 0;
  int64_t expire_ms = 0;
  uint64_t next_stamp = 0;
  uint64_t hits = 0, misses = 0, evictions = 0, expired = 0;
};

struct Fixture {
  FakeClock clock;
  std::optional<StickTable> table;
  Model model;
  std::mt19937 rng{20240611};
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

// Asserts that KEY maps to SERVER (a hit, which refreshes it).
void expect_get(StickTable& t, const char* key, const char* server) {
  auto v = t.get(key);
  assert_true(v.has_value());
  assert_string_equal(v->c_str(), server);
}

void expect_miss(StickTable& t, const char* key) {
  assert_false(t.get(key).has_value());
}

void counts_hits_and_misses(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(10, 1'000, f.clock);
  assert_int_equal(t.capacity(), 10);
  assert_int_equal(t.expire_ms(), 1'000);
  assert_int_equal(t.size(), 0);
  expect_miss(t, "alice");
  t.put("alice", "10.0.0.1:9001");
  t.put("bob", "10.0.0.2:9001");
  expect_get(t, "alice", "10.0.0.1:9001");
  expect_get(t, "bob", "10.0.0.2:9001");
  expect_get(t, "alice", "10.0.0.1:9001");
  expect_miss(t, "carol");
  assert_int_equal(t.stats().hits, 3);
  assert_int_equal(t.stats().misses, 2);
  assert_int_equal(t.stats().evictions, 0);
  assert_int_equal(t.stats().expired, 0);
  assert_int_equal(t.size(), 2);
}

void evicts_least_recently_used_first(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(3, 1'000'000, f.clock);
  t.put("a", "1");
  t.put("b", "2");
  t.put("c", "3");
  expect_get(t, "a", "1");  // touching a protects it: b is now the least recently used
  t.put("d", "4");          // order: d a c (b evicted)
  assert_int_equal(t.size(), 3);
  assert_int_equal(t.stats().evictions, 1);
  t.put("e", "5");  // order: e d a (c evicted)
  assert_int_equal(t.stats().evictions, 2);
  expect_miss(t, "b");
  expect_miss(t, "c");
  expect_get(t, "a", "1");
  expect_get(t, "d", "4");
  expect_get(t, "e", "5");
  assert_int_equal(t.size(), 3);
  assert_int_equal(t.stats().expired, 0);
}

void capacity_one_keeps_the_latest(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(1, 1'000, f.clock);
  t.put("a", "1");
  t.put("b", "2");
  assert_int_equal(t.size(), 1);
  assert_int_equal(t.stats().evictions, 1);
  expect_miss(t, "a");
  expect_get(t, "b", "2");
  t.put("b", "3");  // replacing needs no room
  assert_int_equal(t.stats().evictions, 1);
  expect_get(t, "b", "3");
  t.put("a", "1");
  assert_int_equal(t.stats().evictions, 2);
  expect_miss(t, "b");
  assert_int_equal(t.size(), 1);
}

void expires_exactly_at_the_boundary(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(10, 100, f.clock);
  f.clock.set(0);
  t.put("a", "1");
  t.put("b", "2");
  f.clock.set(99);
  expect_get(t, "a", "1");  // 99 < 100: alive, and refreshed to 99
  f.clock.set(100);         // b: now - last_used == expire
  expect_miss(t, "b");
  assert_int_equal(t.stats().expired, 1);
  assert_int_equal(t.stats().misses, 1);
  assert_int_equal(t.size(), 1);
  expect_miss(t, "b");  // already gone: a plain miss
  assert_int_equal(t.stats().expired, 1);
  assert_int_equal(t.stats().misses, 2);
  f.clock.set(198);
  expect_get(t, "a", "1");
  f.clock.set(298);
  expect_miss(t, "a");
  assert_int_equal(t.stats().expired, 2);
  assert_int_equal(t.size(), 0);
}

void get_restarts_expiry(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(10, 100, f.clock);
  f.clock.set(0);
  t.put("a", "1");
  for (TimePoint now = 60; now <= 600; now += 60) {
    f.clock.set(now);
    expect_get(t, "a", "1");  // 60 after each refresh: alive although 600 after the put
  }
  f.clock.set(700);
  expect_miss(t, "a");
  assert_int_equal(t.stats().hits, 10);
  assert_int_equal(t.stats().expired, 1);
}

void put_replaces_and_refreshes(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(2, 100, f.clock);
  f.clock.set(0);
  t.put("a", "1");
  t.put("b", "2");
  f.clock.set(50);
  t.put("a", "9");  // new value, most recently used, expiry restarted
  assert_int_equal(t.size(), 2);
  t.put("c", "3");  // evicts b, not a
  assert_int_equal(t.stats().evictions, 1);
  expect_miss(t, "b");
  f.clock.set(149);
  expect_get(t, "a", "9");
  // Replacing an expired entry counts it as expired and stores the new value.
  f.clock.set(300);
  t.put("a", "7");
  assert_int_equal(t.stats().expired, 2);  // a (replaced) and c (met at the back)
  assert_int_equal(t.size(), 1);
  expect_get(t, "a", "7");
  // A long key and server (heap strings) survive replacement with the index intact.
  const std::string key(200, 'k');
  t.put(key, std::string(300, 's'));
  t.put(key, "short");
  expect_get(t, key.c_str(), "short");
  t.erase(key);
  expect_miss(t, key.c_str());
}

void put_drops_expired_entries_before_evicting(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(2, 100, f.clock);
  f.clock.set(0);
  t.put("a", "1");
  f.clock.set(50);
  t.put("b", "2");
  f.clock.set(100);
  t.put("c", "3");  // a is expired: it goes instead of evicting a live entry
  assert_int_equal(t.stats().evictions, 0);
  assert_int_equal(t.stats().expired, 1);
  expect_get(t, "b", "2");
  expect_get(t, "c", "3");
  assert_int_equal(t.size(), 2);
}

void resize_shrinks_least_recently_used_first(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(5, 1'000, f.clock);
  for (const char* k : {"a", "b", "c", "d", "e"}) t.put(k, k);
  expect_get(t, "a", "a");  // order: a e d c b
  t.resize(2, 500);
  assert_int_equal(t.capacity(), 2);
  assert_int_equal(t.expire_ms(), 500);
  assert_int_equal(t.size(), 2);
  assert_int_equal(t.stats().evictions, 3);
  expect_miss(t, "b");
  expect_miss(t, "c");
  expect_miss(t, "d");
  expect_get(t, "e", "e");
  expect_get(t, "a", "a");
  // Growing keeps everything; the new expiry applies at once.
  t.resize(10, 500);
  assert_int_equal(t.size(), 2);
  f.clock.advance(500);
  assert_int_equal(t.expire_now(), 2);
  assert_int_equal(t.size(), 0);
}

void erase_removes_only_its_key(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(3, 1'000, f.clock);
  t.put("a", "1");
  t.put("b", "2");
  t.erase("a");
  t.erase("zzz");  // absent: harmless
  assert_int_equal(t.size(), 1);
  expect_miss(t, "a");
  expect_get(t, "b", "2");
  t.put("c", "3");
  t.put("d", "4");
  t.put("e", "5");  // evicts b: the erased a left no stale slot behind
  assert_int_equal(t.size(), 3);
  expect_miss(t, "b");
  t.erase("e");
  t.erase("d");
  t.erase("c");
  assert_int_equal(t.size(), 0);
  assert_int_equal(t.stats().evictions, 1);
  assert_int_equal(t.stats().expired, 0);
}

void expire_now_counts_what_it_drops(void** state) {
  auto& f = fixture(state);
  StickTable& t = f.table.emplace(10, 100, f.clock);
  f.clock.set(0);
  t.put("a", "1");
  f.clock.set(10);
  t.put("b", "2");
  f.clock.set(20);
  t.put("c", "3");
  f.clock.set(30);
  expect_get(t, "a", "1");  // a: last used 30
  assert_int_equal(t.expire_now(), 0);
  f.clock.set(110);  // b: 100 since last use
  assert_int_equal(t.expire_now(), 1);
  assert_int_equal(t.size(), 2);
  f.clock.set(130);  // c: 110, a: 100
  assert_int_equal(t.expire_now(), 2);
  assert_int_equal(t.size(), 0);
  assert_int_equal(t.expire_now(), 0);
  assert_int_equal(t.stats().expired, 3);
}

// --- The reference model -------------------------------------------------------------------

bool model_expired(const Model& m, const ModelEntry& e, TimePoint now) {
  return now - e.last_used >= m.expire_ms;
}

std::map<std::string, ModelEntry>::iterator model_lru(Model& m) {
  auto lru = m.entries.begin();
  for (auto it = m.entries.begin(); it != m.entries.end(); ++it) {
    if (it->second.stamp < lru->second.stamp) lru = it;
  }
  return lru;
}

void model_trim(Model& m, TimePoint now) {
  while (!m.entries.empty()) {
    auto lru = model_lru(m);
    if (!model_expired(m, lru->second, now)) break;
    m.entries.erase(lru);
    ++m.expired;
  }
  while (m.entries.size() > m.capacity) {
    m.entries.erase(model_lru(m));
    ++m.evictions;
  }
}

std::optional<std::string> model_get(Model& m, const std::string& key, TimePoint now) {
  auto it = m.entries.find(key);
  if (it == m.entries.end()) {
    ++m.misses;
    return std::nullopt;
  }
  if (model_expired(m, it->second, now)) {
    m.entries.erase(it);
    ++m.expired;
    ++m.misses;
    return std::nullopt;
  }
  ++m.hits;
  it->second.last_used = now;
  it->second.stamp = m.next_stamp++;
  return it->second.server;
}

void model_put(Model& m, const std::string& key, const std::string& server, TimePoint now) {
  auto it = m.entries.find(key);
  if (it != m.entries.end() && !model_expired(m, it->second, now)) {
    it->second = ModelEntry{server, now, m.next_stamp++};
    return;
  }
  if (it != m.entries.end()) {
    m.entries.erase(it);
    ++m.expired;
  }
  m.entries.emplace(key, ModelEntry{server, now, m.next_stamp++});
  model_trim(m, now);
}

size_t model_expire_now(Model& m, TimePoint now) {
  size_t n = 0;
  for (auto it = m.entries.begin(); it != m.entries.end();) {
    if (model_expired(m, it->second, now)) {
      it = m.entries.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  m.expired += n;
  return n;
}

void model_matches_random_operations(void** state) {
  auto& f = fixture(state);
  Model& m = f.model;
  m.capacity = 16;
  m.expire_ms = 200;
  StickTable& t = f.table.emplace(m.capacity, m.expire_ms, f.clock);
  auto roll = [&](uint32_t n) { return static_cast<uint32_t>(f.rng() % n); };
  for (int op = 0; op < 100'000; ++op) {
    const TimePoint now = f.clock.now();
    const std::string key = "user-" + std::to_string(roll(40));
    const uint32_t kind = roll(100);
    if (kind < 45) {
      auto got = t.get(key);
      auto want = model_get(m, key, now);
      assert_int_equal(got.has_value(), want.has_value());
      if (want) assert_string_equal(got->c_str(), want->c_str());
    } else if (kind < 85) {
      const std::string server = "10.0.0." + std::to_string(roll(8)) + ":9001";
      t.put(key, server);
      model_put(m, key, server, now);
    } else if (kind < 92) {
      t.erase(key);
      m.entries.erase(key);
    } else if (kind < 97) {
      assert_int_equal(t.expire_now(), model_expire_now(m, now));
    } else if (kind < 98) {
      m.capacity = 1 + roll(24);
      m.expire_ms = 1 + roll(400);
      t.resize(m.capacity, m.expire_ms);
      model_trim(m, now);
    } else {
      f.clock.advance(roll(60));
    }
    if (roll(4) == 0) f.clock.advance(roll(10));
    assert_true(t.size() <= t.capacity());
    assert_int_equal(t.size(), m.entries.size());
    assert_int_equal(t.stats().hits, m.hits);
    assert_int_equal(t.stats().misses, m.misses);
    assert_int_equal(t.stats().evictions, m.evictions);
    assert_int_equal(t.stats().expired, m.expired);
  }
  // The run covered every path.
  assert_true(m.hits > 1000 && m.misses > 1000 && m.evictions > 100 && m.expired > 100);
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(counts_hits_and_misses),
      TEST(evicts_least_recently_used_first),
      TEST(capacity_one_keeps_the_latest),
      TEST(expires_exactly_at_the_boundary),
      TEST(get_restarts_expiry),
      TEST(put_replaces_and_refreshes),
      TEST(put_drops_expired_entries_before_evicting),
      TEST(resize_shrinks_least_recently_used_first),
      TEST(erase_removes_only_its_key),
      TEST(expire_now_counts_what_it_drops),
      TEST(model_matches_random_operations),
  };
#undef TEST
  return cmocka_run_group_tests_name("routing/stick_table.cpp", tests, nullptr, nullptr);
}
