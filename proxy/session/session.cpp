#include "proxy/session/session.h"

#include <charconv>
#include <chrono>
#include <utility>

#include "proxy/core/stats.h"
#include "proxy/session/session_id.h"
#include "proxy/upstream/request.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"

namespace tether::session {
namespace {

void on_linger(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Session*>(ctx)->handle_linger();
}
void on_full(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Session*>(ctx)->handle_full();
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Session::Session(Core& core, SessionTable& table, std::string id, Kind kind, const SessionConf& conf,
                 uint64_t max_message, std::string client_peer)
    : core_(core),
      table_(table),
      id_(std::move(id)),
      log_id_(log_prefix(id_)),
      kind_(kind),
      conf_(conf),
      max_message_(max_message),
      client_peer_(std::move(client_peer)),
      outbox_(conf.max_messages, conf.max_bytes),
      sends_(conf.max_messages) {
  linger_timer_.reset(evtimer_new(core.base(), on_linger, this));
  full_timer_.reset(evtimer_new(core.base(), on_full, this));
}

Session::~Session() {
  if (in_table_ && !ended_) table_.remove(this);
}

void Session::connect(const UpstreamConf& up, std::optional<std::string> key, UpstreamRequest request,
                      Millis timeout, int tries, OpenDone done) {
  open_done_ = std::move(done);
  upstream_name_ = up.name;
  opener_ = std::make_unique<routing::UpstreamOpener>(
      core_, up, std::move(key), std::move(request), timeout, tries,
      [this](Result<UpstreamSocket> r) { on_upstream(std::move(r)); });
  opener_->start();
}

void Session::on_upstream(Result<UpstreamSocket> result) {
  auto done = std::move(open_done_);
  if (!result.ok()) {
    // Never in the table; the connector is freed with the session, after this callback.
    ended_ = true;
    maybe_retire();
    if (done) done(result.error());
    return;
  }
  UpstreamSocket& sock = result.value();
  protocol_ = sock.protocol;
  lease_ = std::move(sock.lease);
  upstream_name_ = sock.server;
  up_ = std::make_unique<WsEndpoint>(core_.base(), std::move(sock.bev), ws::Role::kClient,
                                     ws::DecoderLimits{.max_message = max_message_},
                                     static_cast<WsEndpointOwner&>(*this), "upstream " + sock.server);
  table_.insert(this);
  in_table_ = true;
  TETHER_LOG(kInfo, "session %s open (%s), client: %s, upstream: %s", log_id_.c_str(),
             kind_ == Kind::kSse ? "sse" : "poll", client_peer_.c_str(), sock.server.c_str());
  ++stats().sessions_opened;
  up_->start();
  up_->set_send_timeout(conf_.send_timeout);
  start_linger();  // until a client attaches
  if (done) done(ok_status());
}

void Session::abandon() {
  if (ended_) return;
  if (!up_) {
    // Still connecting: dropping the opener cancels the attempt (not called from inside it).
    opener_.reset();
    ended_ = true;
    maybe_retire();
    return;
  }
  end("the client left", SessionEnd::kClient);
}

void Session::attach(Subscriber* s) {
  if (subscriber_ == s) return;
  Subscriber* old = std::exchange(subscriber_, s);
  if (s) {
    evtimer_del(linger_timer_.get());
  } else if (!ended_) {
    start_linger();
  }
  if (old) old->on_session_gone(*this);
}

void Session::touch() {
  if (!subscriber_ && !ended_) start_linger();
}

void Session::detach(Subscriber* s) {
  if (subscriber_ != s) return;
  subscriber_ = nullptr;
  if (!ended_) start_linger();
}

void Session::start_linger() {
  timeval tv = to_timeval(conf_.linger);
  evtimer_add(linger_timer_.get(), &tv);
}

void Session::notify() {
  if (subscriber_) subscriber_->on_session_ready(*this);
}

void Session::delivered_through(uint64_t seq) {
  outbox_.mark_delivered(seq);
  check_backlog();
}

void Session::release_through(uint64_t ack) {
  outbox_.release_through(ack);
  check_backlog();
}

// A full buffer stops reading the upstream, so the backend feels TCP back-pressure; room in
// the buffer starts it again. Full for longer than the linger ends the session.
void Session::check_backlog() {
  if (!up_ || up_->gone()) return;
  bool full = outbox_.backlog_full();
  if (full && !paused_) {
    paused_ = true;
    ++stats().buffer_full_pauses;
    up_->pause_reading();
    timeval tv = to_timeval(conf_.linger);
    evtimer_add(full_timer_.get(), &tv);
  } else if (!full && paused_) {
    paused_ = false;
    up_->resume_reading();
    evtimer_del(full_timer_.get());
  }
}

void Session::close_delivered() {
  end("its close was delivered", cause_);
}

void Session::close_by_client() {
  if (ended_) return;
  if (!close_) {
    if (up_ && !up_->gone()) up_->send_close(ws::close_code::kNormal, "closed by client");
    set_closed(ws::close_code::kNormal, "closed by client", SessionEnd::kClient);
    notify();
  }
  end("the client closed it", SessionEnd::kClient);
}

void Session::shutdown(bool) {
  if (ended_) return;
  if (!up_) {
    // Still connecting: give up, and tell whoever waits for the open.
    opener_.reset();  // not called from within the opener
    ended_ = true;
    auto done = std::move(open_done_);
    maybe_retire();
    if (done) done(Error{Errc::kUpstream, "server shutting down"});
    return;
  }
  if (!close_) {
    if (!up_->gone()) up_->send_close(ws::close_code::kGoingAway, "server shutting down");
    set_closed(ws::close_code::kGoingAway, "server shutting down", SessionEnd::kShutdown);
    notify();
  }
  end("server shutting down", SessionEnd::kShutdown);
}

Session::SendResult Session::send(uint64_t seq, ws::Opcode opcode, std::string payload, SendWaiter* waiter) {
  if (ended_ || close_ || !up_ || up_->gone()) return SendResult::kEnded;
  // What the backend has not taken yet is bounded like the session's buffer: beyond it the
  // client retries, instead of tether queueing the messages of a backend that reads nothing.
  if (seq == sends_.next() && up_->pending_output() >= conf_.max_bytes) return SendResult::kBusy;
  HeldSend entry{opcode, std::move(payload), {waiter}};
  size_t size = entry.payload.size();
  // Early messages count against the session's byte bound too, so holding them is bounded.
  if (seq > sends_.next() && !sends_.held(seq) && held_bytes_ + size > conf_.max_bytes) {
    return SendResult::kTooFarAhead;
  }
  // On kReady the sequencer does not take ENTRY: it is forwarded from here.
  switch (sends_.offer(seq, std::move(entry))) {
    case Sequencer<HeldSend>::Verdict::kReady:
      up_->send(entry.opcode, entry.payload);
      stats().message(counters(), true, entry.payload.size());
      while (auto next = sends_.pop_ready()) {
        held_bytes_ -= next->second.payload.size();
        up_->send(next->second.opcode, next->second.payload);
        stats().message(counters(), true, next->second.payload.size());
        for (SendWaiter* w : next->second.waiters) w->on_send_done(true);
      }
      return SendResult::kForwarded;
    case Sequencer<HeldSend>::Verdict::kHeld:
      held_bytes_ += size;
      return SendResult::kHeld;
    case Sequencer<HeldSend>::Verdict::kAlreadyHeld:
      sends_.held(seq)->waiters.push_back(waiter);
      return SendResult::kHeld;
    case Sequencer<HeldSend>::Verdict::kDuplicate:
      return SendResult::kDuplicate;
    case Sequencer<HeldSend>::Verdict::kTooFarAhead:
    case Sequencer<HeldSend>::Verdict::kInvalid:
      break;
  }
  return SendResult::kTooFarAhead;
}

void Session::cancel_send(uint64_t seq, SendWaiter* waiter) {
  if (HeldSend* h = sends_.held(seq)) std::erase(h->waiters, waiter);
}

MessageCounters& Session::counters() const {
  return kind_ == Kind::kSse ? stats().sse : stats().poll;
}

void Session::set_closed(uint16_t code, std::string reason, SessionEnd cause) {
  if (close_) return;
  close_ = CloseInfo{code, std::move(reason)};
  cause_ = cause;
  evtimer_del(full_timer_.get());
  // Sends still waiting for their turn will never go: tell their clients.
  for (auto& [seq, held] : sends_.take_all()) {
    for (SendWaiter* w : held.waiters) w->on_send_done(false);
  }
  held_bytes_ = 0;
}

void Session::end(const char* why, SessionEnd cause) {
  if (ended_) return;
  ended_ = true;
  client_slot_.release();
  if (!close_) cause_ = cause;
  if (in_table_) ++stats().sessions_closed[static_cast<size_t>(cause_)];
  TETHER_LOG(kInfo, "session %s ended: %s, client: %s", log_id_.c_str(), why, client_peer_.c_str());
  if (in_table_) table_.remove(this);
  in_table_ = false;
  evtimer_del(linger_timer_.get());
  evtimer_del(full_timer_.get());
  if (!close_) set_closed(ws::close_code::kGoingAway, why, cause);
  if (Subscriber* s = std::exchange(subscriber_, nullptr)) s->on_session_gone(*this);
  if (up_ && !up_->gone() && !up_->close_sent()) up_->send_close(ws::close_code::kGoingAway, why);
  maybe_retire();
}

void Session::maybe_retire() {
  if (retired_ || !ended_ || (up_ && !up_->gone())) return;
  retired_ = true;
  core_.retire(this);
}

void Session::handle_linger() {
  TETHER_LOG(kInfo, "session %s: no client for %lld ms", log_id_.c_str(),
             static_cast<long long>(conf_.linger.count()));
  if (!close_) ++stats().sessions_expired;
  end("no client came back within tether_session_linger", SessionEnd::kLinger);
}

void Session::handle_full() {
  TETHER_LOG(kInfo, "session %s: buffer full for %lld ms, the client is too slow", log_id_.c_str(),
             static_cast<long long>(conf_.linger.count()));
  if (up_ && !up_->gone()) up_->send_close(ws::close_code::kGoingAway, "client too slow");
  set_closed(ws::close_code::kPolicy, "session buffer full for too long: the client is too slow",
             SessionEnd::kSlowClient);
  notify();
}

void Session::on_ws_message(WsEndpoint&, ws::Opcode opcode, std::string& payload) {
  // After the close the client is (or will be) told about, nothing more reaches it: what the
  // backend still sends while its close reply comes is dropped, not buffered without bound.
  if (close_) return;
  stats().message(counters(), false, payload.size());
  outbox_.push(opcode == ws::Opcode::kBinary, std::move(payload));
  check_backlog();
  notify();
}

void Session::on_ws_ping(WsEndpoint&, std::string_view payload) {
  up_->send(ws::Opcode::kPong, payload);
}
void Session::on_ws_pong(WsEndpoint&, std::string_view) {}

void Session::on_ws_close(WsEndpoint&, uint16_t code, std::string_view reason) {
  set_closed(code, std::string(reason), SessionEnd::kBackend);
  // Reply with the same code (RFC 6455 5.5.1); the endpoint closes TCP once both crossed.
  if (!up_->close_sent()) up_->send_close(code, reason);
  notify();
}

void Session::on_ws_error(WsEndpoint&, uint16_t code, std::string_view reason) {
  TETHER_LOG(kInfo, "session %s: upstream %s broke the WebSocket protocol (%u: %.*s)", log_id_.c_str(),
             upstream_name_.c_str(), code, static_cast<int>(reason.size()), reason.data());
  set_closed(code, "upstream protocol error: " + std::string(reason), SessionEnd::kBackend);
  notify();
}

void Session::on_ws_gone(WsEndpoint&) {
  if (!close_) {
    TETHER_LOG(kInfo, "session %s: upstream %s closed the connection without a close frame", log_id_.c_str(),
               upstream_name_.c_str());
    set_closed(ws::close_code::kAbnormal, "upstream connection lost", SessionEnd::kUpstreamLost);
    notify();
  }
  maybe_retire();
}

void Session::on_ws_drained(WsEndpoint&) {}

SessionTable::SessionTable(Millis tombstone_life, size_t max_tombstones)
    : tombstone_life_(tombstone_life), max_tombstones_(max_tombstones) {}

Session* SessionTable::find(std::string_view id) const {
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : it->second;
}

bool SessionTable::recently_ended(std::string_view id) const {
  auto it = ended_.find(id);
  return it != ended_.end() && it->second > now_ms();
}

void SessionTable::insert(Session* s) {
  prune();
  live_.emplace(s->id(), s);
}

void SessionTable::remove(Session* s) {
  live_.erase(s->id());
  int64_t expiry = now_ms() + tombstone_life_.count();
  if (ended_.emplace(s->id(), expiry).second) ended_by_time_.emplace(expiry, s->id());
  prune();
}

// Drops expired tombstones, and the oldest ones beyond the bound.
void SessionTable::prune() {
  int64_t now = now_ms();
  while (!ended_by_time_.empty() &&
         (ended_by_time_.begin()->first <= now || ended_by_time_.size() > max_tombstones_)) {
    ended_.erase(ended_by_time_.begin()->second);
    ended_by_time_.erase(ended_by_time_.begin());
  }
}

Session& open_session(Core& core, const http::Request& req, const LocationConf& loc,
                      const std::string& peer_ip, const std::string& peer, Kind kind,
                      std::optional<std::string> key, ClientTable::Slot slot, Session::OpenDone done) {
  auto s = std::make_unique<Session>(core, core.sessions(), make_unique_id(core.sessions()), kind,
                                     loc.session, loc.max_message, peer);
  s->hold_client_slot(std::move(slot));
  Session& ref = core.adopt(std::move(s));
  ref.connect(*loc.pass->upstream, std::move(key), build_upstream_request(req, loc, peer_ip),
              loc.connect_timeout, loc.next_upstream_tries, std::move(done));
  return ref;
}

ClientTable::Slot take_session_slot(Core& core, HttpConnection& conn, const HeaderList& headers) {
  ClientTable::Slot slot =
      core.clients().take(ClientTable::kSession, conn.peer_ip(), core.config()->max_sessions_per_client);
  if (!slot) {
    stats().hit(Limit::kSessionsPerClient);
    TETHER_LOG(kWarn, "too many sessions (tether_max_sessions_per_client), client: %s", conn.peer().c_str());
    conn.respond_error(429, "too many sessions from this client address", headers);
  }
  return slot;
}

Session* find_or_answer(Core& core, HttpConnection& conn, std::string_view sid, const HeaderList& headers) {
  if (Session* s = core.sessions().find(sid)) return s;
  if (core.sessions().recently_ended(sid)) {
    conn.respond_error(410, "session closed", headers);
  } else {
    conn.respond_error(404, "unknown session", headers);
  }
  return nullptr;
}

bool parse_decimal(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string make_unique_id(const SessionTable& table) {
  for (;;) {
    std::string id = new_session_id();
    if (!table.find(id) && !table.recently_ended(id)) return id;
  }
}

}  // namespace tether::session
