// Tests for proxy/session/outbox.cpp: seq numbering, the delivered/pending runs, eviction of
// the replay window, the backlog bound and release by acknowledgement.

#include <deque>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cmocka.hpp"
#include "proxy/session/outbox.h"

namespace {

using tether::session::Outbox;
using tether::session::OutMessage;

struct Fixture {
  std::optional<Outbox> box;
  std::vector<uint64_t> seqs;
  std::deque<OutMessage> model;  // the reference in model_matches_random_operations
  std::mt19937 rng{20240607};
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

// Fills F.seqs with the seqs held by BOX, oldest first, and checks they are contiguous.
void collect(Fixture& f, const Outbox& box) {
  f.seqs.clear();
  for (auto it = box.after(0); it != box.end(); ++it) f.seqs.push_back(it->seq);
  for (size_t i = 1; i < f.seqs.size(); ++i) assert_int_equal(f.seqs[i], f.seqs[i - 1] + 1);
  assert_int_equal(f.seqs.size(), box.size());
  if (!f.seqs.empty()) {
    assert_int_equal(f.seqs.front(), box.first_seq());
    assert_int_equal(f.seqs.back(), box.last_seq());
  } else {
    assert_int_equal(box.first_seq(), box.last_seq() + 1);
  }
}

// BOX holds exactly seqs FIRST..LAST.
void expect_held(Fixture& f, const Outbox& box, uint64_t first, uint64_t last) {
  collect(f, box);
  assert_int_equal(box.first_seq(), first);
  assert_int_equal(box.last_seq(), last);
  assert_int_equal(box.size(), last + 1 - first);
}

void starts_empty(void** state) {
  auto& f = fixture(state);
  f.box.emplace(3, 100);
  const Outbox& b = *f.box;
  assert_int_equal(b.last_seq(), 0);
  assert_int_equal(b.first_seq(), 1);
  assert_int_equal(b.delivered_through(), 0);
  assert_int_equal(b.size(), 0);
  assert_int_equal(b.bytes(), 0);
  assert_int_equal(b.max_messages(), 3);
  assert_int_equal(b.max_bytes(), 100);
  assert_false(b.backlog_full());
  assert_true(b.after(0) == b.end());
  assert_true(b.after(5) == b.end());
}

void seqs_start_at_one_and_keep_payloads(void** state) {
  auto& f = fixture(state);
  f.box.emplace(10, 1000);
  Outbox& b = *f.box;
  assert_int_equal(b.push(false, "hello"), 1);
  assert_int_equal(b.push(true, std::string("\x00\x01\x02", 3)), 2);
  assert_int_equal(b.push(false, ""), 3);
  expect_held(f, b, 1, 3);
  assert_int_equal(b.bytes(), 8);  // payload bytes only: 5 + 3 + 0
  auto it = b.after(0);
  assert_int_equal(it->seq, 1);
  assert_false(it->binary);
  assert_string_equal(it->payload.c_str(), "hello");
  ++it;
  assert_true(it->binary);
  assert_int_equal(it->payload.size(), 3);
  assert_memory_equal(it->payload.data(), "\x00\x01\x02", 3);
  ++it;
  assert_false(it->binary);
  assert_true(it->payload.empty());
  ++it;
  assert_true(it == b.end());
}

void pending_is_never_evicted(void** state) {
  auto& f = fixture(state);
  f.box.emplace(3, 10);
  Outbox& b = *f.box;
  for (int i = 0; i < 6; ++i) b.push(false, "abcd");  // 2x the count bound, 2.4x the bytes bound
  expect_held(f, b, 1, 6);
  assert_int_equal(b.bytes(), 24);
  assert_true(b.backlog_full());
}

void evicts_delivered_oldest_first_by_count(void** state) {
  auto& f = fixture(state);
  f.box.emplace(3, 1000);
  Outbox& b = *f.box;
  b.push(false, "1");
  b.push(false, "2");
  b.push(false, "3");
  b.mark_delivered(2);
  assert_int_equal(b.push(false, "4"), 4);  // needs one slot: evicts 1 only
  expect_held(f, b, 2, 4);
  assert_string_equal(b.after(0)->payload.c_str(), "2");
  b.push(false, "5");  // evicts 2; 3 is pending
  expect_held(f, b, 3, 5);
  b.push(false, "6");  // over the bound, but only pending messages are left
  expect_held(f, b, 3, 6);
  assert_int_equal(b.bytes(), 4);
}

void evicts_only_as_many_as_needed(void** state) {
  auto& f = fixture(state);
  f.box.emplace(5, 1000);
  Outbox& b = *f.box;
  for (int i = 0; i < 5; ++i) b.push(false, "x");
  b.mark_delivered(5);  // all delivered
  b.push(false, "y");
  expect_held(f, b, 2, 6);  // one evicted, four delivered kept as the replay window
  assert_int_equal(b.delivered_through(), 5);
  assert_false(b.backlog_full());
}

void evicts_delivered_oldest_first_by_bytes(void** state) {
  auto& f = fixture(state);
  f.box.emplace(100, 10);
  Outbox& b = *f.box;
  b.push(false, "aaaa");
  b.push(false, "bbbb");
  b.mark_delivered(2);
  b.push(false, "cc");  // exactly 10 bytes: no eviction
  expect_held(f, b, 1, 3);
  assert_int_equal(b.bytes(), 10);
  b.push(false, "d");  // 11 > 10: evicts 1
  expect_held(f, b, 2, 4);
  assert_int_equal(b.bytes(), 7);
  b.push(true, "eeeeeeeeee");  // evicts 2 (delivered); 3 is pending, so one past the bound
  expect_held(f, b, 3, 5);
  assert_int_equal(b.bytes(), 13);
}

void evicts_several_for_one_large_message(void** state) {
  auto& f = fixture(state);
  f.box.emplace(100, 10);
  Outbox& b = *f.box;
  for (int i = 0; i < 5; ++i) b.push(false, "ab");
  b.mark_delivered(5);
  b.push(false, "0123456");  // 7 bytes: 10 - 7 = 3 may stay, so one 2-byte message
  expect_held(f, b, 5, 6);
  assert_int_equal(b.bytes(), 9);
  b.push(false, "0123456789ABC");  // bigger than the whole bound: evicts all delivered
  expect_held(f, b, 6, 7);
  assert_int_equal(b.bytes(), 20);
}

void eviction_stops_at_the_first_pending(void** state) {
  auto& f = fixture(state);
  f.box.emplace(2, 1000);
  Outbox& b = *f.box;
  b.push(false, "1");
  b.push(false, "2");
  b.push(false, "3");
  b.push(false, "4");
  b.mark_delivered(1);
  b.push(false, "5");  // evicts 1, then 2 is pending: stop though 4 + 1 > 2
  expect_held(f, b, 2, 5);
}

void empty_payloads_count_by_number(void** state) {
  auto& f = fixture(state);
  f.box.emplace(2, 1);
  Outbox& b = *f.box;
  b.push(false, "");
  assert_int_equal(b.bytes(), 0);
  assert_false(b.backlog_full());
  b.push(false, "");
  assert_int_equal(b.bytes(), 0);
  assert_true(b.backlog_full());  // by count
  b.mark_delivered(2);
  assert_false(b.backlog_full());
  b.push(false, "");
  expect_held(f, b, 2, 3);
}

void backlog_full_by_count(void** state) {
  auto& f = fixture(state);
  f.box.emplace(3, 1000);
  Outbox& b = *f.box;
  b.push(false, "a");
  assert_false(b.backlog_full());
  b.push(false, "a");
  assert_false(b.backlog_full());
  b.push(false, "a");
  assert_true(b.backlog_full());  // 3 pending
  b.mark_delivered(1);
  assert_false(b.backlog_full());  // 2 pending, 1 delivered
  b.push(false, "a");              // 3 + 1 > 3: evicts 1
  expect_held(f, b, 2, 4);
  assert_true(b.backlog_full());
  b.release_through(2);
  assert_false(b.backlog_full());
  b.push(false, "a");
  assert_true(b.backlog_full());
  b.release_through(5);
  assert_false(b.backlog_full());
  assert_int_equal(b.size(), 0);
}

void backlog_full_by_bytes(void** state) {
  auto& f = fixture(state);
  f.box.emplace(100, 10);
  Outbox& b = *f.box;
  b.push(false, "123456789");
  assert_false(b.backlog_full());  // 9 < 10
  b.push(false, "0");
  assert_true(b.backlog_full());  // 10 >= 10
  b.mark_delivered(1);
  assert_false(b.backlog_full());  // 1 pending byte
  b.push(false, "12345678");       // 10 + 8 > 10: evicts 1, then 1 + 8 fits
  expect_held(f, b, 2, 3);
  assert_false(b.backlog_full());  // 9 pending bytes
  b.push(false, "x");
  assert_true(b.backlog_full());
  b.mark_delivered(3);
  assert_false(b.backlog_full());  // 1 pending byte (seq 4)
  b.release_through(4);
  assert_false(b.backlog_full());
  b.push(false, "this is more than ten bytes");
  assert_true(b.backlog_full());  // one message alone can fill it
}

void release_through_the_middle(void** state) {
  auto& f = fixture(state);
  f.box.emplace(10, 1000);
  Outbox& b = *f.box;
  for (const char* p : {"a", "bb", "ccc", "dddd", "eeeee"}) b.push(false, p);
  b.release_through(3);
  expect_held(f, b, 4, 5);
  assert_int_equal(b.bytes(), 9);
  assert_int_equal(b.delivered_through(), 3);
  assert_true(b.after(0) == b.after(3));
  assert_int_equal(b.after(0)->seq, 4);
  b.release_through(3);  // again: nothing changes
  expect_held(f, b, 4, 5);
  b.release_through(1);  // older than what is held
  expect_held(f, b, 4, 5);
  assert_int_equal(b.delivered_through(), 3);
  assert_int_equal(b.push(false, "f"), 6);
}

void release_through_zero_changes_nothing(void** state) {
  auto& f = fixture(state);
  f.box.emplace(10, 1000);
  Outbox& b = *f.box;
  b.release_through(0);
  assert_int_equal(b.first_seq(), 1);
  assert_int_equal(b.delivered_through(), 0);
  b.push(false, "a");
  b.push(false, "b");
  b.release_through(0);
  expect_held(f, b, 1, 2);
  assert_int_equal(b.delivered_through(), 0);
  assert_int_equal(b.bytes(), 2);
}

void release_through_beyond_the_last(void** state) {
  auto& f = fixture(state);
  f.box.emplace(3, 1000);
  Outbox& b = *f.box;
  b.push(false, "a");
  b.push(false, "b");
  b.push(false, "c");
  assert_true(b.backlog_full());
  b.release_through(10);
  expect_held(f, b, 4, 3);
  assert_int_equal(b.bytes(), 0);
  assert_int_equal(b.delivered_through(), 3);  // clamped to last_seq
  assert_false(b.backlog_full());
  assert_true(b.after(0) == b.end());
  assert_int_equal(b.push(false, "d"), 4);  // numbering goes on
  expect_held(f, b, 4, 4);
  assert_int_equal(b.delivered_through(), 3);  // and 4 is pending
  b.push(false, "e");
  b.push(false, "f");
  assert_true(b.backlog_full());
}

void release_keeps_delivered_through_ahead(void** state) {
  auto& f = fixture(state);
  f.box.emplace(10, 10);
  Outbox& b = *f.box;
  for (int i = 0; i < 5; ++i) b.push(false, "ab");
  assert_true(b.backlog_full());  // 10 pending bytes
  b.mark_delivered(4);
  b.release_through(2);
  expect_held(f, b, 3, 5);
  assert_int_equal(b.delivered_through(), 4);
  assert_int_equal(b.bytes(), 6);
  assert_false(b.backlog_full());                   // 2 pending bytes
  for (int i = 0; i < 3; ++i) b.push(false, "ab");  // the third evicts 3
  expect_held(f, b, 4, 8);
  assert_false(b.backlog_full());  // 8 pending bytes: 5..8
  b.push(false, "ab");             // evicts 4, the last delivered; then 10 pending bytes
  expect_held(f, b, 5, 9);
  assert_true(b.backlog_full());
}

void mark_delivered_clamps_and_never_goes_back(void** state) {
  auto& f = fixture(state);
  f.box.emplace(10, 1000);
  Outbox& b = *f.box;
  b.mark_delivered(5);  // nothing yet
  assert_int_equal(b.delivered_through(), 0);
  b.push(false, "a");
  b.push(false, "b");
  b.mark_delivered(100);
  assert_int_equal(b.delivered_through(), 2);
  b.mark_delivered(1);
  assert_int_equal(b.delivered_through(), 2);
  b.mark_delivered(0);
  assert_int_equal(b.delivered_through(), 2);
  b.push(false, "c");  // a new message is pending
  assert_int_equal(b.delivered_through(), 2);
  expect_held(f, b, 1, 3);
}

void after_at_every_position(void** state) {
  auto& f = fixture(state);
  f.box.emplace(5, 1000);
  Outbox& b = *f.box;
  for (int i = 0; i < 5; ++i) b.push(false, std::string(1, static_cast<char>('a' + i)));
  for (uint64_t s = 0; s <= 7; ++s) {
    auto it = b.after(s);
    if (s < 5) {
      assert_int_equal(it->seq, s + 1);
      assert_int_equal(it->payload[0], 'a' + static_cast<int>(s));
      assert_int_equal(std::distance(it, b.end()), 5 - s);
    } else {
      assert_true(it == b.end());
    }
  }
  assert_true(b.after(UINT64_MAX) == b.end());
  // Once the front has moved on, any seq before it gives the oldest held.
  b.mark_delivered(5);
  b.push(false, "f");
  b.push(false, "g");
  expect_held(f, b, 3, 7);
  for (uint64_t s = 0; s <= 9; ++s) {
    auto it = b.after(s);
    if (s < 3) {
      assert_true(it == b.after(0));
      assert_int_equal(it->seq, 3);
    } else if (s < 7) {
      assert_int_equal(it->seq, s + 1);
      assert_int_equal(std::distance(it, b.end()), 7 - s);
    } else {
      assert_true(it == b.end());
    }
  }
}

void first_seq_when_empty(void** state) {
  auto& f = fixture(state);
  f.box.emplace(2, 100);
  Outbox& b = *f.box;
  assert_int_equal(b.first_seq(), 1);
  b.push(false, "a");
  assert_int_equal(b.first_seq(), 1);
  b.release_through(1);
  assert_int_equal(b.first_seq(), 2);
  assert_int_equal(b.last_seq(), 1);
  b.push(false, "b");
  b.push(false, "c");
  b.release_through(3);
  assert_int_equal(b.first_seq(), 4);
}

// The bound holds except for pending messages (at most one past it when the caller stops at
// backlog_full), checked against a plain model over random operations.
void model_matches_random_operations(void** state) {
  auto& f = fixture(state);
  constexpr size_t kMaxMessages = 8;
  constexpr size_t kMaxBytes = 64;
  f.box.emplace(kMaxMessages, kMaxBytes);
  Outbox& b = *f.box;
  uint64_t next = 1;
  uint64_t delivered = 0;
  auto model_bytes = [&f] {
    size_t n = 0;
    for (const auto& m : f.model) n += m.payload.size();
    return n;
  };
  for (int step = 0; step < 20000; ++step) {
    const unsigned op = f.rng() % 10;
    if (op < 5) {
      if (b.backlog_full()) continue;  // what the session does: stop reading upstream
      std::string payload(f.rng() % 20, static_cast<char>('a' + step % 26));
      while (!f.model.empty() && f.model.front().seq <= delivered &&
             (f.model.size() + 1 > kMaxMessages || model_bytes() + payload.size() > kMaxBytes)) {
        f.model.pop_front();
      }
      f.model.push_back(OutMessage{.seq = next, .binary = (step & 1) != 0, .payload = payload});
      assert_int_equal(b.push((step & 1) != 0, payload), next);
      ++next;
    } else if (op < 8) {
      const uint64_t last = next - 1;
      const uint64_t seq = last == 0 ? 0 : f.rng() % (last + 2);
      b.mark_delivered(seq);
      delivered = std::max(delivered, std::min(seq, last));
    } else {
      const uint64_t last = next - 1;
      const uint64_t ack = f.rng() % (last + 2);
      b.release_through(ack);
      while (!f.model.empty() && f.model.front().seq <= ack) f.model.pop_front();
      delivered = std::max(delivered, std::min(ack, last));
    }
    assert_int_equal(b.last_seq(), next - 1);
    assert_int_equal(b.delivered_through(), delivered);
    assert_int_equal(b.size(), f.model.size());
    assert_int_equal(b.bytes(), model_bytes());
    assert_int_equal(b.first_seq(), f.model.empty() ? next : f.model.front().seq);
    size_t pending = 0;
    size_t pending_bytes = 0;
    for (const auto& m : f.model) {
      if (m.seq > delivered) {
        ++pending;
        pending_bytes += m.payload.size();
      }
    }
    assert_int_equal(b.backlog_full(), pending >= kMaxMessages || pending_bytes >= kMaxBytes);
    // Pushing only while !backlog_full(): the count bound holds, the bytes bound is passed by
    // at most the last message.
    assert_true(b.size() <= kMaxMessages);
    assert_true(pending_bytes < kMaxBytes + 20);
    auto it = b.after(0);
    for (const auto& m : f.model) {
      assert_true(it != b.end());
      assert_int_equal(it->seq, m.seq);
      assert_int_equal(it->binary, m.binary);
      assert_true(it->payload == m.payload);
      ++it;
    }
    assert_true(it == b.end());
    const uint64_t probe = f.rng() % (next + 1);
    auto at = b.after(probe);
    if (at != b.end()) {
      assert_int_equal(at->seq, std::max(probe + 1, b.first_seq()));
    } else {
      assert_true(b.size() == 0 || probe >= b.last_seq());
    }
  }
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(starts_empty),
      TEST(seqs_start_at_one_and_keep_payloads),
      TEST(pending_is_never_evicted),
      TEST(evicts_delivered_oldest_first_by_count),
      TEST(evicts_only_as_many_as_needed),
      TEST(evicts_delivered_oldest_first_by_bytes),
      TEST(evicts_several_for_one_large_message),
      TEST(eviction_stops_at_the_first_pending),
      TEST(empty_payloads_count_by_number),
      TEST(backlog_full_by_count),
      TEST(backlog_full_by_bytes),
      TEST(release_through_the_middle),
      TEST(release_through_zero_changes_nothing),
      TEST(release_through_beyond_the_last),
      TEST(release_keeps_delivered_through_ahead),
      TEST(mark_delivered_clamps_and_never_goes_back),
      TEST(after_at_every_position),
      TEST(first_seq_when_empty),
      TEST(model_matches_random_operations),
  };
#undef TEST
  return cmocka_run_group_tests_name("session/outbox.cpp", tests, nullptr, nullptr);
}
