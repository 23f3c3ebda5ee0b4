#pragma once
// Per-client-address accounting behind the connection and session limits (max_connections,
// max_connections_per_client, tether_max_sessions_per_client): who holds how many, so one
// address cannot take more than its share (slowloris, session floods). A Slot is the right to
// one connection or session; it is released when the Slot is destroyed, wherever the socket or
// session went (an HTTP connection hands its slot to the relay or stream it becomes).

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tether {

// What a limit hit is counted as in the stats.
enum class Limit {
  kConnections,           // max_connections (all clients)
  kConnectionsPerClient,  // max_connections_per_client
  kSessionsPerClient,     // tether_max_sessions_per_client
  kHeaderSize,            // client_max_header_size (431)
  kBodySize,              // client_max_body_size (413)
  kMessageSize,           // tether_max_message (1009, 413)
  kHeaderTimeout,         // client_header_timeout (408)
  kBodyTimeout,           // client_body_timeout (408)
  kSendTimeout,           // send_timeout: a client that reads nothing
  kIdleTimeout,           // tether_idle_timeout: a WebSocket with no frames either way
  kCount
};
std::string_view limit_name(Limit l);

class ClientTable {
 public:
  enum Kind { kConnection = 0, kSession = 1 };

  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept { *this = std::move(o); }
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { release(); }
    void release();
    explicit operator bool() const { return table_ != nullptr; }

   private:
    friend class ClientTable;
    ClientTable* table_ = nullptr;
    Kind kind_ = kConnection;
    std::string ip_;
  };

  // A slot of KIND for IP, or an empty one when IP already holds PER_CLIENT of them.
  Slot take(Kind kind, const std::string& ip, uint64_t per_client);
  uint64_t count(Kind kind, std::string_view ip) const;
  uint64_t total(Kind kind) const { return totals_[kind]; }
  // Addresses holding at least one slot.
  size_t clients() const { return by_ip_.size(); }

 private:
  void give_back(Kind kind, const std::string& ip);
  struct Counts {
    uint64_t n[2] = {};
  };
  std::unordered_map<std::string, Counts> by_ip_;
  uint64_t totals_[2] = {};
};

// The default of max_connections: what the fd limit allows when every client connection also
// has an upstream socket, less a reserve for listeners, logs and DNS.
uint64_t default_max_connections();

}  // namespace tether
