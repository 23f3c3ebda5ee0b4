#pragma once
// Orders a client's numbered sends (POST tether-seq=N, N from 1) before they go upstream, with
// no I/O: the next expected seq goes at once, an early one is held until the gap fills (up to
// max_ahead past the next expected), a repeated one is recognised.

#include <cstdint>
#include <map>
#include <optional>
#include <utility>

namespace tether::session {

template <class T>
class Sequencer {
 public:
  enum class Verdict {
    kReady,        // SEQ is the next expected: forward it now, then drain pop_ready()
    kHeld,         // early: kept until the gap before it fills
    kAlreadyHeld,  // an early seq offered again while still held; held(seq) gives the entry
    kDuplicate,    // already forwarded
    kTooFarAhead,  // more than max_ahead past the next expected
    kInvalid,      // seq 0
  };

  explicit Sequencer(uint64_t max_ahead) : max_ahead_(max_ahead) {}

  // On kReady the caller forwards VALUE itself (VALUE is not stored) and next() moves on.
  Verdict offer(uint64_t seq, T&& value) {
    if (seq == 0) return Verdict::kInvalid;
    if (seq < next_) return Verdict::kDuplicate;
    if (seq == next_) {
      ++next_;
      return Verdict::kReady;
    }
    if (seq - next_ > max_ahead_) return Verdict::kTooFarAhead;
    if (held_.count(seq)) return Verdict::kAlreadyHeld;
    held_.emplace(seq, std::move(value));
    return Verdict::kHeld;
  }

  // The held entry for SEQ, or nullptr.
  T* held(uint64_t seq) {
    auto it = held_.find(seq);
    return it == held_.end() ? nullptr : &it->second;
  }

  // The held value that is now next in order, if any (and moves next() on).
  std::optional<std::pair<uint64_t, T>> pop_ready() {
    auto it = held_.find(next_);
    if (it == held_.end()) return std::nullopt;
    std::pair<uint64_t, T> out{it->first, std::move(it->second)};
    held_.erase(it);
    ++next_;
    return out;
  }

  // Removes and returns every held entry (the session is closing).
  std::map<uint64_t, T> take_all() { return std::exchange(held_, {}); }

  uint64_t next() const { return next_; }
  size_t held_count() const { return held_.size(); }

 private:
  uint64_t max_ahead_;
  uint64_t next_ = 1;
  std::map<uint64_t, T> held_;
};

}  // namespace tether::session
