#pragma once
// The WebSocket decoder under fuzzing, in one role (fuzz_ws_server.cpp, fuzz_ws_client.cpp).
//
// Input: byte 0 picks the message size limit, byte 1 how the stream is cut into feed() calls
// (and how the round trip fragments messages); the rest is the byte stream from the peer.
// Checked:
//  - the events and the count of bytes consumed do not depend on how the input is split
//    (codec.cpp promises it: "every check runs at the first byte that can decide it");
//  - what the decoder reports is what RFC 6455 allows: text is UTF-8, messages fit the limit,
//    control payloads fit 125 bytes, close codes are valid, nothing comes after a close or an
//    error, the error codes are 1002/1007/1009, and a stopped decoder consumes nothing;
//  - round trip: the messages, pings, pongs and close decoded, encoded again with append_frame
//    in the peer's role (fragmented, with pings between fragments), decode to the same events;
//    so do the raw input bytes sent as one binary (and, if UTF-8, text) message, and a close
//    whose reason is cut by close_payload.

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "proxy/ws/codec.h"

namespace tether::fuzz {

struct WsEvent {
  enum Kind { kText, kBinary, kPing, kPong, kClose, kError } kind;
  uint16_t code = 0;
  std::string data;
  bool operator==(const WsEvent&) const = default;
};

class WsRecorder : public ws::DecoderSink {
 public:
  std::vector<WsEvent> events;
  bool ended = false;  // a close or an error was reported

  void on_message(ws::Opcode opcode, std::string& payload) override {
    add({opcode == ws::Opcode::kText ? WsEvent::kText : WsEvent::kBinary, 0, payload});
  }
  void on_ping(std::string_view payload) override { add({WsEvent::kPing, 0, std::string(payload)}); }
  void on_pong(std::string_view payload) override { add({WsEvent::kPong, 0, std::string(payload)}); }
  void on_close(uint16_t code, std::string_view reason) override {
    add({WsEvent::kClose, code, std::string(reason)});
    ended = true;
  }
  void on_error(uint16_t code, std::string_view reason) override {
    add({WsEvent::kError, code, std::string(reason)});
    ended = true;
  }

 private:
  void add(WsEvent e) {
    FUZZ_CHECK(!ended);  // nothing after a close or an error
    events.push_back(std::move(e));
  }
};

inline void check_events(const std::vector<WsEvent>& events, const ws::DecoderLimits& limits) {
  for (const WsEvent& e : events) {
    switch (e.kind) {
      case WsEvent::kText:
        FUZZ_CHECK(ws::is_valid_utf8(e.data));
        [[fallthrough]];
      case WsEvent::kBinary:
        FUZZ_CHECK(e.data.size() <= limits.max_message);
        break;
      case WsEvent::kPing:
      case WsEvent::kPong:
        FUZZ_CHECK(e.data.size() <= 125);
        break;
      case WsEvent::kClose:
        FUZZ_CHECK(e.code == ws::close_code::kNoStatus ? e.data.empty() : ws::is_valid_close_code(e.code));
        FUZZ_CHECK(e.data.size() <= 123 && ws::is_valid_utf8(e.data));
        break;
      case WsEvent::kError:
        FUZZ_CHECK(e.code == ws::close_code::kProtocolError || e.code == ws::close_code::kInvalidPayload ||
                   e.code == ws::close_code::kTooBig);
        break;
    }
  }
}

// Decodes STREAM in pieces cut by SPLIT; returns the bytes consumed.
inline size_t decode_split(ws::Role role, const ws::DecoderLimits& limits, std::string_view stream,
                           Splitter split, size_t max_chunk, WsRecorder& rec) {
  ws::Decoder dec(role, limits);
  size_t pos = 0, consumed = 0;
  while (pos < stream.size()) {
    size_t n = std::min(split.chunk(max_chunk), stream.size() - pos);
    size_t got = dec.feed(reinterpret_cast<const uint8_t*>(stream.data() + pos), n, rec);
    FUZZ_CHECK(got <= n);
    if (got < n) FUZZ_CHECK(dec.stopped());
    FUZZ_CHECK(dec.stopped() == rec.ended);
    // A frame in progress holds at most the message so far, one control payload and a header.
    FUZZ_CHECK(dec.buffered() <= limits.max_message + 125 + 14);
    consumed += got;
    pos += n;
    if (dec.stopped()) {
      // A stopped decoder consumes nothing more.
      if (pos < stream.size()) {
        FUZZ_CHECK(
            dec.feed(reinterpret_cast<const uint8_t*>(stream.data() + pos), stream.size() - pos, rec) == 0);
      }
      break;
    }
  }
  return consumed;
}

// Encodes EVENTS (no error among them) as frames a peer in PEER's role would send.
inline std::string encode(ws::Role peer, const std::vector<WsEvent>& events, Splitter& split) {
  std::string out;
  for (const WsEvent& e : events) {
    switch (e.kind) {
      case WsEvent::kText:
      case WsEvent::kBinary: {
        ws::Opcode op = e.kind == WsEvent::kText ? ws::Opcode::kText : ws::Opcode::kBinary;
        std::string_view rest = e.data;
        // Fragments of any size, even empty ones, with a ping now and then between them; text
        // may be cut inside a code point (the decoder validates across fragments).
        while (split.next() % 3 == 0 && !rest.empty()) {
          size_t n = std::min(split.chunk(rest.size()), rest.size());
          ws::append_frame(out, peer, op, rest.substr(0, n), false);
          rest.remove_prefix(n);
          op = ws::Opcode::kContinuation;
          if (split.next() % 4 == 0) ws::append_frame(out, peer, ws::Opcode::kPing, "between");
        }
        ws::append_frame(out, peer, op, rest, true);
        break;
      }
      case WsEvent::kPing:
        ws::append_frame(out, peer, ws::Opcode::kPing, e.data);
        break;
      case WsEvent::kPong:
        ws::append_frame(out, peer, ws::Opcode::kPong, e.data);
        break;
      case WsEvent::kClose:
        ws::append_frame(out, peer, ws::Opcode::kClose, ws::close_payload(e.code, e.data));
        break;
      case WsEvent::kError:
        FUZZ_CHECK(false);
    }
  }
  return out;
}

inline std::vector<WsEvent> decode_all(ws::Role role, const ws::DecoderLimits& limits,
                                       std::string_view stream) {
  ws::Decoder dec(role, limits);
  WsRecorder rec;
  size_t got = dec.feed(reinterpret_cast<const uint8_t*>(stream.data()), stream.size(), rec);
  FUZZ_CHECK(got == stream.size() || dec.stopped());
  return rec.events;
}

// The pings encode() puts between fragments come back too: drop them (and any genuine ping with
// the same payload) on both sides before comparing.
inline void drop_marker_pings(std::vector<WsEvent>& events) {
  std::erase_if(events, [](const WsEvent& e) { return e.kind == WsEvent::kPing && e.data == "between"; });
}

inline int fuzz_ws(ws::Role role, const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static constexpr size_t kLimits[] = {0, 1, 2, 125, 126, 127, 1000, 65535, 65536, 16u << 20};
  ws::DecoderLimits limits{.max_message = kLimits[data[0] % std::size(kLimits)]};
  const uint8_t split_seed = data[1];
  std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);
  const ws::Role peer = role == ws::Role::kServer ? ws::Role::kClient : ws::Role::kServer;

