#pragma once
// RFC 6455 WebSocket codec with no I/O: bytes in -> events out, messages in -> bytes out.
// Both roles: a server decodes masked frames and sends unmasked ones; a client the reverse.
// The decoder reassembles fragmented messages (control frames may arrive between fragments)
// and validates text as UTF-8 incrementally, across fragments, failing as soon as a byte
// sequence cannot start a valid code point.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tether::ws {

enum class Role { kServer, kClient };

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes used by Tether (RFC 6455 section 7.4.1).
namespace close_code {
constexpr uint16_t kNormal = 1000;
constexpr uint16_t kGoingAway = 1001;
constexpr uint16_t kProtocolError = 1002;
constexpr uint16_t kUnsupportedData = 1003;
constexpr uint16_t kNoStatus = 1005;  // never sent: a close frame without a code
constexpr uint16_t kAbnormal = 1006;  // never sent: the connection dropped
constexpr uint16_t kInvalidPayload = 1007;
constexpr uint16_t kPolicy = 1008;
constexpr uint16_t kTooBig = 1009;
constexpr uint16_t kInternalError = 1011;
constexpr uint16_t kTryAgainLater = 1013;
constexpr uint16_t kBadGateway = 1014;
}  // namespace close_code

// True for codes a peer may put in a close frame: 1000-1003, 1007-1014, 3000-4999.
bool is_valid_close_code(uint16_t code);

// Incremental UTF-8 validator (rejects overlongs, surrogates, > U+10FFFF).
class Utf8Validator {
 public:
  // False as soon as the bytes seen so far cannot be the prefix of valid UTF-8.
  bool feed(const uint8_t* data, size_t len);
  bool feed(std::string_view s) { return feed(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }
  // True when the bytes seen so far end on a code point boundary (and were valid).
  bool complete() const { return state_ == 0; }
  void reset() { state_ = 0; }

 private:
  uint32_t state_ = 0;
};
bool is_valid_utf8(std::string_view s);

// What the decoder reports. Each callback may be called several times per feed().
class DecoderSink {
 public:
  virtual ~DecoderSink() = default;
  // A whole data message (text is valid UTF-8). The payload may be moved from.
  virtual void on_message(Opcode opcode, std::string& payload) = 0;
  virtual void on_ping(std::string_view payload) = 0;
  virtual void on_pong(std::string_view payload) = 0;
  // A close frame: code is kNoStatus when the frame had no payload. The reason is valid UTF-8.
  virtual void on_close(uint16_t code, std::string_view reason) = 0;
  // The peer broke the protocol; the caller should send a close with this code and reason
  // (1002 protocol error, 1007 bad UTF-8, 1009 too big) and stop reading.
  virtual void on_error(uint16_t code, std::string_view reason) = 0;
};

struct DecoderLimits {
  size_t max_message = 16u << 20;  // bytes of one (reassembled) data message; over -> 1009
};

// Incremental decoder. Frame errors (each reported once through on_error, after which feed()
// consumes nothing more):
//   RSV bits set (no extensions are negotiated)              1002 "reserved bits set"
//   unknown opcode                                            1002 "unknown opcode N"
//   server role and a frame is unmasked                       1002 "frame not masked"
//   client role and a frame is masked                         1002 "frame masked"
//   control frame with FIN clear or payload > 125 bytes       1002 "..."
//   continuation with no message started, or a new data frame
//     while a fragmented message is open                      1002 "..."
//   64-bit length with the high bit set                       1002 "payload length with ..."
//   (a non-minimal length is accepted on a data frame; a control frame's length must be in the
//   7-bit form, as minimal encoding requires for anything up to 125 bytes)
//   close payload of 1 byte, or an invalid close code         1002
//   close reason or text message not UTF-8                    1007 "invalid UTF-8 ..."
//   message larger than limits.max_message                    1009 "message too big"
// After on_close, the decoder consumes nothing more either.
class Decoder {
 public:
  Decoder(Role role, DecoderLimits limits = {});
  // Consumes up to LEN bytes, calling SINK for each complete event. Returns the number of bytes
  // consumed: all of them unless an error or close stopped the decoder.
  size_t feed(const uint8_t* data, size_t len, DecoderSink& sink);
  bool stopped() const { return stopped_; }
  // Bytes currently held for an incomplete frame or message (for memory accounting).
  size_t buffered() const;

 private:
  // Each helper may call SINK and may stop the decoder.
  void header_byte(uint8_t b, DecoderSink& sink);
  // Consumes N (> 0, <= remaining_) payload bytes; returns how many, fewer only on an error.
  size_t payload(const uint8_t* data, size_t n, DecoderSink& sink);
  void finish_frame(DecoderSink& sink);
  void finish_close(DecoderSink& sink);
  void stop_with_error(DecoderSink& sink, uint16_t code, std::string_view reason);

  Role role_;
  DecoderLimits limits_;
  bool stopped_ = false;
  // Header parsing state: hdr_ holds the header bytes seen so far (at most 2 + 8 + 4).
  uint8_t hdr_[14] = {};
  size_t hdr_len_ = 0;
  bool in_payload_ = false;  // the header is complete and remaining_ bytes of payload follow
  uint8_t cur_opcode_ = 0;
  bool cur_fin_ = false;
  bool cur_masked_ = false;
  uint8_t mask_[4] = {0, 0, 0, 0};
  uint64_t remaining_ = 0;
  uint8_t mask_pos_ = 0;  // index into mask_ of the next payload byte
  std::string control_;   // payload of the control frame being read
  std::string message_;   // data message being reassembled
  Opcode message_opcode_ = Opcode::kContinuation;
  bool in_message_ = false;  // a data frame started a message whose final frame is not in yet
  Utf8Validator utf8_;
};

// Appends one frame to OUT. The client role masks with a fresh key from OpenSSL's RAND_bytes.
void append_frame(std::string& out, Role role, Opcode opcode, std::string_view payload, bool fin = true);
// The payload of a close frame: 2-byte code + reason (reason cut to fit 123 bytes on a UTF-8
// boundary). code == kNoStatus gives an empty payload.
std::string close_payload(uint16_t code, std::string_view reason);

// Handshake (RFC 6455 section 4): base64(SHA-1(key + GUID)) with OpenSSL.
std::string accept_key(std::string_view client_key);
// A fresh Sec-WebSocket-Key: base64 of 16 bytes from RAND_bytes.
std::string make_client_key();
// True when KEY is base64 of exactly 16 bytes.
bool is_valid_client_key(std::string_view key);

}  // namespace tether::ws
