#pragma once
// A session of an SSE or long-poll client: one upstream WebSocket for the session's whole life,
// the messages from the backend waiting for the client (Outbox), the client's numbered sends
// on their way up (Sequencer), and the timers that end a session nobody comes back for.
//
// Lifecycle:
//   connecting  connect() runs; the id is not yet in the table (no client knows it)
//   open        in the table; a client may attach (an SSE stream, a held poll)
//   closed      the backend closed (or the upstream dropped): close_info() is set; what is
//               buffered, then the close, is still delivered to the client
//   ended       removed from the table (a tombstone remembers the id): after the client proved
//               it has the close, a DELETE, or the linger running out (a written close may
//               never have arrived, so the session waits for the client or its linger). The object itself
//               lives on until its upstream connection has finished its close handshake, then retires.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/core/config.h"
#include "proxy/core/core.h"
#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/core/ws_endpoint.h"
#include "proxy/http/request_parser.h"
#include "proxy/routing/router.h"
#include "proxy/session/outbox.h"
#include "proxy/session/sequencer.h"
#include "proxy/upstream/connector.h"

namespace tether::session {

class SessionTable;
class Session;

enum class Kind { kSse, kPoll };

struct CloseInfo {
  uint16_t code = 0;
  std::string reason;
};

// The client side attached to a session: an SSE stream or a held poll. At most one at a time.
class Subscriber {
 public:
  // Messages after what the subscriber has, or the close, may be available.
  virtual void on_session_ready(Session& s) = 0;
  // The session no longer has this subscriber: another one took its place, or the session
  // ended. The subscriber must not touch the session after this.
  virtual void on_session_gone(Session& s) = 0;

 protected:
  ~Subscriber() = default;
};

// A POST waiting until its message is forwarded in order.
class SendWaiter {
 public:
  // FORWARDED: the message went upstream (204); otherwise the session ended first (410).
  virtual void on_send_done(bool forwarded) = 0;

 protected:
  ~SendWaiter() = default;
};

class Session : public Owned, private WsEndpointOwner {
 public:
  Session(Core& core, SessionTable& table, std::string id, Kind kind, const SessionConf& conf,
          uint64_t max_message, std::string client_peer);
  ~Session() override;

  // Opens the upstream. DONE(ok) when it is up (the session is then in the table), or
  // DONE(error) with the reason, after which the session is gone. DONE runs from the loop.
  using OpenDone = std::function<void(Status)>;
  void connect(const UpstreamConf& up, std::optional<std::string> key, UpstreamRequest request,
               Millis timeout, int tries, OpenDone done);
  // The client that asked for the session left before it opened.
  void abandon();

  const std::string& id() const { return id_; }
  const std::string& log_id() const { return log_id_; }
  Kind kind() const { return kind_; }
  const std::string& protocol() const { return protocol_; }
  const SessionConf& conf() const { return conf_; }
  const Outbox& outbox() const { return outbox_; }
  const std::optional<CloseInfo>& close_info() const { return close_; }
  bool ended() const { return ended_; }

  // Attaching stops the linger timer; a previous subscriber gets on_session_gone. Detaching
  // the current subscriber, or attaching nullptr, starts it.
  void attach(Subscriber* s);
  void detach(Subscriber* s);
  // A client request that did not attach (a poll answered at once): the linger starts anew.
  void touch();
  Subscriber* subscriber() const { return subscriber_; }

  // SSE: messages through SEQ were written to the stream (kept for replay, evictable).
  void delivered_through(uint64_t seq);
  // Poll: the client has every message through ACK.
  void release_through(uint64_t ack);
  // The client address's place under tether_max_sessions_per_client, released when the session ends.
  void hold_client_slot(ClientTable::Slot slot) { client_slot_ = std::move(slot); }
  // The close reached the client (SSE: a reconnect named tether-close's id): the session ends.
  void close_delivered();

  // kBusy: the backend has not taken what was sent before (tether_buffer bytes of it): retry.
  enum class SendResult { kForwarded, kHeld, kDuplicate, kTooFarAhead, kEnded, kBusy };
  // Queues a client message SEQ for the backend in order. On kHeld, WAITER is told later
  // (kept until then; cancel_send() if its client leaves).
  SendResult send(uint64_t seq, ws::Opcode opcode, std::string payload, SendWaiter* waiter);
  void cancel_send(uint64_t seq, SendWaiter* waiter);

