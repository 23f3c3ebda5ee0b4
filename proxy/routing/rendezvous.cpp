// Weighted rendezvous hashing. The hash is part of the wire contract between Tether nodes (they
// must agree on a key's server), so it is spelled out here, uses no std::hash and no
// platform-dependent types, and tests pin some of its values:
//
//   h = FNV-1a 64 over the bytes of ID, one 0xFF byte, then the bytes of KEY
//   h = splitmix64 finalizer (h)
//   U = ((h >> 12) + 0.5) * 2^-52
//
// 0xFF never occurs in UTF-8, so for text ids the separator keeps ("ab", "c") and ("a", "bc")
// apart. FNV-1a alone mixes its last bytes poorly into the high bits; the finalizer fixes that.
// U takes the top 52 bits: (h >> 12) + 0.5 then needs at most 53 significant bits, so U is exact
// and strictly inside (0, 1) (with 53 bits, 2^53 - 0.5 would round up to U = 1 and ln U = 0).

#include "proxy/routing/rendezvous.h"

#include <cmath>

#include "proxy/util/assert.h"

namespace tether::routing {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

constexpr uint64_t fnv1a(uint64_t h, std::string_view bytes) {
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// -W / ln U: ln U < 0, so the score is positive and grows with W. Equal-weight servers compare
// as their U would; a server of weight 2W wins like the better of two draws of weight W.
double score(std::string_view id, std::string_view key, double weight) {
  const uint64_t h = rendezvous_hash(id, key);
  const double u = (static_cast<double>(h >> 12) + 0.5) * 0x1p-52;
  return -weight / std::log(u);
}

}  // namespace

uint64_t rendezvous_hash(std::string_view id, std::string_view key) {
  uint64_t h = fnv1a(kFnvOffset, id);
  h = fnv1a(h, std::string_view("\xff", 1));
  h = fnv1a(h, key);
  return splitmix64_mix(h);
}

size_t rendezvous_pick(std::string_view key, std::span<const HashCandidate> candidates) {
  size_t best = SIZE_MAX;
  double best_score = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const HashCandidate& c = candidates[i];
    if (!c.usable) continue;
    TETHER_ASSERT(c.weight > 0);
    const double s = score(c.id, key, c.weight);
    // Strictly greater: on an exact tie the lower index keeps it.
    if (best == SIZE_MAX || s > best_score) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

}  // namespace tether::routing