  // Whole, then in pieces: the same events, the same byte count.
  ws::Decoder whole(role, limits);
  WsRecorder a;
  size_t consumed = whole.feed(reinterpret_cast<const uint8_t*>(stream.data()), stream.size(), a);
  FUZZ_CHECK(consumed <= stream.size());
  FUZZ_CHECK(consumed == stream.size() || whole.stopped());
  FUZZ_CHECK(whole.stopped() == a.ended);
  check_events(a.events, limits);

  WsRecorder b;
  size_t max_chunk = split_seed == 0 ? 1 : 1 + split_seed % 64;
  size_t consumed_split = decode_split(role, limits, stream, Splitter(split_seed), max_chunk, b);
  FUZZ_CHECK(consumed_split == consumed);
  FUZZ_CHECK(b.events == a.events);

  // Round trip of what was decoded (an error is the decoder's verdict, not a frame).
  std::vector<WsEvent> valid = a.events;
  if (!valid.empty() && valid.back().kind == WsEvent::kError) valid.pop_back();
  Splitter split(split_seed);
  std::vector<WsEvent> again = decode_all(role, limits, encode(peer, valid, split));
  drop_marker_pings(again);
  drop_marker_pings(valid);
  FUZZ_CHECK(again == valid);

  // Round trip of the raw bytes as messages, and as the reason of a close.
  ws::DecoderLimits big{};
  std::vector<WsEvent> raw{{WsEvent::kBinary, 0, std::string(stream)}};
  if (ws::is_valid_utf8(stream)) raw.push_back({WsEvent::kText, 0, std::string(stream)});
  if (split_seed & 1) {
    // Past 65535 bytes: the 64-bit length form.
    std::string large;
    while (large.size() <= 65536) large += stream.empty() ? std::string_view("x") : stream;
    raw.push_back({WsEvent::kBinary, 0, std::move(large)});
  }
  std::string_view reason = stream.substr(0, 200);
  if (ws::is_valid_utf8(reason)) {
    static constexpr uint16_t kCodes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1014, 3000, 4999};
    uint16_t code = kCodes[split_seed % std::size(kCodes)];
    std::string cut = ws::close_payload(code, reason).substr(2);
    FUZZ_CHECK(cut.size() <= 123 && reason.substr(0, cut.size()) == cut);
    FUZZ_CHECK(cut.size() == reason.size() || cut.size() + 4 > 123);  // cut only as far as needed
    raw.push_back({WsEvent::kClose, code, cut});
  }
  std::vector<WsEvent> back = decode_all(role, big, encode(peer, raw, split));
  drop_marker_pings(back);
  FUZZ_CHECK(back == raw);
  return 0;
}

}  // namespace tether::fuzz
