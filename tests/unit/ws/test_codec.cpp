// Tests for proxy/ws/codec.cpp: RFC 6455 framing, reassembly, close frames and handshake keys.
// Most tests build the wire bytes by hand (not with append_frame) and decode them whole, one
// byte at a time and in random pieces, checking that every way gives the same outcome.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cmocka.hpp"
#include "proxy/ws/codec.h"

namespace {

using tether::ws::accept_key;
using tether::ws::append_frame;
using tether::ws::close_payload;
using tether::ws::Decoder;
using tether::ws::DecoderLimits;
using tether::ws::DecoderSink;
using tether::ws::is_valid_client_key;
using tether::ws::is_valid_close_code;
using tether::ws::is_valid_utf8;
using tether::ws::make_client_key;
using tether::ws::Opcode;
using tether::ws::Role;
namespace close_code = tether::ws::close_code;

constexpr uint8_t kFin = 0x80;
constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;
constexpr uint8_t kKey[4] = {0x37, 0xFA, 0x21, 0x3D};  // the masking key of RFC 6455 section 5.7

struct Event {
  std::string kind;  // text, binary, ping, pong, close or error
  uint16_t code = 0;
  std::string data;
  bool operator==(const Event&) const = default;
};

Event text(std::string data) {
  return {"text", 0, std::move(data)};
}
Event binary(std::string data) {
  return {"binary", 0, std::move(data)};
}
Event ping(std::string data) {
  return {"ping", 0, std::move(data)};
}
Event pong(std::string data) {
  return {"pong", 0, std::move(data)};
}
Event closed(uint16_t code, std::string reason) {
  return {"close", code, std::move(reason)};
}
Event error(uint16_t code, std::string reason) {
  return {"error", code, std::move(reason)};
}

class Recorder : public DecoderSink {
 public:
  void on_message(Opcode opcode, std::string& payload) override {
    events.push_back({opcode == Opcode::kText ? "text" : "binary", 0, std::move(payload)});
  }
  void on_ping(std::string_view payload) override { events.push_back(ping(std::string(payload))); }
  void on_pong(std::string_view payload) override { events.push_back(pong(std::string(payload))); }
  void on_close(uint16_t code, std::string_view reason) override {
    events.push_back(closed(code, std::string(reason)));
  }
  void on_error(uint16_t code, std::string_view reason) override {
    events.push_back(error(code, std::string(reason)));
  }

