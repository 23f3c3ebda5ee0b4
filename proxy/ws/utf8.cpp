// Incremental UTF-8 validation (RFC 3629 section 4) as a table-driven DFA in the style of
// Bjoern Hoehrmann's decoder: each byte maps to a class, each (state, class) to the next state.
// The second byte of a sequence is checked against a range that depends on the lead byte, so
// overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points past U+10FFFF
// (F4 90..BF) are rejected at the byte that makes them so, not at the end of the sequence.

#include <cstring>

#include "proxy/ws/codec.h"

namespace tether::ws {
namespace {

// Byte classes.
enum : uint8_t {
  kAscii,   // 00..7F
  kCont8,   // 80..8F continuation
  kCont9,   // 90..9F continuation
  kContA,   // A0..BF continuation
  kBad,     // C0, C1 (overlong 2-byte leads), F5..FF (past U+10FFFF or not UTF-8 at all)
  kLead2,   // C2..DF
  kLeadE0,  // E0: second byte A0..BF
  kLead3,   // E1..EC, EE..EF
  kLeadED,  // ED: second byte 80..9F (A0..BF would be a surrogate)
  kLeadF0,  // F0: second byte 90..BF
  kLead4,   // F1..F3
  kLeadF4,  // F4: second byte 80..8F
  kClasses,
};

// States. kAccept must be 0: Utf8Validator::complete() compares the state with 0.
enum : uint8_t {
  kAccept,  // on a code point boundary
  kReject,  // sticky
  kNeed1,   // one more continuation byte, any of 80..BF
  kNeed2,
  kNeed3,
  kAfterE0,
  kAfterED,
  kAfterF0,
  kAfterF4,
  kStates,
};

constexpr uint8_t byte_class(unsigned b) {
  if (b < 0x80) return kAscii;
  if (b < 0x90) return kCont8;
  if (b < 0xA0) return kCont9;
  if (b < 0xC0) return kContA;
  if (b < 0xC2) return kBad;
  if (b < 0xE0) return kLead2;
  if (b == 0xE0) return kLeadE0;
  if (b == 0xED) return kLeadED;
  if (b < 0xF0) return kLead3;
  if (b == 0xF0) return kLeadF0;
  if (b < 0xF4) return kLead4;
  if (b == 0xF4) return kLeadF4;
  return kBad;
}

struct Tables {
  uint8_t cls[256];
  uint8_t next[kStates][kClasses];
};

constexpr Tables make_tables() {
  Tables t{};
  for (unsigned b = 0; b < 256; ++b) t.cls[b] = byte_class(b);
  for (auto& row : t.next)
    for (auto& s : row) s = kReject;
  auto& a = t.next[kAccept];
  a[kAscii] = kAccept;
  a[kLead2] = kNeed1;
  a[kLeadE0] = kAfterE0;
  a[kLead3] = kNeed2;
  a[kLeadED] = kAfterED;
  a[kLeadF0] = kAfterF0;
  a[kLead4] = kNeed3;
  a[kLeadF4] = kAfterF4;
  for (uint8_t c : {kCont8, kCont9, kContA}) {
    t.next[kNeed1][c] = kAccept;
    t.next[kNeed2][c] = kNeed1;
    t.next[kNeed3][c] = kNeed2;
  }
  t.next[kAfterE0][kContA] = kNeed1;
  t.next[kAfterED][kCont8] = kNeed1;
  t.next[kAfterED][kCont9] = kNeed1;
  t.next[kAfterF0][kCont9] = kNeed2;
  t.next[kAfterF0][kContA] = kNeed2;
  t.next[kAfterF4][kCont8] = kNeed2;
  return t;
}

constexpr Tables kTables = make_tables();

static_assert(kTables.next[kAccept][kTables.cls[0xC0]] == kReject);
static_assert(kTables.next[kAfterED][kTables.cls[0xA0]] == kReject);
static_assert(kTables.next[kAfterF4][kTables.cls[0x90]] == kReject);

constexpr uint64_t kHighBits = 0x8080808080808080ull;

}  // namespace

bool Utf8Validator::feed(const uint8_t* data, size_t len) {
  uint32_t state = state_;
  size_t i = 0;
  while (i < len) {
    if (state == kAccept) {
      // Text is mostly ASCII: skip it eight bytes at a time while on a code point boundary.
      while (len - i >= 8) {
        uint64_t w;
        std::memcpy(&w, data + i, 8);
        if (w & kHighBits) break;
        i += 8;
      }
      if (i == len) break;
    }
    state = kTables.next[state][kTables.cls[data[i++]]];
    if (state == kReject) break;
  }
  state_ = state;
  return state != kReject;
}

bool is_valid_utf8(std::string_view s) {
  Utf8Validator v;
  return v.feed(s) && v.complete();
}

}  // namespace tether::ws
