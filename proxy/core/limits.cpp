#include "proxy/core/limits.h"

#include <sys/resource.h>

#include <utility>

namespace tether {

std::string_view limit_name(Limit l) {
  switch (l) {
    case Limit::kConnections:
      return "connections";
    case Limit::kConnectionsPerClient:
      return "connections_per_client";
    case Limit::kSessionsPerClient:
      return "sessions_per_client";
    case Limit::kHeaderSize:
      return "header_size";
    case Limit::kBodySize:
      return "body_size";
    case Limit::kMessageSize:
      return "message_size";
    case Limit::kHeaderTimeout:
      return "header_timeout";
    case Limit::kBodyTimeout:
      return "body_timeout";
    case Limit::kSendTimeout:
      return "send_timeout";
    case Limit::kIdleTimeout:
      return "idle_timeout";
    case Limit::kCount:
      break;
  }
  return "unknown";
}

ClientTable::Slot& ClientTable::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    release();
    table_ = std::exchange(o.table_, nullptr);
    kind_ = o.kind_;
    ip_ = std::move(o.ip_);
  }
  return *this;
}

void ClientTable::Slot::release() {
  if (ClientTable* t = std::exchange(table_, nullptr)) t->give_back(kind_, ip_);
}

ClientTable::Slot ClientTable::take(Kind kind, const std::string& ip, uint64_t per_client) {
  Slot slot;
  auto [it, fresh] = by_ip_.try_emplace(ip);
  if (it->second.n[kind] >= per_client) {
    if (fresh) by_ip_.erase(it);
    return slot;
  }
  ++it->second.n[kind];
  ++totals_[kind];
  slot.table_ = this;
  slot.kind_ = kind;
  slot.ip_ = ip;
  return slot;
}

uint64_t ClientTable::count(Kind kind, std::string_view ip) const {
  auto it = by_ip_.find(std::string(ip));
  return it == by_ip_.end() ? 0 : it->second.n[kind];
}

void ClientTable::give_back(Kind kind, const std::string& ip) {
  auto it = by_ip_.find(ip);
  if (it == by_ip_.end() || it->second.n[kind] == 0) return;
  --it->second.n[kind];
  --totals_[kind];
  if (it->second.n[0] == 0 && it->second.n[1] == 0) by_ip_.erase(it);
}

uint64_t default_max_connections() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 10'000;
  uint64_t fds = rl.rlim_cur;
  return fds > 128 ? (fds - 64) / 2 : 32;
}

}  // namespace tether
