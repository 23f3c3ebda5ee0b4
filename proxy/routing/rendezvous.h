#pragma once
// Weighted rendezvous (highest random weight) hashing: every node that knows the same servers
// and weights picks the same server for a key, with no shared state; removing a server moves
// only the keys it had; a server's share of keys is proportional to its weight. No I/O.
//
// Score of server S for key K: -W(S) / ln(U(S, K)), U uniform in (0, 1) from a 64-bit hash of
// (S's id, K) (Schindelhauer & Schomaker's weighted form). The hash is fixed here and must not
// change between versions: nodes of different versions must agree.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tether::routing {

struct HashCandidate {
  std::string_view id;  // stable server identity, e.g. "10.0.0.5:9001"
  double weight = 1.0;  // > 0
  bool usable = true;   // false: skipped
};

// Index of the winning usable candidate, or SIZE_MAX when none is usable.
size_t rendezvous_pick(std::string_view key, std::span<const HashCandidate> candidates);
// The 64-bit hash used for U (exposed for tests).
uint64_t rendezvous_hash(std::string_view id, std::string_view key);

}  // namespace tether::routing
