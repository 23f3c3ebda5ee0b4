#pragma once
// RAII owners for the C handles Tether uses.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <memory>

namespace tether {

template <auto F>
struct CFree {
  template <class T>
  void operator()(T* p) const noexcept {
    F(p);
  }
};

inline void evdns_base_free_all(evdns_base* b) {
  evdns_base_free(b, 1);
}

using EventBasePtr = std::unique_ptr<event_base, CFree<event_base_free>>;
using EventPtr = std::unique_ptr<event, CFree<event_free>>;
using BufferEventPtr = std::unique_ptr<bufferevent, CFree<bufferevent_free>>;
using ListenerPtr = std::unique_ptr<evconnlistener, CFree<evconnlistener_free>>;
using EvBufferPtr = std::unique_ptr<evbuffer, CFree<evbuffer_free>>;
using DnsBasePtr = std::unique_ptr<evdns_base, CFree<evdns_base_free_all>>;

}  // namespace tether
