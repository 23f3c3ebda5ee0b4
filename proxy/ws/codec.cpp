// RFC 6455 framing (section 5), closing (section 7) and the handshake key (section 4.2.2).

#include "proxy/ws/codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "proxy/util/assert.h"

namespace tether::ws {
namespace {

constexpr uint8_t kFin = 0x80;
constexpr uint8_t kRsvBits = 0x70;
constexpr uint8_t kOpcodeBits = 0x0F;
constexpr uint8_t kMaskBit = 0x80;
constexpr uint8_t kLen16 = 126;
constexpr uint8_t kLen64 = 127;
constexpr size_t kMaxControlPayload = 125;  // section 5.5
constexpr size_t kMaxCloseReason = kMaxControlPayload - 2;
// A message buffer that grew past this is freed after delivery rather than kept for the
// connection's lifetime.
constexpr size_t kKeepCapacity = 64 * 1024;
constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // section 1.3

bool is_control(uint8_t opcode) {
  return opcode & 0x8;
}

bool is_known(uint8_t opcode) {
  switch (static_cast<Opcode>(opcode)) {
    case Opcode::kContinuation:
    case Opcode::kText:
    case Opcode::kBinary:
    case Opcode::kClose:
    case Opcode::kPing:
    case Opcode::kPong:
      return true;
  }
  return false;
}

// XORs DATA with the masking KEY (section 5.3), DATA[0] taking key byte POS. Returns the key
// position of the byte after DATA. Eight bytes at a time: the key rotated to POS and repeated
// twice is the same for every aligned 8-byte step, whatever the buffer's alignment.
uint8_t apply_mask(uint8_t* data, size_t len, const uint8_t key[4], uint8_t pos) {
  size_t i = 0;
  if (len >= 8) {
    uint8_t rotated[8];
    for (size_t k = 0; k < 8; ++k) rotated[k] = key[(pos + k) & 3];
    uint64_t m;
    std::memcpy(&m, rotated, 8);
    for (; len - i >= 8; i += 8) {
      uint64_t w;
      std::memcpy(&w, data + i, 8);
      w ^= m;
      std::memcpy(data + i, &w, 8);
    }
  }
  for (; i < len; ++i) data[i] ^= key[(pos + i) & 3];
  return static_cast<uint8_t>((pos + len) & 3);
}

// Masking keys and nonces must be unpredictable (section 10.3): if the CSPRNG fails there is no
// safe fallback, so stop.
void random_bytes(uint8_t* out, size_t len) {
  const int ok = RAND_bytes(out, static_cast<int>(len));
  TETHER_RELEASE_ASSERT(ok == 1);
}

// A masking key per frame from the CSPRNG, drawn 4 KiB at a time: one RAND_bytes call per
// 1024 frames instead of one per frame (a relay masks every message it sends upstream). The
// keys stay CSPRNG output, so as unpredictable as section 10.3 asks. One loop per thread.
void mask_key(uint8_t key[4]) {
  thread_local uint8_t pool[4096];
  thread_local size_t used = sizeof pool;
  if (used == sizeof pool) {
    random_bytes(pool, sizeof pool);
    used = 0;
  }
  memcpy(key, pool + used, 4);
  OPENSSL_cleanse(pool + used, 4);  // a key handed out is not kept
  used += 4;
}

// Base64 (RFC 4648 section 4) of at most 48 bytes.
std::string base64(const uint8_t* data, size_t len) {
  unsigned char out[65];  // 4 * ceil(48 / 3) + NUL
  TETHER_ASSERT(len <= 48);
  const int n = EVP_EncodeBlock(out, data, static_cast<int>(len));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

bool is_valid_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

Decoder::Decoder(Role role, DecoderLimits limits) : role_(role), limits_(limits) {}

size_t Decoder::buffered() const {
  return (in_payload_ ? 0 : hdr_len_) + control_.size() + message_.size();
}

// Every check runs at the first byte that can decide it, so the outcome (events, and the count
// of bytes consumed) does not depend on how the input is split across feed() calls. SINK may not
// feed this decoder again from a callback.
size_t Decoder::feed(const uint8_t* data, size_t len, DecoderSink& sink) {
  size_t pos = 0;
  while (!stopped_) {
    if (in_payload_ && remaining_ == 0) {  // also right after the header of an empty frame
      finish_frame(sink);
      continue;
    }
    if (pos == len) break;
    if (!in_payload_) {
      header_byte(data[pos++], sink);
    } else {
      pos += payload(data + pos, static_cast<size_t>(std::min<uint64_t>(len - pos, remaining_)), sink);
    }
  }
  return pos;
}

void Decoder::header_byte(uint8_t b, DecoderSink& sink) {
  hdr_[hdr_len_++] = b;
  const uint8_t opcode = hdr_[0] & kOpcodeBits;
  if (hdr_len_ == 1) {
    if (b & kRsvBits) return stop_with_error(sink, close_code::kProtocolError, "reserved bits set");
    if (!is_known(opcode)) {
      return stop_with_error(sink, close_code::kProtocolError, "unknown opcode " + std::to_string(opcode));
    }
    if (is_control(opcode)) {
      if (!(b & kFin)) return stop_with_error(sink, close_code::kProtocolError, "fragmented control frame");
    } else if (opcode == static_cast<uint8_t>(Opcode::kContinuation) && !in_message_) {
      return stop_with_error(sink, close_code::kProtocolError, "continuation frame without a message");
    } else if (opcode != static_cast<uint8_t>(Opcode::kContinuation) && in_message_) {
      return stop_with_error(sink, close_code::kProtocolError, "new data frame inside a fragmented message");
    }
    return;
  }

  const bool masked = hdr_[1] & kMaskBit;
  const uint8_t len7 = hdr_[1] & 0x7F;
  if (hdr_len_ == 2) {
    // Section 5.1: clients mask every frame, servers none.
    if (role_ == Role::kServer && !masked) {
      return stop_with_error(sink, close_code::kProtocolError, "frame not masked");
    }
    if (role_ == Role::kClient && masked) {
      return stop_with_error(sink, close_code::kProtocolError, "frame masked");
    }
    if (is_control(opcode) && len7 > kMaxControlPayload) {
      return stop_with_error(sink, close_code::kProtocolError, "control frame payload over 125 bytes");
    }
  }

  const size_t len_end = 2 + (len7 == kLen16 ? 2 : len7 == kLen64 ? 8 : 0);
  if (hdr_len_ == len_end) {
    uint64_t len = len7;
    if (len_end > 2) {
      len = 0;
      for (size_t i = 2; i < len_end; ++i) len = len << 8 | hdr_[i];
    }
    if (len >> 63) {
      return stop_with_error(sink, close_code::kProtocolError, "payload length with the high bit set");
    }
    // Refuse an oversized message before buffering any of it: the header already tells.
    const uint64_t have = opcode == static_cast<uint8_t>(Opcode::kContinuation) ? message_.size() : 0;
    if (!is_control(opcode) && (have > limits_.max_message || len > limits_.max_message - have)) {
      return stop_with_error(sink, close_code::kTooBig, "message too big");
    }
    remaining_ = len;
  }

  if (hdr_len_ < len_end + (masked ? 4 : 0)) return;
  if (masked) std::memcpy(mask_, hdr_ + len_end, 4);
  cur_opcode_ = opcode;
  cur_fin_ = hdr_[0] & kFin;
  cur_masked_ = masked;
  mask_pos_ = 0;
  in_payload_ = true;
  if (is_control(opcode)) {
    control_.clear();
  } else if (opcode != static_cast<uint8_t>(Opcode::kContinuation)) {
    in_message_ = true;
    message_opcode_ = static_cast<Opcode>(opcode);
    message_.clear();
    utf8_.reset();
  }
}

size_t Decoder::payload(const uint8_t* data, size_t n, DecoderSink& sink) {
  const bool control = is_control(cur_opcode_);
  std::string& dst = control ? control_ : message_;
  const size_t old = dst.size();
  dst.append(reinterpret_cast<const char*>(data), n);
  uint8_t* p = reinterpret_cast<uint8_t*>(dst.data()) + old;
  if (cur_masked_) mask_pos_ = apply_mask(p, n, mask_, mask_pos_);
  remaining_ -= n;
  if (!control && message_opcode_ == Opcode::kText) {
    // Fail fast (section 8.1): do not wait for the rest of the message.
    Utf8Validator before = utf8_;
    if (!utf8_.feed(p, n)) {
      size_t bad = 0;  // consume up to and including the byte that broke it, however input is split
      while (before.feed(p + bad, 1)) ++bad;
      stop_with_error(sink, close_code::kInvalidPayload, "invalid UTF-8 in text message");
      return bad + 1;
    }
  }
  return n;
}

void Decoder::finish_frame(DecoderSink& sink) {
  in_payload_ = false;
  hdr_len_ = 0;
  switch (static_cast<Opcode>(cur_opcode_)) {
    case Opcode::kPing:
      sink.on_ping(control_);
      control_.clear();
      return;
    case Opcode::kPong:
      sink.on_pong(control_);
      control_.clear();
      return;
    case Opcode::kClose:
      return finish_close(sink);
    case Opcode::kContinuation:
    case Opcode::kText:
    case Opcode::kBinary:
      break;
  }
  if (!cur_fin_) return;
  if (message_opcode_ == Opcode::kText && !utf8_.complete()) {
    return stop_with_error(sink, close_code::kInvalidPayload,
                           "invalid UTF-8 in text message (truncated code point)");
  }
  in_message_ = false;
  sink.on_message(message_opcode_, message_);
  if (message_.capacity() > kKeepCapacity) {
    std::string().swap(message_);
  } else {
    message_.clear();
  }
}

// Section 5.5.1 and 7.4: an optional 2-byte code, then an optional UTF-8 reason.
void Decoder::finish_close(DecoderSink& sink) {
  uint16_t code = close_code::kNoStatus;
  std::string_view reason;
  if (!control_.empty()) {
    if (control_.size() == 1) {
      return stop_with_error(sink, close_code::kProtocolError, "close frame with a 1-byte payload");
    }
    code = static_cast<uint16_t>(static_cast<uint8_t>(control_[0]) << 8 | static_cast<uint8_t>(control_[1]));
    if (!is_valid_close_code(code)) {
      return stop_with_error(sink, close_code::kProtocolError, "invalid close code " + std::to_string(code));
    }
    reason = std::string_view(control_).substr(2);
    if (!is_valid_utf8(reason)) {
      return stop_with_error(sink, close_code::kInvalidPayload, "invalid UTF-8 in close reason");
    }
  }
  stopped_ = true;
  sink.on_close(code, reason);
  std::string().swap(control_);
  std::string().swap(message_);
}

void Decoder::stop_with_error(DecoderSink& sink, uint16_t code, std::string_view reason) {
  stopped_ = true;
  hdr_len_ = 0;
  std::string().swap(control_);
  std::string().swap(message_);
  sink.on_error(code, reason);
}

void append_frame(std::string& out, Role role, Opcode opcode, std::string_view payload, bool fin) {
  TETHER_ASSERT(!is_control(static_cast<uint8_t>(opcode)) || (fin && payload.size() <= kMaxControlPayload));
  uint8_t hdr[14];
  size_t n = 0;
  hdr[n++] = static_cast<uint8_t>((fin ? kFin : 0) | static_cast<uint8_t>(opcode));
  const uint8_t mask_bit = role == Role::kClient ? kMaskBit : 0;
  const uint64_t len = payload.size();
  if (len <= kMaxControlPayload) {
    hdr[n++] = static_cast<uint8_t>(mask_bit | len);
  } else if (len <= 0xFFFF) {
    hdr[n++] = mask_bit | kLen16;
    hdr[n++] = static_cast<uint8_t>(len >> 8);
    hdr[n++] = static_cast<uint8_t>(len);
  } else {
    hdr[n++] = mask_bit | kLen64;
    for (int shift = 56; shift >= 0; shift -= 8) hdr[n++] = static_cast<uint8_t>(len >> shift);
  }
  uint8_t* key = hdr + n;
  if (role == Role::kClient) {
    mask_key(key);  // a fresh key per frame (section 5.3)
    n += 4;
  }
  out.reserve(out.size() + n + payload.size());
  out.append(reinterpret_cast<const char*>(hdr), n);
  const size_t at = out.size();
  out.append(payload);
  if (role == Role::kClient) apply_mask(reinterpret_cast<uint8_t*>(out.data()) + at, payload.size(), key, 0);
}

std::string close_payload(uint16_t code, std::string_view reason) {
  if (code == close_code::kNoStatus) return {};
  size_t n = std::min(reason.size(), kMaxCloseReason);
  if (n < reason.size()) {
    while (n > 0 && (static_cast<uint8_t>(reason[n]) & 0xC0) == 0x80) --n;  // back off a continuation byte
  }
  std::string out;
  out.reserve(2 + n);
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code & 0xFF));
  out.append(reason.substr(0, n));
  return out;
}

std::string accept_key(std::string_view client_key) {
  std::string input;
  input.reserve(client_key.size() + kGuid.size());
  input.append(client_key);
  input.append(kGuid);
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  const int ok = EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha1(), nullptr);
  TETHER_RELEASE_ASSERT(ok == 1);  // fails only if OpenSSL cannot allocate
  return base64(digest, digest_len);
}

std::string make_client_key() {
  uint8_t nonce[16];
  random_bytes(nonce, sizeof nonce);
  return base64(nonce, sizeof nonce);
}

// 16 bytes are 22 base64 characters and "==". Like most servers, this does not insist that the
// unused low bits of the 22nd character be zero (RFC 4648 section 3.5 lets decoders accept them).
bool is_valid_client_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, is_base64_char);
}

}  // namespace tether::ws
