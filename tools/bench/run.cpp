#include "tools/bench/run.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "tools/bench/clients.h"
#include "tools/bench/json_out.h"

namespace tether::bench {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ull;
constexpr timeval kTick{0, 10'000};          // connect pacing, phases, progress
constexpr uint64_t kMinRateGapNs = 100'000;  // ws-rate: at most 10,000 wake-ups a second
constexpr int kErrorsShown = 5;              // the first errors go to stderr as they happen

void on_up_read(bufferevent*, void* ctx) noexcept {
  static_cast<Client*>(ctx)->handle_read_event();
}
void on_up_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<Client*>(ctx)->handle_event(what);
}
void on_tick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Run*>(ctx)->handle_tick();
}
void on_rate_tick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Run*>(ctx)->handle_rate_tick();
}
void on_reap(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Run*>(ctx)->handle_reap();
}
void on_signal(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Run*>(ctx)->handle_signal();
}

timeval to_timeval(double seconds) {
  double whole = std::floor(seconds);
  return timeval{static_cast<time_t>(whole), static_cast<suseconds_t>((seconds - whole) * 1e6)};
}

uint64_t to_ns(double seconds) {
  return static_cast<uint64_t>(seconds * 1e9);
}

const char* error_kind_name(int kind) {
  static const char* const kNames[kErrorKinds] = {"connect", "handshake", "timeout", "closed", "protocol"};
  return kNames[kind];
}

json_t* json_count(uint64_t n) {
  return json_integer(static_cast<json_int_t>(n));
}

}  // namespace

// ---- Client -------------------------------------------------------------------------------

Client::Client(Run& run, size_t id) : run_(run), id_(id) {}

void Client::handle_read_event() {
  if (!dead_ && bev_) handle_read();
}

void Client::handle_event(short what) {
  if (dead_) return;
  if (what & BEV_EVENT_CONNECTED) {
    tcp_connected_ = true;
    handle_connected();
    return;
  }
  if (what & BEV_EVENT_TIMEOUT) {
    fail(ErrorKind::kTimeout, open_ ? "a write timed out" : "no answer within the connect timeout");
    return;
  }
  if (what & BEV_EVENT_EOF) {
    handle_eof();
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    std::string why = evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
    if (!tcp_connected_) {
      fail(ErrorKind::kConnect, "connect: " + why);
    } else {
      fail(ErrorKind::kClosed, "connection error: " + why);
    }
  }
}

void Client::handle_eof() {
  fail(ErrorKind::kClosed, "server closed the connection");
}

