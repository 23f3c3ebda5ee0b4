// The sticky table: an LRU list (most recently used at the front) plus a hash index whose keys
// are string_views of the list entries' own keys. std::list nodes never move, so a view stays
// valid for as long as its entry lives; every removal erases the index slot before the node,
// and replacing a value changes only `server`, never `key`.
//
// Every touch (get hit, put) sets last_used to now and moves the entry to the front. The clock
// is monotonic, so the list is also in last_used order, newest first: expired entries are
// always a run at the back, which is what expire_now and put walk.

#include "proxy/routing/stick_table.h"

#include "proxy/util/assert.h"

namespace tether::routing {

StickTable::StickTable(size_t capacity, int64_t expire_ms, const Clock& clock)
    : capacity_(capacity), expire_ms_(expire_ms), clock_(clock) {
  TETHER_ASSERT(capacity >= 1);
  TETHER_ASSERT(expire_ms > 0);
}

std::optional<std::string> StickTable::get(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  const TimePoint now = clock_.now();
  auto entry = it->second;
  if (now - entry->last_used >= expire_ms_) {
    index_.erase(it);
    lru_.erase(entry);
    ++stats_.expired;
    ++stats_.misses;
    return std::nullopt;
  }
  entry->last_used = now;
  lru_.splice(lru_.begin(), lru_, entry);
  ++stats_.hits;
  return entry->server;
}

void StickTable::put(std::string_view key, std::string_view server) {
  const TimePoint now = clock_.now();
  if (auto it = index_.find(key); it != index_.end()) {
    auto entry = it->second;
    if (now - entry->last_used < expire_ms_) {
      // Only the value changes: the index's view of entry->key stays valid.
      entry->server.assign(server);
      entry->last_used = now;
      lru_.splice(lru_.begin(), lru_, entry);
      return;
    }
    // Expired: dropped (and counted) like any expired entry, then KEY goes in afresh.
    index_.erase(it);
    lru_.erase(entry);
    ++stats_.expired;
  }
  lru_.push_front(Entry{.key = std::string(key), .server = std::string(server), .last_used = now});
  index_.emplace(lru_.front().key, lru_.begin());
  trim(now);
}

void StickTable::erase(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  auto entry = it->second;
  index_.erase(it);
  lru_.erase(entry);
}

size_t StickTable::expire_now() {
  const size_t dropped = expire_back(clock_.now());
  stats_.expired += dropped;
  return dropped;
}

void StickTable::resize(size_t capacity, int64_t expire_ms) {
  TETHER_ASSERT(capacity >= 1);
  TETHER_ASSERT(expire_ms > 0);
  capacity_ = capacity;
  expire_ms_ = expire_ms;
  trim(clock_.now());
}

void StickTable::trim(TimePoint now) {
  // Expired entries at the back go first (counted as expired: they would go anyway), so a full
  // table evicts a live entry only when no expired one is left to make room.
  stats_.expired += expire_back(now);
  while (lru_.size() > capacity_) {
    drop_back();
    ++stats_.evictions;
  }
}

size_t StickTable::expire_back(TimePoint now) {
  size_t dropped = 0;
  while (!lru_.empty() && now - lru_.back().last_used >= expire_ms_) {
    drop_back();
    ++dropped;
  }
  return dropped;
}

void StickTable::drop_back() {
  TETHER_ASSERT(!lru_.empty());
  // The index slot goes first: its key views the entry's string.
  index_.erase(std::string_view(lru_.back().key));
  lru_.pop_back();
}

}  // namespace tether::routing
