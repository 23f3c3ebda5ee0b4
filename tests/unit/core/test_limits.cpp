// Tests for proxy/core/limits.cpp: per-address counting of connection and session slots, the
// per-client maximum, release on destruction, moves, and a random run against a reference model.

#include <map>
#include <random>
#include <string>
#include <vector>

#include "proxy/core/limits.h"

// Last: cmocka.h defines macros (fail, ...) that break standard headers included after it.
#include "cmocka.hpp"

namespace {

using tether::ClientTable;

void counts_per_address_and_kind(void**) {
  ClientTable t;
  ClientTable::Slot a = t.take(ClientTable::kConnection, "10.0.0.1", 10);
  ClientTable::Slot b = t.take(ClientTable::kConnection, "10.0.0.1", 10);
  ClientTable::Slot c = t.take(ClientTable::kSession, "10.0.0.1", 10);
  ClientTable::Slot d = t.take(ClientTable::kConnection, "::1", 10);
  assert_true(a && b && c && d);
  assert_int_equal(t.count(ClientTable::kConnection, "10.0.0.1"), 2);
  assert_int_equal(t.count(ClientTable::kSession, "10.0.0.1"), 1);
  assert_int_equal(t.count(ClientTable::kConnection, "::1"), 1);
  assert_int_equal(t.count(ClientTable::kSession, "::1"), 0);
  assert_int_equal(t.total(ClientTable::kConnection), 3);
  assert_int_equal(t.total(ClientTable::kSession), 1);
  assert_int_equal(t.clients(), 2);
}

void refuses_beyond_the_per_client_maximum(void**) {
  ClientTable t;
  std::vector<ClientTable::Slot> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(t.take(ClientTable::kConnection, "a", 3));
    assert_true(static_cast<bool>(held.back()));
  }
  ClientTable::Slot over = t.take(ClientTable::kConnection, "a", 3);
  assert_false(static_cast<bool>(over));
  assert_int_equal(t.count(ClientTable::kConnection, "a"), 3);
  // Another address and the other kind are not affected.
  assert_true(static_cast<bool>(t.take(ClientTable::kConnection, "b", 3)));
  assert_true(static_cast<bool>(t.take(ClientTable::kSession, "a", 3)));
  // A refused take of a new address leaves no entry behind.
  assert_false(static_cast<bool>(t.take(ClientTable::kSession, "c", 0)));
  assert_int_equal(t.clients(), 1);
  held.pop_back();
  assert_true(static_cast<bool>(t.take(ClientTable::kConnection, "a", 3)));
}

void release_and_destruction_give_back_once(void**) {
  ClientTable t;
  {
    ClientTable::Slot s = t.take(ClientTable::kSession, "x", 5);
    s.release();
    assert_int_equal(t.total(ClientTable::kSession), 0);
    assert_int_equal(t.clients(), 0);
    s.release();  // twice: nothing more
    assert_int_equal(t.total(ClientTable::kSession), 0);
  }
  {
    ClientTable::Slot s = t.take(ClientTable::kSession, "x", 5);
    assert_int_equal(t.count(ClientTable::kSession, "x"), 1);
  }
  assert_int_equal(t.count(ClientTable::kSession, "x"), 0);
  assert_int_equal(t.clients(), 0);
}

void moves_carry_the_slot(void**) {
  ClientTable t;
  ClientTable::Slot a = t.take(ClientTable::kConnection, "m", 5);
  ClientTable::Slot b(std::move(a));
  assert_false(static_cast<bool>(a));
  assert_true(static_cast<bool>(b));
  assert_int_equal(t.count(ClientTable::kConnection, "m"), 1);
  ClientTable::Slot c = t.take(ClientTable::kConnection, "m", 5);
  c = std::move(b);  // c's own slot is given back, b's moves in
  assert_int_equal(t.count(ClientTable::kConnection, "m"), 1);
  c = ClientTable::Slot{};
  assert_int_equal(t.count(ClientTable::kConnection, "m"), 0);
}

void model_matches_random_operations(void**) {
  ClientTable t;
  std::mt19937 rng(7);
  const char* ips[] = {"1.1.1.1", "2.2.2.2", "::1", "fe80::1"};
  std::vector<std::pair<ClientTable::Slot, std::pair<int, std::string>>> held;
  std::map<std::pair<int, std::string>, uint64_t> model;
  for (int step = 0; step < 20'000; ++step) {
    if (held.empty() || rng() % 3 != 0) {
      auto kind = static_cast<ClientTable::Kind>(rng() % 2);
      std::string ip = ips[rng() % 4];
      ClientTable::Slot s = t.take(kind, ip, 25);
      uint64_t& m = model[{kind, ip}];
      assert_int_equal(static_cast<bool>(s), m < 25);
      if (s) {
        ++m;
        held.emplace_back(std::move(s), std::make_pair(static_cast<int>(kind), ip));
      }
    } else {
      size_t i = rng() % held.size();
      --model[held[i].second];
      std::swap(held[i], held.back());
      held.pop_back();
    }
    uint64_t totals[2] = {};
    for (const auto& [key, n] : model) {
      assert_int_equal(t.count(static_cast<ClientTable::Kind>(key.first), key.second), n);
      totals[key.first] += n;
    }
    assert_int_equal(t.total(ClientTable::kConnection), totals[0]);
    assert_int_equal(t.total(ClientTable::kSession), totals[1]);
  }
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(counts_per_address_and_kind),
      cmocka_unit_test(refuses_beyond_the_per_client_maximum),
      cmocka_unit_test(release_and_destruction_give_back_once),
      cmocka_unit_test(moves_carry_the_slot),
      cmocka_unit_test(model_matches_random_operations),
  };
  return cmocka_run_group_tests_name("core/limits.cpp", tests, nullptr, nullptr);
}
