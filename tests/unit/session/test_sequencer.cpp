// Tests for proxy/session/sequencer.h: ordering a client's numbered sends (POST tether-seq).

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "cmocka.hpp"
#include "proxy/session/sequencer.h"

namespace {

using tether::session::Sequencer;
using Seq = Sequencer<std::string>;
using Verdict = Seq::Verdict;

struct Fixture {
  std::optional<Seq> seq;
  std::optional<Sequencer<std::unique_ptr<int>>> owning;
  std::optional<std::pair<uint64_t, std::string>> popped;
  std::map<uint64_t, std::string> taken;
  std::string value;
  std::unique_ptr<int> owned;
  std::optional<std::pair<uint64_t, std::unique_ptr<int>>> owned_pop;
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

Verdict offer(Seq& s, uint64_t n, const char* text) {
  std::string v = text;
  return s.offer(n, std::move(v));
}

// The next pop_ready() gives N with TEXT.
void expect_pop(Fixture& f, uint64_t n, const char* text) {
  f.popped = f.seq->pop_ready();
  assert_true(f.popped.has_value());
  assert_int_equal(f.popped->first, n);
  assert_string_equal(f.popped->second.c_str(), text);
}

void expect_no_pop(Fixture& f) {
  f.popped = f.seq->pop_ready();
  assert_false(f.popped.has_value());
}

void in_order_is_ready_at_once(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  assert_int_equal(s.next(), 1);
  for (uint64_t n = 1; n <= 5; ++n) {
    assert_int_equal(offer(s, n, "x"), Verdict::kReady);
    assert_int_equal(s.next(), n + 1);
    assert_int_equal(s.held_count(), 0);
    expect_no_pop(f);
  }
}

void ready_value_is_not_stored(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  f.value = "forward me";
  assert_int_equal(s.offer(1, std::move(f.value)), Verdict::kReady);
  assert_string_equal(f.value.c_str(), "forward me");  // the caller still has it
  assert_null(s.held(1));
  assert_int_equal(s.held_count(), 0);
}

void early_is_held_until_the_gap_fills(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  assert_int_equal(offer(s, 3, "c"), Verdict::kHeld);
  assert_int_equal(offer(s, 4, "d"), Verdict::kHeld);
  assert_int_equal(offer(s, 6, "f"), Verdict::kHeld);
  assert_int_equal(s.held_count(), 3);
  assert_int_equal(s.next(), 1);
  expect_no_pop(f);  // 1 is missing
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);
  assert_int_equal(s.next(), 2);
  expect_no_pop(f);  // 2 is missing
  assert_int_equal(offer(s, 2, "b"), Verdict::kReady);
  // The run 3, 4 drains; 6 waits for 5.
  expect_pop(f, 3, "c");
  assert_int_equal(s.next(), 4);
  expect_pop(f, 4, "d");
  assert_int_equal(s.next(), 5);
  expect_no_pop(f);
  assert_int_equal(s.held_count(), 1);
  assert_string_equal(s.held(6)->c_str(), "f");
  assert_int_equal(offer(s, 5, "e"), Verdict::kReady);
  expect_pop(f, 6, "f");
  expect_no_pop(f);
  assert_int_equal(s.next(), 7);
  assert_int_equal(s.held_count(), 0);
}

void early_in_reverse_order(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(100);
  for (uint64_t n = 50; n >= 2; --n) {
    assert_int_equal(s.offer(n, std::to_string(n)), Verdict::kHeld);
  }
  assert_int_equal(s.held_count(), 49);
  assert_int_equal(offer(s, 1, "1"), Verdict::kReady);
  for (uint64_t n = 2; n <= 50; ++n) expect_pop(f, n, std::to_string(n).c_str());
  expect_no_pop(f);
  assert_int_equal(s.next(), 51);
}

void duplicate_of_forwarded(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);
  assert_int_equal(offer(s, 1, "a"), Verdict::kDuplicate);
  assert_int_equal(offer(s, 3, "c"), Verdict::kHeld);
  assert_int_equal(offer(s, 2, "b"), Verdict::kReady);
  expect_pop(f, 3, "c");
  // Forwarded from the held run: a repeat is a duplicate too, and is not held again.
  assert_int_equal(offer(s, 3, "c"), Verdict::kDuplicate);
  assert_int_equal(offer(s, 2, "b"), Verdict::kDuplicate);
  assert_int_equal(offer(s, 1, "a"), Verdict::kDuplicate);
  assert_int_equal(s.held_count(), 0);
  assert_int_equal(s.next(), 4);
}