  std::vector<Event> events;
};

// What decoding Fixture::wire produced.
struct Outcome {
  std::vector<Event> events;
  size_t consumed = 0;
  bool stopped = false;
  size_t buffered = 0;
  bool operator==(const Outcome&) const = default;
};

struct Fixture {
  std::string wire;
  std::string scratch;
  Outcome whole;  // fed in one call
  Outcome other;  // fed in pieces
  std::optional<Decoder> dec;
  Recorder rec;
  std::vector<Event> want;
  std::mt19937 rng{20240601};
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

const uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

std::string describe(const Event& e) {
  std::string out = e.kind;
  if (e.code) out += " " + std::to_string(e.code);
  out += " [" + std::to_string(e.data.size()) + "] \"";
  for (size_t i = 0; i < e.data.size() && i < 40; ++i) {
    const auto c = static_cast<uint8_t>(e.data[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + (e.data.size() > 40 ? "...\"" : "\"");
}

void expect_events(const std::vector<Event>& got, const std::vector<Event>& want) {
  const size_t n = std::max(got.size(), want.size());
  bool same = got.size() == want.size();
  for (size_t i = 0; i < n && same; ++i) same = got[i] == want[i];
  if (same) return;
  for (size_t i = 0; i < n; ++i) {
    print_error("  event %zu: got %s, want %s\n", i, i < got.size() ? describe(got[i]).c_str() : "nothing",
                i < want.size() ? describe(want[i]).c_str() : "nothing");
  }
  fail_msg("events differ");
}

// Feeds f.wire to a fresh decoder in pieces of the sizes PIECE returns, feeding on after the
// decoder stops (it must then consume nothing).
template <class Piece>
void decode_in_pieces(Fixture& f, Outcome& out, Role role, DecoderLimits limits, Piece piece) {
  f.dec.emplace(role, limits);
  f.rec.events.clear();
  out = {};
  for (size_t pos = 0; pos < f.wire.size();) {
    const size_t n = std::min(piece(), f.wire.size() - pos);
    const size_t used = f.dec->feed(bytes(f.wire) + pos, n, f.rec);
    assert_true(used <= n);
    if (used < n) assert_true(f.dec->stopped());
    out.consumed += used;
    pos += n;
  }
  out.events = std::move(f.rec.events);
  out.stopped = f.dec->stopped();
  out.buffered = f.dec->buffered();
}

void expect_same(const Outcome& got, const Outcome& want, const char* how) {
  if (got == want) return;
  print_error("fed %s: consumed %zu (whole: %zu), stopped %d (%d), buffered %zu (%zu)\n", how, got.consumed,
              want.consumed, got.stopped, want.stopped, got.buffered, want.buffered);
  expect_events(got.events, want.events);
  fail_msg("outcome differs when fed %s", how);
}

// Decodes f.wire whole into f.whole, then one byte at a time and in random pieces, which must
// all give the same outcome.
void decode(Fixture& f, Role role, DecoderLimits limits = {}) {
  decode_in_pieces(f, f.whole, role, limits, [] { return SIZE_MAX; });
  decode_in_pieces(f, f.other, role, limits, [] { return size_t{1}; });
  expect_same(f.other, f.whole, "one byte at a time");
  for (size_t max_piece : {3, 17, 1000, 70000}) {
    std::uniform_int_distribution<size_t> size(1, max_piece);
    decode_in_pieces(f, f.other, role, limits, [&] { return size(f.rng); });
    expect_same(f.other, f.whole, "in random pieces");
  }
}

// Decodes f.wire and expects these events and every byte consumed, unless the decoder stopped.
void expect_decoded(Fixture& f, Role role, const std::vector<Event>& want, DecoderLimits limits = {}) {
  decode(f, role, limits);
  expect_events(f.whole.events, want);
  if (!f.whole.stopped) assert_int_equal(f.whole.consumed, f.wire.size());
}

// Decodes f.wire and expects one error event after exactly CONSUMED bytes.
void expect_error(Fixture& f, Role role, uint16_t code, const std::string& reason, size_t consumed,
                  DecoderLimits limits = {}) {
  decode(f, role, limits);
  expect_events(f.whole.events, {error(code, reason)});
  assert_true(f.whole.stopped);
  assert_int_equal(f.whole.consumed, consumed);
  assert_int_equal(f.whole.buffered, 0);
}

// A frame header with any first byte. LEN_BITS forces the 7-, 16- or 64-bit length form
// (0: the shortest). Masked headers end with kKey.
std::string raw_header(uint8_t first, uint64_t len, bool masked, int len_bits = 0) {
  if (len_bits == 0) len_bits = len <= 125 ? 7 : len <= 0xFFFF ? 16 : 64;
  std::string out(1, static_cast<char>(first));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  if (len_bits == 7) {
    out += static_cast<char>(mask_bit | len);
  } else if (len_bits == 16) {
    out += static_cast<char>(mask_bit | 126);
    for (int shift = 8; shift >= 0; shift -= 8) out += static_cast<char>(len >> shift);
  } else {
    out += static_cast<char>(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>(len >> shift);
  }
  if (masked) out.append(reinterpret_cast<const char*>(kKey), 4);
  return out;
}

// PAYLOAD masked with kKey, as the start of a frame's payload.
std::string masked(std::string_view payload) {
  std::string out(payload);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(out[i] ^ kKey[i % 4]);
  return out;
}

std::string raw_frame(uint8_t first, std::string_view payload, bool mask, int len_bits = 0) {
  return raw_header(first, payload.size(), mask, len_bits) + (mask ? masked(payload) : std::string(payload));
}

// Client-to-server (masked) and server-to-client (unmasked) frames.
std::string c2s(uint8_t first, std::string_view payload) {
  return raw_frame(first, payload, true);
}
std::string s2c(uint8_t first, std::string_view payload) {
  return raw_frame(first, payload, false);
}

std::string code_bytes(uint16_t code) {
  return {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
}

std::string pattern(size_t len, bool ascii) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>(ascii ? 'a' + i % 26 : (i * 7 + i / 256) & 0xFF);
  return s;
}

void put_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | cp >> 6);
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | cp >> 12);
    s += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | cp >> 18);
    s += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
    s += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ---------------------------------------------------------------------------------------------
// Framing

void decodes_rfc_examples(void** state) {  // RFC 6455 section 5.7
  auto& f = fixture(state);
  f.wire = "\x81\x05Hello";
  expect_decoded(f, Role::kClient, {text("Hello")});
  f.wire = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  expect_decoded(f, Role::kServer, {text("Hello")});
  f.wire = std::string("\x01\x03Hel") + "\x80\x02lo";
  expect_decoded(f, Role::kClient, {text("Hello")});
  f.wire = std::string("\x89\x05Hello") + "\x8a\x05Hello";
  expect_decoded(f, Role::kClient, {ping("Hello"), pong("Hello")});
  f.wire = "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  expect_decoded(f, Role::kServer, {pong("Hello")});
  f.scratch = pattern(256, false);
  f.wire = std::string("\x82\x7E\x01\x00", 4) + f.scratch;
  expect_decoded(f, Role::kClient, {binary(f.scratch)});
  f.scratch = pattern(65536, false);
  f.wire = std::string("\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10) + f.scratch;
  expect_decoded(f, Role::kClient, {binary(f.scratch)});
}

void encodes_rfc_examples(void** state) {
  auto& f = fixture(state);
  f.wire.clear();
  append_frame(f.wire, Role::kServer, Opcode::kText, "Hello");
  assert_true(f.wire == "\x81\x05Hello");
  f.wire.clear();
  append_frame(f.wire, Role::kServer, Opcode::kText, "Hel", false);
  append_frame(f.wire, Role::kServer, Opcode::kContinuation, "lo");
  assert_true(f.wire == std::string("\x01\x03Hel") + "\x80\x02lo");
  f.wire.clear();
  append_frame(f.wire, Role::kServer, Opcode::kPing, "Hello");
  assert_true(f.wire == "\x89\x05Hello");
  f.wire = "prefix";  // appends
  append_frame(f.wire, Role::kServer, Opcode::kPong, "");
  assert_true(f.wire == std::string("prefix\x8a\x00", 8));
}

// Encodes with one role, decodes with the other: every length class and its edges.
void roundtrips_every_length_class(void** state) {
  auto& f = fixture(state);
  const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 1u << 20};
  for (Role sender : {Role::kClient, Role::kServer}) {
    const Role receiver = sender == Role::kClient ? Role::kServer : Role::kClient;
    const size_t mask_len = sender == Role::kClient ? 4 : 0;
    for (Opcode opcode : {Opcode::kText, Opcode::kBinary}) {
      for (size_t size : sizes) {
        f.scratch = pattern(size, opcode == Opcode::kText);
        f.wire.clear();
        append_frame(f.wire, sender, opcode, f.scratch);
        const size_t len_bytes = size <= 125 ? 0 : size <= 65535 ? 2 : 8;
        assert_int_equal(f.wire.size(), 2 + len_bytes + mask_len + size);
        assert_int_equal(static_cast<uint8_t>(f.wire[0]), kFin | static_cast<uint8_t>(opcode));
        const auto b1 = static_cast<uint8_t>(f.wire[1]);
        assert_int_equal(b1 & 0x80, mask_len ? 0x80 : 0);
        assert_int_equal(b1 & 0x7F, size <= 125 ? size : size <= 65535 ? 126 : 127);
        uint64_t announced = b1 & 0x7F;
        if (len_bytes) {
          announced = 0;
          for (size_t i = 0; i < len_bytes; ++i)
            announced = announced << 8 | static_cast<uint8_t>(f.wire[2 + i]);
        }
        assert_int_equal(announced, size);
        if (!mask_len) assert_memory_equal(f.wire.data() + 2 + len_bytes, f.scratch.data(), size);
        expect_decoded(f, receiver, {{opcode == Opcode::kText ? "text" : "binary", 0, f.scratch}});
      }
    }
  }
}

// Minimal length encoding is not required (section 5.2 asks senders for it, not receivers).
void accepts_non_minimal_lengths(void** state) {
  auto& f = fixture(state);
  f.wire = raw_frame(kFin | kText, "hello", true, 16) + raw_frame(kFin | kBinary, "world", true, 64);
  expect_decoded(f, Role::kServer, {text("hello"), binary("world")});
}

void rejects_64_bit_length_with_high_bit(void** state) {
  auto& f = fixture(state);
  f.wire = raw_header(kFin | kBinary, 1ull << 63, true, 64);
  expect_error(f, Role::kServer, close_code::kProtocolError, "payload length with the high bit set", 10);
  f.wire = raw_header(kFin | kBinary, ~0ull, false, 64);
  expect_error(f, Role::kClient, close_code::kProtocolError, "payload length with the high bit set", 10);
}

void masks_with_a_fresh_key_per_frame(void** state) {
  auto& f = fixture(state);
  f.scratch = pattern(64, true);
  f.wire.clear();
  append_frame(f.wire, Role::kClient, Opcode::kText, f.scratch);
  append_frame(f.wire, Role::kClient, Opcode::kText, f.scratch);
  const size_t frame = 2 + 4 + 64;
  assert_int_equal(f.wire.size(), 2 * frame);
  // Two random 4-byte keys collide with probability 2^-32.
  assert_memory_not_equal(f.wire.data() + 2, f.wire.data() + frame + 2, 4);
  assert_memory_not_equal(f.wire.data() + 6, f.scratch.data(), 64);
  expect_decoded(f, Role::kServer, {text(f.scratch), text(f.scratch)});
}

// Many frames of random sizes and kinds in one stream, each way round.
void roundtrips_mixed_streams_both_roles(void** state) {
  auto& f = fixture(state);
  for (Role sender : {Role::kClient, Role::kServer}) {
    f.wire.clear();
    f.want.clear();
    std::uniform_int_distribution<size_t> small(0, 300);
    for (int i = 0; i < 60; ++i) {
      const size_t size = i % 20 == 19 ? 70000 + i : small(f.rng);
      switch (f.rng() % 4) {
        case 0:
          f.want.push_back(text(pattern(size, true)));
          append_frame(f.wire, sender, Opcode::kText, f.want.back().data);
          break;
        case 1:
          f.want.push_back(binary(pattern(size, false)));
          append_frame(f.wire, sender, Opcode::kBinary, f.want.back().data);
          break;
        case 2:
          f.want.push_back(ping(pattern(size % 126, false)));
          append_frame(f.wire, sender, Opcode::kPing, f.want.back().data);
          break;
        default:
          f.want.push_back(pong(pattern(size % 126, false)));
          append_frame(f.wire, sender, Opcode::kPong, f.want.back().data);
          break;
      }
    }
    expect_decoded(f, sender == Role::kClient ? Role::kServer : Role::kClient, f.want);
    assert_false(f.whole.stopped);
    assert_int_equal(f.whole.buffered, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Protocol errors

void rejects_wrong_masking_for_role(void** state) {
  auto& f = fixture(state);
  f.wire = s2c(kFin | kText, "hi");
  expect_error(f, Role::kServer, close_code::kProtocolError, "frame not masked", 2);
  f.wire = c2s(kFin | kText, "hi");
  expect_error(f, Role::kClient, close_code::kProtocolError, "frame masked", 2);
  f.wire = s2c(kFin | kPing, "");
  expect_error(f, Role::kServer, close_code::kProtocolError, "frame not masked", 2);
}

void rejects_reserved_bits(void** state) {
  auto& f = fixture(state);
  for (uint8_t rsv : {0x40, 0x20, 0x10, 0x70}) {
    for (uint8_t opcode : {kText, kBinary, kPing}) {
      f.wire = c2s(static_cast<uint8_t>(kFin | rsv | opcode), "x");
      expect_error(f, Role::kServer, close_code::kProtocolError, "reserved bits set", 1);
    }
  }
  // On a continuation, after a good first fragment.
  f.scratch = c2s(kText, "a");
  f.wire = f.scratch + c2s(kFin | 0x40 | kCont, "b");
  expect_error(f, Role::kServer, close_code::kProtocolError, "reserved bits set", f.scratch.size() + 1);
}

void rejects_unknown_opcodes(void** state) {
  auto& f = fixture(state);
  for (uint8_t opcode : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    for (uint8_t fin : {uint8_t{0}, kFin}) {
      f.wire = c2s(static_cast<uint8_t>(fin | opcode), "x");
      expect_error(f, Role::kServer, close_code::kProtocolError, "unknown opcode " + std::to_string(opcode),
                   1);
    }
  }
}

void rejects_fragmented_or_long_control_frames(void** state) {
  auto& f = fixture(state);
  for (uint8_t opcode : {kClose, kPing, kPong}) {
    f.wire = c2s(opcode, "");  // FIN clear
    expect_error(f, Role::kServer, close_code::kProtocolError, "fragmented control frame", 1);
    f.wire = c2s(kFin | opcode, pattern(126, true));
    expect_error(f, Role::kServer, close_code::kProtocolError, "control frame payload over 125 bytes", 2);
    f.wire = raw_frame(kFin | opcode, "ab", false, 64);  // 2 bytes, but announced with 127
    expect_error(f, Role::kClient, close_code::kProtocolError, "control frame payload over 125 bytes", 2);
  }
  f.scratch = pattern(125, false);
  f.wire = c2s(kFin | kPing, f.scratch) + c2s(kFin | kPong, f.scratch);
  expect_decoded(f, Role::kServer, {ping(f.scratch), pong(f.scratch)});
}

void rejects_continuation_without_message(void** state) {
  auto& f = fixture(state);
  f.wire = c2s(kFin | kCont, "x");
  expect_error(f, Role::kServer, close_code::kProtocolError, "continuation frame without a message", 1);
  f.wire = c2s(kCont, "x");
  expect_error(f, Role::kServer, close_code::kProtocolError, "continuation frame without a message", 1);
  // The first message is delivered; its end closes it.
  f.scratch = c2s(kFin | kText, "done");
  f.wire = f.scratch + c2s(kFin | kCont, "x");
  decode(f, Role::kServer);
  expect_events(f.whole.events, {text("done"), error(1002, "continuation frame without a message")});
  assert_int_equal(f.whole.consumed, f.scratch.size() + 1);
}

void rejects_new_data_frame_inside_fragmented_message(void** state) {
  auto& f = fixture(state);
  for (int first : {0x01, 0x81, 0x02, 0x82}) {  // text and binary, with and without FIN
    f.scratch = c2s(kText, "a") + c2s(kFin | kPing, "p");
    f.wire = f.scratch + c2s(static_cast<uint8_t>(first), "b");
    decode(f, Role::kServer);
    expect_events(f.whole.events, {ping("p"), error(1002, "new data frame inside a fragmented message")});
    assert_int_equal(f.whole.consumed, f.scratch.size() + 1);
  }
}

void stops_after_error(void** state) {
  auto& f = fixture(state);
  f.dec.emplace(Role::kServer);
  f.wire = c2s(kFin | 0x20 | kText, "x") + c2s(kFin | kText, "more");
  assert_int_equal(f.dec->feed(bytes(f.wire), f.wire.size(), f.rec), 1);
  assert_true(f.dec->stopped());
  assert_int_equal(f.dec->feed(bytes(f.wire) + 1, f.wire.size() - 1, f.rec), 0);
  expect_events(f.rec.events, {error(1002, "reserved bits set")});
}

// ---------------------------------------------------------------------------------------------
// Reassembly

void delivers_control_frames_between_fragments_first(void** state) {
  auto& f = fixture(state);
  f.wire = c2s(kText, "He") + c2s(kFin | kPing, "1") + c2s(kCont, "") + c2s(kCont, "l") +
           c2s(kFin | kPong, "2") + c2s(kFin | kPing, "") + c2s(kFin | kCont, "lo") +
           c2s(kFin | kBinary, "next");
  expect_decoded(f, Role::kServer, {ping("1"), pong("2"), ping(""), text("Hello"), binary("next")});
  assert_false(f.whole.stopped);
}

void close_between_fragments_drops_the_message(void** state) {
  auto& f = fixture(state);
  f.scratch = c2s(kBinary, "part") + c2s(kFin | kClose, code_bytes(1001) + "bye");
  f.wire = f.scratch + c2s(kFin | kCont, "rest");
  decode(f, Role::kServer);
  expect_events(f.whole.events, {closed(1001, "bye")});
  assert_true(f.whole.stopped);
  assert_int_equal(f.whole.consumed, f.scratch.size());
  assert_int_equal(f.whole.buffered, 0);
}

// Random text (code points of every length) cut into fragments at random byte positions, with
// control frames between them, each way round.
void reassembles_random_utf8_fragments(void** state) {
  auto& f = fixture(state);
  std::uniform_int_distribution<uint32_t> ascii(0x20, 0x7E), two(0x80, 0x7FF), three(0x800, 0xFFFF),
      four(0x10000, 0x10FFFF);
  for (Role sender : {Role::kClient, Role::kServer}) {
    f.wire.clear();
    f.want.clear();
    for (int i = 0; i < 200; ++i) {
      f.scratch.clear();
      const size_t code_points = f.rng() % 40;
      for (size_t k = 0; k < code_points; ++k) {
        uint32_t cp;
        switch (f.rng() % 4) {
          case 0:
            cp = ascii(f.rng);
            break;
          case 1:
            cp = two(f.rng);
            break;
          case 2:
            do cp = three(f.rng);
            while (cp >= 0xD800 && cp <= 0xDFFF);
            break;
          default:
            cp = four(f.rng);
            break;
        }
        put_utf8(f.scratch, cp);
      }
      const size_t fragments = 1 + f.rng() % 5;
      size_t at = 0;
      for (size_t k = 0; k < fragments; ++k) {
        const bool last = k + 1 == fragments;
        const size_t len = last ? f.scratch.size() - at : f.rng() % (f.scratch.size() - at + 1);
        append_frame(f.wire, sender, k ? Opcode::kContinuation : Opcode::kText,
                     std::string_view(f.scratch).substr(at, len), last);
        at += len;
        if (!last && f.rng() % 2) {
          append_frame(f.wire, sender, Opcode::kPing, std::to_string(k));
          f.want.push_back(ping(std::to_string(k)));
        }
      }
      f.want.push_back(text(f.scratch));
    }
    expect_decoded(f, sender == Role::kClient ? Role::kServer : Role::kClient, f.want);
  }
}

void reassembles_many_fragments(void** state) {
  auto& f = fixture(state);
  f.wire = s2c(kBinary, "");
  f.scratch.clear();
  for (int i = 0; i < 1000; ++i) {
    const std::string piece = pattern(static_cast<size_t>(i % 7), false);
    f.scratch += piece;
    f.wire += s2c(kCont, piece);
    if (i % 100 == 0) f.wire += s2c(kFin | kPong, std::to_string(i));
  }
  f.wire += s2c(kFin | kCont, "");
  f.want.clear();
  for (int i = 0; i < 1000; i += 100) f.want.push_back(pong(std::to_string(i)));
  f.want.push_back(binary(f.scratch));
  expect_decoded(f, Role::kClient, f.want);
}

// ---------------------------------------------------------------------------------------------
// UTF-8 in text messages

// "a", U+00E9, U+20AC, U+1F600, "z": code points of every length, split at every byte position
// into three fragments (some empty).
void validates_utf8_split_across_fragments(void** state) {
  auto& f = fixture(state);
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
  for (size_t i = 0; i <= s.size(); ++i) {
    for (size_t j = i; j <= s.size(); ++j) {
      f.wire = c2s(kText, s.substr(0, i)) + c2s(kFin | kPing, "") + c2s(kCont, s.substr(i, j - i)) +
               c2s(kFin | kCont, s.substr(j));
      expect_decoded(f, Role::kServer, {ping(""), text(s)});
    }
  }
}

void rejects_invalid_utf8_split_across_fragments(void** state) {
  auto& f = fixture(state);
  // U+D800 (a surrogate) fails at its second byte, wherever the fragments break it.
  const std::string s = "ab\xED\xA0\x80z";
  for (size_t i = 0; i <= s.size(); ++i) {
    f.scratch = c2s(kText, s.substr(0, i));
    f.wire = f.scratch + c2s(kFin | kCont, s.substr(i));
    const size_t at = i <= 3 ? f.scratch.size() + 6 + (3 - i) + 1 : 6 + 3 + 1;
    expect_error(f, Role::kServer, close_code::kInvalidPayload, "invalid UTF-8 in text message", at);
  }
}

// The error comes with the first bad byte, though the frame announced far more.
void fails_fast_on_invalid_utf8(void** state) {
  auto& f = fixture(state);
  const std::string hdr = raw_header(kFin | kText, 100000, true);
  f.wire = hdr + masked("ab\xC0");
  expect_error(f, Role::kServer, close_code::kInvalidPayload, "invalid UTF-8 in text message",
               hdr.size() + 3);
  // In a later fragment, mid-frame.
  f.scratch = s2c(kText, "valid \xE2\x82\xAC");
  f.wire = f.scratch + raw_header(kFin | kCont, 500, false) + "xy\xF5";
  expect_error(f, Role::kClient, close_code::kInvalidPayload, "invalid UTF-8 in text message",
               f.scratch.size() + 4 + 3);
  // A truncated code point is fine at the end of a fragment, not at the end of the message.
  f.wire = s2c(kText, "a\xE2\x82") + s2c(kFin | kCont, "\xAC");
  expect_decoded(f, Role::kClient, {text("a\xE2\x82\xAC")});
  f.wire = s2c(kFin | kText, "a\xE2\x82");
  expect_error(f, Role::kClient, close_code::kInvalidPayload,
               "invalid UTF-8 in text message (truncated code point)", f.wire.size());
  f.wire = s2c(kText, "a\xE2\x82") + s2c(kFin | kCont, "");
  expect_error(f, Role::kClient, close_code::kInvalidPayload,
               "invalid UTF-8 in text message (truncated code point)", f.wire.size());
}

void does_not_validate_binary_messages(void** state) {
  auto& f = fixture(state);
  f.wire = c2s(kBinary, "\xFF\xC0") + c2s(kFin | kCont, "\xED\xA0\x80");
  expect_decoded(f, Role::kServer, {binary("\xFF\xC0\xED\xA0\x80")});
}

void validates_each_message_afresh(void** state) {
  auto& f = fixture(state);
  // The validator starts afresh with each text message: a lone continuation byte is an error even
  // right after a binary message that ended with a lead byte.
  f.wire = c2s(kFin | kText, "\xC3\xA9") + c2s(kBinary, "\xC3") + c2s(kFin | kCont, "") +
           c2s(kFin | kText, "\xA9");
  decode(f, Role::kServer);
  expect_events(f.whole.events,
                {text("\xC3\xA9"), binary("\xC3"), error(1007, "invalid UTF-8 in text message")});
}

// ---------------------------------------------------------------------------------------------
// Close frames (section 5.5.1, 7.4)

void decodes_close_frames(void** state) {
  auto& f = fixture(state);
  f.wire = c2s(kFin | kClose, "");
  expect_decoded(f, Role::kServer, {closed(close_code::kNoStatus, "")});
  assert_true(f.whole.stopped);
  for (uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}) {
    f.wire = c2s(kFin | kClose, code_bytes(code) + "bye \xE2\x82\xAC");
    expect_decoded(f, Role::kServer, {closed(code, "bye \xE2\x82\xAC")});
    f.wire = s2c(kFin | kClose, code_bytes(code));
    expect_decoded(f, Role::kClient, {closed(code, "")});
  }
}

void rejects_bad_close_frames(void** state) {
  auto& f = fixture(state);
  f.wire = c2s(kFin | kClose, "\x03");
  expect_error(f, Role::kServer, close_code::kProtocolError, "close frame with a 1-byte payload",
               f.wire.size());
  for (uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535}) {
    f.wire = c2s(kFin | kClose, code_bytes(code) + "x");
    expect_error(f, Role::kServer, close_code::kProtocolError, "invalid close code " + std::to_string(code),
                 f.wire.size());
  }
  for (std::string_view reason : {"\xFF", "ok\xC0\x80", "\xE2\x82", "\xED\xA0\x80"}) {
    f.wire = c2s(kFin | kClose, code_bytes(1000) + std::string(reason));
    expect_error(f, Role::kServer, close_code::kInvalidPayload, "invalid UTF-8 in close reason",
                 f.wire.size());
  }
}

void close_code_validity(void**) {
  for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
    assert_true(is_valid_close_code(code));
  }
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000})
    assert_false(is_valid_close_code(code));
  unsigned valid = 0;
  for (unsigned code = 0; code <= 0xFFFF; ++code) valid += is_valid_close_code(static_cast<uint16_t>(code));
  assert_int_equal(valid, 4 + 8 + 2000);
}

void consumes_nothing_after_close(void** state) {
  auto& f = fixture(state);
  f.scratch = c2s(kFin | kText, "last") + c2s(kFin | kClose, code_bytes(1000));
  f.wire = f.scratch + c2s(kFin | kText, "ignored");
  decode(f, Role::kServer);
  expect_events(f.whole.events, {text("last"), closed(1000, "")});
  assert_int_equal(f.whole.consumed, f.scratch.size());
  assert_true(f.dec->stopped());
  assert_int_equal(f.dec->feed(bytes(f.wire), f.wire.size(), f.rec), 0);
}

void close_payload_fits_a_control_frame(void** state) {
  auto& f = fixture(state);
  assert_true(close_payload(1000, "bye") == std::string("\x03\xE8") + "bye");
  assert_true(close_payload(4999, "") == "\x13\x87");
  assert_true(close_payload(close_code::kNoStatus, "ignored").empty());
  // 123 bytes fit; the euro sign (3 bytes) from byte 122 does not, and is dropped whole.
  f.scratch = std::string(123, 'a');
  assert_true(close_payload(1000, f.scratch).substr(2) == f.scratch);
  assert_true(close_payload(1000, f.scratch + "b").substr(2) == f.scratch);
  f.scratch = std::string(122, 'a') + "\xE2\x82\xAC";
  assert_true(close_payload(1000, f.scratch).substr(2) == std::string(122, 'a'));
  // A 4-byte code point at every offset around the limit.
  for (size_t pad = 0; pad < 8; ++pad) {
    f.scratch = std::string(pad, 'a');
    for (int i = 0; i < 40; ++i) f.scratch += "\xF0\x9F\x98\x80";
    const std::string reason = close_payload(1011, f.scratch).substr(2);
    assert_true(is_valid_utf8(reason));
    assert_in_range(reason.size(), 120, 123);
    assert_true(f.scratch.compare(0, reason.size(), reason) == 0);
  }
  // It goes on the wire as is.
  f.wire.clear();
  append_frame(f.wire, Role::kClient, Opcode::kClose, close_payload(1011, f.scratch));
  expect_decoded(f, Role::kServer, {closed(1011, close_payload(1011, f.scratch).substr(2))});
}

// ---------------------------------------------------------------------------------------------
// Limits and buffering

void rejects_messages_over_the_limit_from_the_header(void** state) {
  auto& f = fixture(state);
  const DecoderLimits limits{.max_message = 10};
  f.wire = c2s(kFin | kBinary, pattern(10, false)) + c2s(kFin | kText, pattern(10, true));
  expect_decoded(f, Role::kServer, {binary(pattern(10, false)), text(pattern(10, true))}, limits);
  // The header alone is enough: no payload follows it here.
  f.wire = raw_header(kFin | kBinary, 11, true);
  expect_error(f, Role::kServer, close_code::kTooBig, "message too big", 2, limits);
  // Over the accumulated size: 6 + 4 fit, 6 + 5 do not.
  f.wire = c2s(kBinary, pattern(6, false)) + c2s(kFin | kCont, pattern(4, false));
  expect_decoded(f, Role::kServer, {binary(pattern(6, false) + pattern(4, false))}, limits);
  f.scratch = c2s(kText, pattern(6, true)) + c2s(kFin | kPing, pattern(100, true));
  f.wire = f.scratch + raw_header(kCont, 5, true);
  decode(f, Role::kServer, limits);
  expect_events(f.whole.events, {ping(pattern(100, true)), error(1009, "message too big")});
  assert_int_equal(f.whole.consumed, f.scratch.size() + 2);
  // 64-bit lengths under the default limit, and a 1 MiB limit.
  f.wire = raw_header(kFin | kBinary, 1ull << 62, true, 64);
  expect_error(f, Role::kServer, close_code::kTooBig, "message too big", 10);
  f.scratch = pattern(1u << 20, false);
  f.wire.clear();
  append_frame(f.wire, Role::kServer, Opcode::kBinary, f.scratch, false);
  append_frame(f.wire, Role::kServer, Opcode::kContinuation, "", true);
  expect_decoded(f, Role::kClient, {binary(f.scratch)}, DecoderLimits{.max_message = 1u << 20});
  f.wire.clear();
  append_frame(f.wire, Role::kServer, Opcode::kBinary, f.scratch, false);
  append_frame(f.wire, Role::kServer, Opcode::kContinuation, "x", true);
  expect_error(f, Role::kClient, close_code::kTooBig, "message too big", f.wire.size() - 1,
               DecoderLimits{.max_message = 1u << 20});
}

void counts_buffered_bytes(void** state) {
  auto& f = fixture(state);
  f.dec.emplace(Role::kServer);
  auto feed = [&](const std::string& s) { return f.dec->feed(bytes(s), s.size(), f.rec); };
  assert_int_equal(f.dec->buffered(), 0);
  f.wire = c2s(kText, "0123456789");  // 2 + 4 + 10 bytes
  assert_int_equal(feed(f.wire.substr(0, 1)), 1);
  assert_int_equal(f.dec->buffered(), 1);  // a partial header
  assert_int_equal(feed(f.wire.substr(1, 4)), 4);
  assert_int_equal(f.dec->buffered(), 5);
  assert_int_equal(feed(f.wire.substr(5, 1)), 1);
  assert_int_equal(f.dec->buffered(), 0);  // the header is parsed, no payload yet
  assert_int_equal(feed(f.wire.substr(6, 4)), 4);
  assert_int_equal(f.dec->buffered(), 4);
  assert_int_equal(feed(f.wire.substr(10)), 6);
  assert_int_equal(f.dec->buffered(), 10);  // the first fragment, waiting for the rest
  f.wire = c2s(kFin | kPing, "abc");
  assert_int_equal(feed(f.wire.substr(0, 3)), 3);
  assert_int_equal(f.dec->buffered(), 13);
  assert_int_equal(feed(f.wire.substr(3, 5)), 5);
  assert_int_equal(f.dec->buffered(), 12);  // 10 + "ab"
  assert_int_equal(feed(f.wire.substr(8)), 1);
  assert_int_equal(f.dec->buffered(), 10);  // the ping is delivered
  f.wire = c2s(kFin | kCont, "!");
  assert_int_equal(feed(f.wire), f.wire.size());
  assert_int_equal(f.dec->buffered(), 0);  // so is the message
  expect_events(f.rec.events, {ping("abc"), text("0123456789!")});
}

// ---------------------------------------------------------------------------------------------
// Handshake keys (section 4.2.2, 4.1)

// The example of RFC 6455 section 1.3 (the task brief's "...9kxG..." is a typo: SHA-1 gives "9kYG").
void computes_accept_key(void**) {
  assert_string_equal(accept_key("dGhlIHNhbXBsZSBub25jZQ==").c_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

void makes_valid_client_keys(void** state) {
  auto& f = fixture(state);
  f.scratch = make_client_key();
  f.wire = make_client_key();
  assert_int_equal(f.scratch.size(), 24);
  assert_true(is_valid_client_key(f.scratch));
  assert_true(is_valid_client_key(f.wire));
  assert_true(f.scratch != f.wire);
  assert_int_equal(accept_key(f.scratch).size(), 28);
}

void validates_client_keys(void**) {
  assert_true(is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  assert_true(is_valid_client_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  assert_true(is_valid_client_key("+/+/+/+/+/+/+/+/+/+/+w=="));
  for (std::string_view key : {
           "",
           "dGhlIHNhbXBsZSBub25jZQ=",    // 23 characters
           "dGhlIHNhbXBsZSBub25jZQ",     // no padding
           "dGhlIHNhbXBsZSBub25jZQ===",  // 25 characters
           "dGhlIHNhbXBsZSBub25jZQA",    // 17 bytes would be 24 characters with one '='
           "dGhlIHNhbXBsZSBub25jZQA=",   // 17 bytes
           "dGhlIHNhbXBsZSBub25j",       // 15 bytes
           "dGhlIHNhbXBsZSBub25jZ!==",   // not base64
           "dGhlIHNhbXBsZSBub2 jZQ==",   // a space
           "dGhlIHNhbXBsZSBub25j=Q==",   // padding in the middle
           " dGhlIHNhbXBsZSBub25jZQ==",  // surrounding space is the parser's business
       }) {
    assert_false(is_valid_client_key(key));
  }
}

}  // namespace

int main() {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const CMUnitTest tests[] = {
      TEST(decodes_rfc_examples),
      TEST(encodes_rfc_examples),
      TEST(roundtrips_every_length_class),
      TEST(accepts_non_minimal_lengths),
      TEST(rejects_64_bit_length_with_high_bit),
      TEST(masks_with_a_fresh_key_per_frame),
      TEST(roundtrips_mixed_streams_both_roles),
      TEST(rejects_wrong_masking_for_role),
      TEST(rejects_reserved_bits),
      TEST(rejects_unknown_opcodes),
      TEST(rejects_fragmented_or_long_control_frames),
      TEST(rejects_continuation_without_message),
      TEST(rejects_new_data_frame_inside_fragmented_message),
      TEST(stops_after_error),
      TEST(delivers_control_frames_between_fragments_first),
      TEST(close_between_fragments_drops_the_message),
      TEST(reassembles_many_fragments),
      TEST(reassembles_random_utf8_fragments),
      TEST(validates_utf8_split_across_fragments),
      TEST(rejects_invalid_utf8_split_across_fragments),
      TEST(fails_fast_on_invalid_utf8),
      TEST(does_not_validate_binary_messages),
      TEST(validates_each_message_afresh),
      TEST(decodes_close_frames),
      TEST(rejects_bad_close_frames),
      TEST(close_code_validity),
      TEST(consumes_nothing_after_close),
      TEST(close_payload_fits_a_control_frame),
      TEST(rejects_messages_over_the_limit_from_the_header),
      TEST(counts_buffered_bytes),
      TEST(computes_accept_key),
      TEST(makes_valid_client_keys),
      TEST(validates_client_keys),
  };
#undef TEST
  return cmocka_run_group_tests_name("ws/codec.cpp", tests, nullptr, nullptr);
}
