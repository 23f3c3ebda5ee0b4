// The session's outbound buffer. Held messages are contiguous in seq (only the front is ever
// removed), so a seq maps to a deque index by subtraction. Invariant: delivered_through_ is at
// least first_seq() - 1 (only delivered messages are evicted, and release_through moves
// delivered_through_ past what it drops), so the pending run is exactly (delivered_through_,
// last_seq()].

#include "proxy/session/outbox.h"

#include <algorithm>
#include <utility>

#include "proxy/util/assert.h"

namespace tether::session {

Outbox::Outbox(size_t max_messages, size_t max_bytes) : max_messages_(max_messages), max_bytes_(max_bytes) {}

uint64_t Outbox::push(bool binary, std::string payload) {
  const size_t len = payload.size();
  while (!messages_.empty() && messages_.front().seq <= delivered_through_ &&
         (messages_.size() + 1 > max_messages_ || bytes_ + len > max_bytes_)) {
    bytes_ -= messages_.front().payload.size();
    messages_.pop_front();
  }
  const uint64_t seq = next_seq_++;
  messages_.push_back(OutMessage{.seq = seq, .binary = binary, .payload = std::move(payload)});
  bytes_ += len;
  pending_bytes_ += len;
  return seq;
}

void Outbox::release_through(uint64_t ack) {
  while (!messages_.empty() && messages_.front().seq <= ack) {
    const OutMessage& m = messages_.front();
    bytes_ -= m.payload.size();
    if (m.seq > delivered_through_) pending_bytes_ -= m.payload.size();
    messages_.pop_front();
  }
  // What the client acknowledged it has received; what is left is all after ACK.
  delivered_through_ = std::max(delivered_through_, std::min(ack, last_seq()));
}

void Outbox::mark_delivered(uint64_t seq) {
  const uint64_t through = std::min(seq, last_seq());
  if (through <= delivered_through_) return;
  for (auto it = after(delivered_through_); it != messages_.end() && it->seq <= through; ++it) {
    pending_bytes_ -= it->payload.size();
  }
  delivered_through_ = through;
}

bool Outbox::backlog_full() const {
  TETHER_ASSERT(messages_.empty() || delivered_through_ + 1 >= messages_.front().seq);
  const uint64_t pending = last_seq() - delivered_through_;
  return pending >= max_messages_ || pending_bytes_ >= max_bytes_;
}

uint64_t Outbox::first_seq() const {
  return messages_.empty() ? next_seq_ : messages_.front().seq;
}

std::deque<OutMessage>::const_iterator Outbox::after(uint64_t seq) const {
  if (messages_.empty()) return messages_.end();
  const uint64_t first = messages_.front().seq;
  if (seq < first) return messages_.begin();
  const uint64_t offset = seq - first + 1;
  if (offset >= messages_.size()) return messages_.end();
  return messages_.begin() + static_cast<std::ptrdiff_t>(offset);
}

}  // namespace tether::session
