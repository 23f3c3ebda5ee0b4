#pragma once
// The messages a session received from its backend, waiting for the client (no I/O).
//
// Messages get seq 1, 2, 3 … in arrival order. They live in three runs, oldest first:
//   delivered  - written to an SSE stream; kept as the replay window for a reconnect, and
//                evicted oldest first when room is needed (SSE has no acknowledgements)
//   pending    - not yet known to have reached the client (poll responses can be lost, so a
//                poll client's messages stay pending until it acknowledges them)
// release_through(ack) drops everything up to ack (long polling). The bound (max_messages,
// max_bytes) covers all held messages; backlog_full() says when the pending run alone fills
// it, which is when the session must stop reading its upstream.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

namespace tether::session {

struct OutMessage {
  uint64_t seq = 0;
  bool binary = false;
  std::string payload;
};

class Outbox {
 public:
  Outbox(size_t max_messages, size_t max_bytes);

  // Appends a message with the next seq (returned). Evicts delivered messages, oldest first,
  // while the bound would be exceeded. Never refuses: the caller stops reading its upstream
  // when backlog_full(), so at most one message beyond the bound is ever held.
  uint64_t push(bool binary, std::string payload);

  // Drops every message with seq <= ACK. ACK beyond last_seq() is the caller's error to catch.
  void release_through(uint64_t ack);
  // Marks messages with seq <= SEQ as delivered (evictable).
  void mark_delivered(uint64_t seq);

  // The pending run alone reaches max_messages or max_bytes.
  bool backlog_full() const;

  uint64_t last_seq() const { return next_seq_ - 1; }  // 0 before the first message
  uint64_t first_seq() const;                          // oldest held, or last_seq() + 1 if none
  uint64_t delivered_through() const { return delivered_through_; }
  size_t size() const { return messages_.size(); }
  size_t bytes() const { return bytes_; }
  size_t max_messages() const { return max_messages_; }
  size_t max_bytes() const { return max_bytes_; }

  // Messages with seq > AFTER, oldest first (begin may be end()).
  std::deque<OutMessage>::const_iterator after(uint64_t seq) const;
  std::deque<OutMessage>::const_iterator end() const { return messages_.end(); }

 private:
  size_t max_messages_, max_bytes_;
  std::deque<OutMessage> messages_;
  size_t bytes_ = 0;
  size_t pending_bytes_ = 0;  // payload bytes of the held messages with seq > delivered_through_
  uint64_t next_seq_ = 1;
  uint64_t delivered_through_ = 0;
};

}  // namespace tether::session
