#pragma once
// A sticky routing table: user key -> server id, so one user's sessions reach one backend.
// Bounded (least recently used goes first) and expiring (an entry unused for `expire` is gone).
// Its lifetime is independent of any parsed config, so a reload can keep it. No I/O.

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proxy/routing/clock.h"

namespace tether::routing {

struct StickStats {
  uint64_t hits = 0;       // get() found a live entry
  uint64_t misses = 0;     // get() found nothing (or an expired entry)
  uint64_t evictions = 0;  // entries dropped to stay within capacity
  uint64_t expired = 0;    // entries dropped because they were unused for `expire`
};

class StickTable {
 public:
  // CAPACITY >= 1 entries; EXPIRE > 0 ms. CLOCK must outlive the table.
  StickTable(size_t capacity, int64_t expire_ms, const Clock& clock = steady_clock());
  // The index views the list's strings: a copy would point into the original.
  StickTable(const StickTable&) = delete;
  StickTable& operator=(const StickTable&) = delete;

  // The server for KEY, refreshing the entry (most recently used, expiry restarted); nullopt
  // (and a miss) when absent or expired (an expired entry is removed).
  std::optional<std::string> get(std::string_view key);
  // Sets KEY -> SERVER (new or replacing), most recently used; evicts the least recently used
  // entry when over capacity.
  void put(std::string_view key, std::string_view server);
  void erase(std::string_view key);
  // Drops every expired entry (get/put also drop what they meet). Returns how many.
  size_t expire_now();

  size_t size() const { return index_.size(); }
  size_t capacity() const { return capacity_; }
  int64_t expire_ms() const { return expire_ms_; }
  const StickStats& stats() const { return stats_; }
  // Changes the bounds (a reload); shrinking evicts least recently used entries.
  void resize(size_t capacity, int64_t expire_ms);

 private:
  struct Entry {
    std::string key;
    std::string server;
    TimePoint last_used;
  };
  // Drops the expired run at the back, then evicts least recently used entries while over
  // capacity; both counted in stats_.
  void trim(TimePoint now);
  // Drops the expired run at the back and returns how many (the caller counts them).
  size_t expire_back(TimePoint now);
  void drop_back();  // the least recently used entry, uncounted

  // Most recently used at the front. The index's keys view the entries' own strings.
  std::list<Entry> lru_;
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
  size_t capacity_;
  int64_t expire_ms_;
  const Clock& clock_;
  StickStats stats_;
};

}  // namespace tether::routing