void duplicate_of_held(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  assert_int_equal(offer(s, 3, "first"), Verdict::kHeld);
  f.value = "second";
  assert_int_equal(s.offer(3, std::move(f.value)), Verdict::kAlreadyHeld);
  assert_string_equal(f.value.c_str(), "second");  // not taken
  assert_non_null(s.held(3));
  assert_string_equal(s.held(3)->c_str(), "first");  // the first one stays
  assert_null(s.held(2));
  assert_null(s.held(4));
  assert_int_equal(s.held_count(), 1);
  // held() gives a live entry (the session keeps the waiting POST's state there).
  *s.held(3) = "changed";
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);
  assert_int_equal(offer(s, 2, "b"), Verdict::kReady);
  expect_pop(f, 3, "changed");
}

void too_far_ahead_boundary(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(4);
  assert_int_equal(offer(s, 6, "x"), Verdict::kTooFarAhead);  // 5 past next = 1
  assert_int_equal(offer(s, 5, "e"), Verdict::kHeld);         // exactly max_ahead past
  assert_int_equal(s.held_count(), 1);
  assert_int_equal(offer(s, UINT64_MAX, "x"), Verdict::kTooFarAhead);
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);  // next = 2: the window moves on
  assert_int_equal(offer(s, 7, "x"), Verdict::kTooFarAhead);
  assert_int_equal(offer(s, 6, "f"), Verdict::kHeld);
  assert_int_equal(s.held_count(), 2);
  assert_int_equal(s.next(), 2);
}

void max_ahead_zero_holds_nothing(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(0);
  assert_int_equal(offer(s, 2, "b"), Verdict::kTooFarAhead);
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);
  assert_int_equal(offer(s, 2, "b"), Verdict::kReady);
  assert_int_equal(s.held_count(), 0);
}

void seq_zero_is_invalid(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  assert_int_equal(offer(s, 0, "x"), Verdict::kInvalid);
  assert_int_equal(s.next(), 1);
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);
  assert_int_equal(offer(s, 0, "x"), Verdict::kInvalid);  // not a duplicate either
  assert_int_equal(s.next(), 2);
  assert_int_equal(s.held_count(), 0);
}

void take_all_empties_the_held(void** state) {
  auto& f = fixture(state);
  Seq& s = f.seq.emplace(10);
  assert_int_equal(offer(s, 1, "a"), Verdict::kReady);
  assert_int_equal(offer(s, 3, "c"), Verdict::kHeld);
  assert_int_equal(offer(s, 5, "e"), Verdict::kHeld);
  f.taken = s.take_all();
  assert_int_equal(f.taken.size(), 2);
  assert_string_equal(f.taken.at(3).c_str(), "c");
  assert_string_equal(f.taken.at(5).c_str(), "e");
  assert_int_equal(s.held_count(), 0);
  assert_null(s.held(3));
  assert_int_equal(s.next(), 2);  // ordering state is kept
  expect_no_pop(f);
  f.taken = s.take_all();
  assert_true(f.taken.empty());
}

void holds_move_only_values(void** state) {
  auto& f = fixture(state);
  auto& s = f.owning.emplace(10);
  using V = Sequencer<std::unique_ptr<int>>::Verdict;
  assert_int_equal(s.offer(2, std::make_unique<int>(2)), V::kHeld);
  f.owned = std::make_unique<int>(1);
  assert_int_equal(s.offer(1, std::move(f.owned)), V::kReady);
  assert_non_null(f.owned.get());  // kReady leaves the value with the caller
  f.owned_pop = s.pop_ready();
  assert_true(f.owned_pop.has_value());
  assert_int_equal(f.owned_pop->first, 2);
  assert_int_equal(*f.owned_pop->second, 2);
  f.owned_pop = s.pop_ready();
  assert_false(f.owned_pop.has_value());
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(in_order_is_ready_at_once),
      TEST(ready_value_is_not_stored),
      TEST(early_is_held_until_the_gap_fills),
      TEST(early_in_reverse_order),
      TEST(duplicate_of_forwarded),
      TEST(duplicate_of_held),
      TEST(too_far_ahead_boundary),
      TEST(max_ahead_zero_holds_nothing),
      TEST(seq_zero_is_invalid),
      TEST(take_all_empties_the_held),
      TEST(holds_move_only_values),
  };
#undef TEST
  return cmocka_run_group_tests_name("session/sequencer.h", tests, nullptr, nullptr);
}