  // DELETE: closes the upstream with 1000; the subscriber, if any, gets the close; the session ends.
  void close_by_client();
  // The process stops: the upstream and the client get 1001; the session ends.
  void shutdown(bool graceful) override;

 private:
  struct HeldSend {
    ws::Opcode opcode = ws::Opcode::kText;
    std::string payload;
    std::vector<SendWaiter*> waiters;
  };

  void on_upstream(Result<UpstreamSocket> result);
  void set_closed(uint16_t code, std::string reason, SessionEnd cause);
  void notify();
  // CAUSE counts in the stats unless the session was already closed for another cause.
  void end(const char* why, SessionEnd cause);
  MessageCounters& counters() const;
  void start_linger();
  void check_backlog();
  void maybe_retire();

  void on_ws_message(WsEndpoint& ep, ws::Opcode opcode, std::string& payload) override;
  void on_ws_ping(WsEndpoint& ep, std::string_view payload) override;
  void on_ws_pong(WsEndpoint& ep, std::string_view payload) override;
  void on_ws_close(WsEndpoint& ep, uint16_t code, std::string_view reason) override;
  void on_ws_error(WsEndpoint& ep, uint16_t code, std::string_view reason) override;
  void on_ws_gone(WsEndpoint& ep) override;
  void on_ws_drained(WsEndpoint& ep) override;

 public:
  // Timer callbacks (public for the C trampolines).
  void handle_linger();
  void handle_full();

 private:
  Core& core_;
  SessionTable& table_;
  ClientTable::Slot client_slot_;  // held until the session ends
  std::string id_, log_id_;
  Kind kind_;
  SessionConf conf_;
  uint64_t max_message_;
  std::string client_peer_;
  std::string protocol_;
  std::string upstream_name_;
  Outbox outbox_;
  Sequencer<HeldSend> sends_;
  std::unique_ptr<routing::UpstreamOpener> opener_;
  std::shared_ptr<void> lease_;  // the server's place in its pool's active count
  std::unique_ptr<WsEndpoint> up_;
  OpenDone open_done_;
  Subscriber* subscriber_ = nullptr;
  std::optional<CloseInfo> close_;
  SessionEnd cause_ = SessionEnd::kLinger;
  EventPtr linger_timer_, full_timer_;
  bool in_table_ = false;
  bool ended_ = false;
  bool retired_ = false;
  bool paused_ = false;
  size_t held_bytes_ = 0;  // payload bytes of early sends held
};

// The live sessions of one event loop by id, and the ids of recently ended ones (tombstones),
// so that a client coming back to an ended session is told so (410 / 204) rather than 404.
class SessionTable {
 public:
  explicit SessionTable(Millis tombstone_life = Millis{120'000}, size_t max_tombstones = 100'000);

  Session* find(std::string_view id) const;
  bool recently_ended(std::string_view id) const;
  size_t size() const { return live_.size(); }

  // Used by Session.
  void insert(Session* s);
  void remove(Session* s);

 private:
  void prune();

  Millis tombstone_life_;
  size_t max_tombstones_;
  std::map<std::string, Session*, std::less<>> live_;
  std::map<std::string, int64_t, std::less<>> ended_;  // id -> expiry (ms, monotonic)
  std::multimap<int64_t, std::string> ended_by_time_;
};

// The live session SID names, or nullptr after answering the request on CONN: 410 when it
// ended recently, 404 when it is unknown (each with HEADERS, e.g. CORS).
Session* find_or_answer(Core& core, HttpConnection& conn, std::string_view sid, const HeaderList& headers);
// A decimal tether-seq / tether-ack value: digits only, at most 19 of them.
bool parse_decimal(std::string_view s, uint64_t& out);

// A fresh session's id, unique among live and recently ended ones.
std::string make_unique_id(const SessionTable& table);

// Creates a session for a client's request at LOC (which has tether_pass) and starts opening
// its upstream; DONE as for Session::connect. The core owns the session.
// KEY is the request's sticky key (routing::route_key).
// SLOT is the session's place under tether_max_sessions_per_client (take_session_slot).
Session& open_session(Core& core, const http::Request& req, const LocationConf& loc,
                      const std::string& peer_ip, const std::string& peer, Kind kind,
                      std::optional<std::string> key, ClientTable::Slot slot, Session::OpenDone done);

// A place for one more session of CONN's client address, or an empty slot after answering
// 429 (with HEADERS) when the address holds tether_max_sessions_per_client already.
ClientTable::Slot take_session_slot(Core& core, HttpConnection& conn, const HeaderList& headers);

}  // namespace tether::session