bool Client::open_connection() {
  const Url& url = run_.options().url;
  int fd = socket(url.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(ErrorKind::kConnect, std::string("socket: ") + std::strerror(errno));
    return false;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  BufferEventPtr bev(
      bufferevent_socket_new(run_.base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
  if (!bev) {
    evutil_closesocket(fd);  // on failure the fd is still ours
    fail(ErrorKind::kConnect, "bufferevent_socket_new failed");
    return false;
  }
  bufferevent_setcb(bev.get(), on_up_read, nullptr, on_up_event, this);
  // Until the connection is usable both ways are timed; a reconnect of an open long-poll loop
  // only times writes (its poll is held on purpose).
  timeval tv = to_timeval(run_.options().connect_timeout_s);
  bufferevent_set_timeouts(bev.get(), open_ ? nullptr : &tv, &tv);
  tcp_connected_ = false;
  if (bufferevent_socket_connect(bev.get(), reinterpret_cast<const sockaddr*>(&url.addr),
                                 static_cast<int>(url.addr_len)) < 0) {
    // Not inside one of this bufferevent's callbacks: freeing it here (with the fd) is safe.
    fail(ErrorKind::kConnect,
         "connect: " + std::string(evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
    return false;
  }
  bufferevent_enable(bev.get(), EV_READ | EV_WRITE);
  bev_ = std::move(bev);
  return true;
}

void Client::write(std::string_view bytes) {
  if (bev_) bufferevent_write(bev_.get(), bytes.data(), bytes.size());
}

size_t Client::output_length() const {
  return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_.get())) : 0;
}

void Client::resolve() {
  if (resolved_) return;
  resolved_ = true;
  run_.count_resolved();
}

void Client::mark_open() {
  if (open_ || dead_) return;
  open_ = true;
  run_.count_open(+1);
  run_.count_connected();
  resolve();
  if (bev_) bufferevent_set_timeouts(bev_.get(), nullptr, nullptr);
}

void Client::fail(ErrorKind kind, std::string what) {
  if (dead_) return;
  dead_ = true;
  if (open_) {
    open_ = false;
    run_.count_open(-1);
  }
  resolve();
  if (!run_.over()) run_.count_error(kind, "connection " + std::to_string(id_) + ": " + what);
  drop_connection();
}

void Client::drop_connection() {
  if (!bev_) return;
  bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  run_.bury(std::move(bev_));
}

// ---- Run ----------------------------------------------------------------------------------

Run::Run(const Options& options) : base_(make_precise_base()), options_(options) {}

Run::~Run() {
  clients_.clear();  // their bufferevents first, while the base lives
  graveyard_.clear();
}

Status Run::execute() {
  if (!base_) return Error{Errc::kResource, "event_base_new failed"};
  size_t n = static_cast<size_t>(options_.connections);
  clients_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::unique_ptr<Client> c;
    switch (options_.mode) {
      case Mode::kWsEcho:
        c = std::make_unique<WsClient>(*this, i, WsClient::Behaviour::kEcho);
        break;
      case Mode::kWsRate:
        c = std::make_unique<WsClient>(*this, i, WsClient::Behaviour::kRate);
        rate_clients_.push_back(c.get());
        break;
      case Mode::kPublish:
        c = std::make_unique<PublishClient>(*this, i);
        rate_clients_.push_back(c.get());
        break;
      case Mode::kWsSub:
        c = std::make_unique<WsClient>(*this, i, WsClient::Behaviour::kReceive);
        break;
      case Mode::kSse:
        c = std::make_unique<SseClient>(*this, i);
        break;
      case Mode::kPoll:
        c = std::make_unique<PollClient>(*this, i, options_.protocol);
        break;
      case Mode::kIdle:
        switch (options_.kind) {
          case Kind::kWs:
            c = std::make_unique<WsClient>(*this, i, WsClient::Behaviour::kReceive);
            break;
          case Kind::kSse:
            c = std::make_unique<SseClient>(*this, i);
            break;
          case Kind::kPoll:
            c = std::make_unique<PollClient>(*this, i, options_.protocol);
            break;
        }
        break;
      case Mode::kBackend:
        return Error{Errc::kInvalid, "backend is not a client mode"};
    }
    clients_.push_back(std::move(c));
  }

  tick_.reset(event_new(base_.get(), -1, EV_PERSIST, on_tick, this));
  reaper_.reset(event_new(base_.get(), -1, 0, on_reap, this));
  sigint_.reset(evsignal_new(base_.get(), SIGINT, on_signal, this));
  sigterm_.reset(evsignal_new(base_.get(), SIGTERM, on_signal, this));
  if (!tick_ || !reaper_ || !sigint_ || !sigterm_) return Error{Errc::kResource, "event_new failed"};
  event_add(tick_.get(), &kTick);
  event_add(sigint_.get(), nullptr);
  event_add(sigterm_.get(), nullptr);

  uint64_t now = now_ns();
  begin_ns_ = last_pace_ns_ = now;
  next_progress_ns_ = now + kSecond;
  connect_budget_ = 1;  // the first connection at once
  handle_tick();
  if (phase_ != Phase::kDone) event_base_dispatch(base_.get());
  return report();
}

void Run::handle_tick() {
  if (phase_ == Phase::kDone) return;
  uint64_t now = now_ns();
  size_t n = clients_.size();
  if (started_ < n) {
    connect_budget_ += static_cast<double>(now - last_pace_ns_) * 1e-9 * options_.connect_rate;
    last_pace_ns_ = now;
    while (connect_budget_ >= 1 && started_ < n) {
      connect_budget_ -= 1;
      last_start_ns_ = now;
      clients_[started_++]->start();
    }
  }
  if (phase_ == Phase::kConnecting && started_ == n &&
      (resolved_ == n || now >= last_start_ns_ + to_ns(options_.connect_timeout_s))) {
    start_running(now);
  }
  if (phase_ == Phase::kRunning && now >= end_ns_) {
    finish(now);
    return;
  }
  if (now >= next_progress_ns_) {
    progress(now);
    next_progress_ns_ += kSecond;
  }
}

void Run::start_running(uint64_t now) {
  phase_ = Phase::kRunning;
  run_start_ns_ = now;
  warm_end_ns_ = now + to_ns(options_.warmup_s);
  end_ns_ = now + to_ns(options_.mode == Mode::kIdle ? options_.hold_s : options_.duration_s);
  if (!options_.quiet) {
    std::fprintf(stderr, "tether-loadgen: connect phase done in %.2fs: %llu of %zu connected\n",
                 static_cast<double>(now - begin_ns_) * 1e-9, static_cast<unsigned long long>(connected_),
                 clients_.size());
  }
  if (options_.mode == Mode::kWsRate || options_.mode == Mode::kPublish) {
    rate_tick_.reset(evtimer_new(base_.get(), on_rate_tick, this));
    if (rate_tick_) handle_rate_tick();
  }
}

void Run::handle_rate_tick() {
  if (phase_ != Phase::kRunning || rate_clients_.empty()) return;
  uint64_t now = now_ns();
  double interval_ns = 1e9 / options_.rate;
  // Open loop: everything due is sent, however late (the latency then shows the stall), in
  // slices so the loop keeps reading echoes.
  for (int i = 0; i < 100'000; ++i) {
    uint64_t scheduled = run_start_ns_ + static_cast<uint64_t>(static_cast<double>(rate_k_) * interval_ns);
    if (scheduled > now) break;
    ++rate_k_;
    Client* target = nullptr;
    for (size_t tries = 0; tries < rate_clients_.size() && !target; ++tries) {
      Client* c = rate_clients_[rate_next_];
      rate_next_ = (rate_next_ + 1) % rate_clients_.size();
      if (c->is_open()) target = c;
    }
    if (!target || !target->send_at(scheduled)) ++skipped_;
  }
  // Wake up when the next message is due (a one-shot timer, precise with the base's timerfd),
  // but not more often than every kMinRateGapNs: a high rate sends small batches.
  uint64_t next = run_start_ns_ + static_cast<uint64_t>(static_cast<double>(rate_k_) * interval_ns);
  uint64_t after = now_ns();
  uint64_t wait = next > after ? std::max(next - after, kMinRateGapNs) : kMinRateGapNs;
  timeval tv{static_cast<time_t>(wait / kSecond), static_cast<suseconds_t>((wait % kSecond) / 1000)};
  evtimer_add(rate_tick_.get(), &tv);
}

void Run::finish(uint64_t now) {
  if (phase_ == Phase::kDone) return;
  phase_ = Phase::kDone;
  finished_ns_ = now;
  event_base_loopexit(base_.get(), nullptr);
}

void Run::handle_signal() {
  uint64_t now = now_ns();
  if (!options_.quiet) std::fprintf(stderr, "tether-loadgen: interrupted, reporting what was measured\n");
  if (phase_ == Phase::kRunning) end_ns_ = std::min(end_ns_, now);
  finish(now);
}

void Run::handle_reap() {
  graveyard_.clear();
}

void Run::bury(BufferEventPtr bev) {
  if (!bev) return;
  graveyard_.push_back(std::move(bev));
  event_active(reaper_.get(), EV_TIMEOUT, 0);
}

void Run::record(uint64_t recv_ns, uint64_t send_ns) {
  ++all_messages_;
  if (phase_ != Phase::kRunning || recv_ns < warm_end_ns_ || recv_ns >= end_ns_) return;
  ++messages_;
  if (send_ns != 0) latency_.add(recv_ns >= send_ns ? recv_ns - send_ns : 0);
}

void Run::record_message(uint64_t recv_ns, std::string_view payload, uint64_t& last_seq) {
  uint64_t seq = parse_seq(payload);
  if (seq != 0) {
    if (last_seq != 0 && in_window(recv_ns)) {
      if (seq > last_seq + 1) {
        lost_ += seq - last_seq - 1;
      } else if (seq <= last_seq) {
        ++duplicates_;
      }
    }
    last_seq = std::max(last_seq, seq);
  }
  record(recv_ns, parse_send_time(payload, recv_ns));
}

void Run::count_error(ErrorKind kind, const std::string& what) {
  int k = static_cast<int>(kind);
  ++errors_[k];
  uint64_t total = 0;
  for (uint64_t e : errors_) total += e;
  if (first_error_.empty()) first_error_ = what;
  if (!options_.quiet && total <= kErrorsShown) {
    std::fprintf(stderr, "tether-loadgen: %s error: %s%s\n", error_kind_name(k), what.c_str(),
                 total == kErrorsShown ? " (further errors are only counted)" : "");
  }
}

void Run::progress(uint64_t now) {
  if (options_.quiet) return;
  const char* phase = "connecting";
  if (phase_ == Phase::kRunning) {
    phase = options_.mode == Mode::kIdle ? "holding" : now < warm_end_ns_ ? "warm-up" : "measuring";
  }
  uint64_t errors = 0;
  for (uint64_t e : errors_) errors += e;
  std::fprintf(stderr,
               "tether-loadgen: %6.1fs %-10s connected=%llu/%zu open=%lld errors=%llu messages=%llu\n",
               static_cast<double>(now - begin_ns_) * 1e-9, phase,
               static_cast<unsigned long long>(connected_), clients_.size(), static_cast<long long>(open_),
               static_cast<unsigned long long>(errors), static_cast<unsigned long long>(all_messages_));
}

Status Run::report() {
  uint64_t errors = 0;
  for (uint64_t e : errors_) errors += e;
  double window_s = 0;
  if (phase_ != Phase::kConnecting && run_start_ns_ != 0) {
    uint64_t stop = std::min(finished_ns_, end_ns_);
    window_s = stop > warm_end_ns_ ? static_cast<double>(stop - warm_end_ns_) * 1e-9 : 0;
  }
  Percentiles p = latency_.percentiles();

  JsonPtr out(json_object());
  json_t* o = out.get();
  json_object_set_new(o, "mode", json_string(mode_name(options_.mode)));
  if (options_.mode == Mode::kIdle) json_object_set_new(o, "kind", json_string(kind_name(options_.kind)));
  if (options_.mode == Mode::kPoll || (options_.mode == Mode::kIdle && options_.kind == Kind::kPoll)) {
    json_object_set_new(o, "protocol", json_string(protocol_name(options_.protocol)));
  }
  json_object_set_new(o, "url", json_string(options_.url.text.c_str()));
  json_object_set_new(o, "connections", json_count(clients_.size()));
  json_object_set_new(o, "connected", json_count(connected_));
  json_object_set_new(o, "open_at_end", json_integer(static_cast<json_int_t>(std::max<int64_t>(open_, 0))));
  json_object_set_new(o, "errors", json_count(errors));
  json_t* kinds = json_object();
  for (int k = 0; k < kErrorKinds; ++k)
    json_object_set_new(kinds, error_kind_name(k), json_count(errors_[k]));
  json_object_set_new(o, "error_kinds", kinds);
  if (!first_error_.empty()) json_object_set_new(o, "first_error", json_string(first_error_.c_str()));
  json_object_set_new(o, "messages", json_count(messages_));
  json_object_set_new(o, "duration_s", json_real3(window_s));
  json_object_set_new(o, "msgs_per_s",
                      json_real3(window_s > 0 ? static_cast<double>(messages_) / window_s : 0));
  json_t* lat = json_object();
  if (p.count > 0) {
    json_object_set_new(lat, "p50", json_real3(p.p50_us));
    json_object_set_new(lat, "p90", json_real3(p.p90_us));
    json_object_set_new(lat, "p99", json_real3(p.p99_us));
    json_object_set_new(lat, "max", json_real3(p.max_us));
  } else {
    for (const char* k : {"p50", "p90", "p99", "max"}) json_object_set_new(lat, k, json_null());
  }
  json_object_set_new(lat, "count", json_count(p.count));
  json_object_set_new(o, "latency_us", lat);
  bool open_loop = options_.mode == Mode::kWsRate || options_.mode == Mode::kPublish;
  bool sse = options_.mode == Mode::kSse || (options_.mode == Mode::kIdle && options_.kind == Kind::kSse);
  bool poll = options_.mode == Mode::kPoll || (options_.mode == Mode::kIdle && options_.kind == Kind::kPoll);
  if (options_.mode == Mode::kWsEcho || open_loop) json_object_set_new(o, "sent", json_count(sent_));
  if (open_loop) {
    json_object_set_new(o, "rate", json_real3(options_.rate));
    json_object_set_new(o, "skipped", json_count(skipped_));
  }
  if (sse || poll || options_.mode == Mode::kWsSub || options_.mode == Mode::kIdle) {
    json_object_set_new(o, "lost", json_count(lost_));
    json_object_set_new(o, "duplicates", json_count(duplicates_));
  }
  if (sse) json_object_set_new(o, "gap_reported", json_count(gap_reported_));
  if (poll) {
    json_object_set_new(o, "answers", json_count(answers_));
    json_object_set_new(o, "answers_per_s",
                        json_real3(window_s > 0 ? static_cast<double>(answers_) / window_s : 0));
  }
  if (poll || options_.mode == Mode::kPublish) json_object_set_new(o, "reconnects", json_count(reconnects_));
  if (options_.mode == Mode::kIdle) {
    json_object_set_new(o, "hold_s", json_real3(window_s));
  } else {
    json_object_set_new(o, "warmup_s", json_real3(options_.warmup_s));
  }
  json_object_set_new(o, "connect_s",
                      json_real3(run_start_ns_ ? static_cast<double>(run_start_ns_ - begin_ns_) * 1e-9 : 0));
  if (options_.mode == Mode::kWsEcho || open_loop) json_object_set_new(o, "size", json_count(options_.size));
  print_json(o);

  std::string why = first_error_.empty() ? std::string() : " (" + first_error_ + ")";
  if (connected_ == 0) return Error{Errc::kUpstream, "no connection succeeded" + why};
  if (open_ <= 0 && phase_ == Phase::kDone && finished_ns_ >= end_ns_) {
    return Error{Errc::kUpstream, "every connection was lost before the end" + why};
  }
  return ok_status();
}

}  // namespace tether::bench
