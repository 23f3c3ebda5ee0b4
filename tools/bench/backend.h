#pragma once
// `tether-loadgen backend`: a WebSocket server for benchmarks. echo sends every message back;
// push sends R timestamped messages per second to every connection; grip is a GRIP origin for
// Pushpin (plain requests are answered with a hold on a channel, WebSockets echoed).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/util/handles.h"
#include "proxy/util/result.h"
#include "proxy/ws/codec.h"
#include "tools/bench/options.h"

namespace tether::bench {

class Backend;

// One accepted connection: an HTTP request head, then WebSocket frames.
class BackendConn final : public ws::DecoderSink {
 public:
  BackendConn(Backend& backend, BufferEventPtr bev);
  void start();

  void handle_read();
  void handle_write();
  void handle_event(short what);
  // push: sends what is due by NOW on this connection's schedule.
  void push(uint64_t now);

  void on_message(ws::Opcode opcode, std::string& payload) override;
  void on_ping(std::string_view payload) override;
  void on_pong(std::string_view) override {}
  void on_close(uint16_t code, std::string_view reason) override;
  void on_error(uint16_t code, std::string_view reason) override;

  size_t index = 0;  // place in Backend::conns_
  bool is_open() const { return state_ == State::kOpen; }

 private:
  enum class State { kHead, kOpen, kClosing, kClosed };

  void read_head();
  // grip: answers a plain GET with a hold on the channel; the connection stays open for the next.
  void answer_grip(bool event_stream);
  void read_frames();
  void send_frame(ws::Opcode opcode, std::string_view payload);
  // Sends the close frame (or an HTTP answer) already written, then closes.
  void close_after_flush();
  void close_now();
  size_t output_length() const;

  Backend& backend_;
  BufferEventPtr bev_;
  State state_ = State::kHead;
  ws::Decoder decoder_{ws::Role::kServer};
  bool read_paused_ = false;  // echo back-pressure: the peer reads our output too slowly
  uint64_t push_start_ns_ = 0;
  uint64_t pushed_ = 0;  // messages due so far on the push schedule (sent or skipped)
  uint64_t seq_ = 0;     // messages sent on this connection: each push carries the next
};

class Backend {
 public:
  explicit Backend(const Options& options);
  ~Backend();
  // Binds 127.0.0.1:port and prints "PORT n" on stdout.
  Status listen();
  // Runs until SIGTERM/SIGINT (or --duration), then prints the JSON on stdout.
  Status run();

  // For connections.
  event_base* base() { return base_.get(); }
  const Options& options() const { return options_; }
  std::string& scratch() { return scratch_; }
  std::string& payload_scratch() { return payload_scratch_; }
  void handle_accept(int fd);
  void handle_push_tick();
  void handle_reap();
  void stop() { event_base_loopexit(base_.get(), nullptr); }
  // Takes CONN out of the live set; it is freed on a later loop iteration (never inside its own
  // callback).
  void remove(BackendConn* conn);

  uint64_t connections = 0;  // WebSocket handshakes completed
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t skipped = 0;  // push: sends skipped because the output buffer was over 1 MiB
  uint64_t behind = 0;   // push: sends dropped because the loop fell too far behind schedule
  uint64_t errors = 0;   // bad requests, protocol errors
  uint64_t holds = 0;    // grip: requests answered with a hold

 private:
  EventBasePtr base_;  // first: destroyed last
  Options options_;
  ListenerPtr listener_;
  EventPtr sigterm_, sigint_, stop_timer_, push_timer_, reaper_;
  std::vector<std::unique_ptr<BackendConn>> conns_;  // live, indexed by BackendConn::index
  std::vector<std::unique_ptr<BackendConn>> graveyard_;
  std::string scratch_;  // one frame being written
  std::string payload_scratch_;
  uint16_t port_ = 0;
};

}  // namespace tether::bench
