#pragma once
// The client side of tether-loadgen: Run paces the connections, keeps the clock of the phases
// (connect, warm-up, measure) and the figures; Client is one connection's base.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/util/handles.h"
#include "proxy/util/result.h"
#include "tools/bench/options.h"
#include "tools/bench/stats.h"

namespace tether::bench {

enum class ErrorKind {
  kConnect,    // socket, connect refused or failed
  kHandshake,  // an unexpected answer: not 101, not 200 text/event-stream, a bad accept key
  kTimeout,    // no connection or no answer within --connect-timeout
  kClosed,     // the server closed: EOF, a WebSocket close, tether-close, a session ended
  kProtocol,   // malformed frames or HTTP
};
constexpr int kErrorKinds = 5;

class Run;

// One load connection. Subclasses speak the protocol; the base owns the bufferevent, the
// connect and the accounting. A dead client stays in Run's list (its bufferevent is freed).
class Client {
 public:
  Client(Run& run, size_t id);
  virtual ~Client() = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Opens the connection and sends the first request.
  virtual void start() = 0;
  // Open loop (ws-rate, publish): sends a message stamped with its SCHEDULED time (or queues it).
  // False when this connection cannot take it.
  virtual bool send_at(uint64_t /*scheduled_ns*/) { return false; }
  bool is_open() const { return open_; }

  void handle_read_event();
  void handle_event(short what);

 protected:
  // A non-blocking connect to the target. False (the error counted) when it failed at once.
  bool open_connection();
  void write(std::string_view bytes);
  size_t output_length() const;
  // The connection is usable: counts it connected (once) and lifts the handshake timeouts.
  void mark_open();
  // Counts the error (unless the run is over) and closes for good. Safe inside callbacks.
  void fail(ErrorKind kind, std::string what);
  // Closes the connection without an error, to reconnect later (long polls after Connection: close).
  void drop_connection();

  virtual void handle_read() = 0;
  virtual void handle_connected() {}
  // The server closed the connection (after any data, which was read first).
  virtual void handle_eof();

  Run& run_;
  size_t id_;
  BufferEventPtr bev_;
  bool dead_ = false;
  uint64_t last_seq_ = 0;  // the highest sequence number received (payloads that carry one)

 private:
  void resolve();

  bool open_ = false;
  bool tcp_connected_ = false;
  bool resolved_ = false;  // counted as connected or failed during the connect phase
};

class Run {
 public:
  explicit Run(const Options& options);
  ~Run();
  // Connects, runs, prints the JSON. An error when no connection succeeded (the JSON is printed
  // anyway).
  Status execute();

  // For clients.
  event_base* base() { return base_.get(); }
  const Options& options() const { return options_; }
  bool over() const { return phase_ == Phase::kDone; }
  // A message arrived at RECV_NS; SEND_NS is the time it carried (0: none, no latency).
  void record(uint64_t recv_ns, uint64_t send_ns);
  // A message PAYLOAD arrived at RECV_NS: its latency from the send time it starts with, and,
  // when it carries a sequence number, the messages skipped since LAST_SEQ (one connection's
  // highest so far, updated here) count as lost, a repeat as a duplicate.
  void record_message(uint64_t recv_ns, std::string_view payload, uint64_t& last_seq);
  void count_error(ErrorKind kind, const std::string& what);
  void count_connected() { ++connected_; }
  void count_resolved() { ++resolved_; }
  void count_open(int delta) { open_ += delta; }
  void count_sent() { ++sent_; }
  void count_gap_reported(uint64_t n) { gap_reported_ += n; }
  void count_reconnect() { ++reconnects_; }
  void count_answer(uint64_t now) {
    if (in_window(now)) ++answers_;
  }
  // Frees BEV on a later loop iteration (never inside its own callback).
  void bury(BufferEventPtr bev);
  std::string& frame_scratch() { return frame_scratch_; }
  std::string& payload_scratch() { return payload_scratch_; }

  void handle_tick();
  void handle_rate_tick();
  void handle_reap();
  void handle_signal();

 private:
  enum class Phase { kConnecting, kRunning, kDone };

  void start_running(uint64_t now);
  void finish(uint64_t now);
  bool in_window(uint64_t t) const { return phase_ == Phase::kRunning && t >= warm_end_ns_ && t < end_ns_; }
  void progress(uint64_t now);
  Status report();

  EventBasePtr base_;  // first: destroyed last
  Options options_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<Client*> rate_clients_;  // ws-rate, publish: the clients the open-loop timer sends on
  EventPtr tick_, rate_tick_, reaper_, sigint_, sigterm_;
  std::vector<BufferEventPtr> graveyard_;
  std::string frame_scratch_, payload_scratch_;

  Phase phase_ = Phase::kConnecting;
  uint64_t begin_ns_ = 0;      // the first connection attempt
  uint64_t last_pace_ns_ = 0;  // connect pacing
  double connect_budget_ = 0;
  uint64_t last_start_ns_ = 0;  // the latest connection attempt
  uint64_t run_start_ns_ = 0;   // the connect phase ended
  uint64_t warm_end_ns_ = 0;    // figures count from here...
  uint64_t end_ns_ = 0;         // ...to here
  uint64_t finished_ns_ = 0;
  uint64_t next_progress_ns_ = 0;

  size_t started_ = 0;
  size_t resolved_ = 0;
  uint64_t connected_ = 0;
  int64_t open_ = 0;
  uint64_t errors_[kErrorKinds] = {};
  std::string first_error_;
  uint64_t messages_ = 0;      // in the window
  uint64_t all_messages_ = 0;  // warm-up included, for progress
  uint64_t sent_ = 0;
  uint64_t skipped_ = 0;       // ws-rate, publish: due sends with no open connection or a full buffer
  uint64_t lost_ = 0;          // in the window: sequence numbers skipped
  uint64_t duplicates_ = 0;    // in the window: sequence numbers received again
  uint64_t gap_reported_ = 0;  // sse: messages a tether-gap reported lost
  uint64_t reconnects_ = 0;
  uint64_t answers_ = 0;  // poll: answers to polls, in the window
  LatencyReservoir latency_;

  // ws-rate, publish: message k is due at run_start_ns_ + k / rate.
  uint64_t rate_k_ = 0;
  size_t rate_next_ = 0;
};

}  // namespace tether::bench
