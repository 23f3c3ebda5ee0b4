#pragma once
// The whole plug contract between the core and a module (nginx's module descriptor, Envoy's
// per-request factory). A module declares its directives, keeps its settings in a ModuleConf
// per location (inherited main -> server -> location through merge), and claims requests routed
// to a location. A module never reaches into another module.

#include <memory>
#include <span>
#include <string_view>

#include "conf/parser.h"
#include "conf/schema.h"
#include "proxy/util/result.h"

namespace tether {

class Core;
class HttpConnection;
struct LocationConf;
namespace http {
struct Request;
}

// A module's settings for one scope. Fields start unset (std::optional) and are filled by
// merge from the enclosing scope, then by the module's defaults.
struct ModuleConf {
  virtual ~ModuleConf() = default;
};

// What a module sees of a request routed to one of its locations.
struct RequestContext {
  Core& core;
  HttpConnection& conn;
  http::Request& request;
  const LocationConf& location;
};

// Everything the config builder resolves after the whole file is read (upstream names, say).
struct ConfigResolver;

struct Module {
  std::string_view name;
  std::span<const conf::DirectiveSpec> directives;
  // A fresh, all-unset conf for any scope.
  std::unique_ptr<ModuleConf> (*create_conf)();
  // Applies one of this module's directives (already checked for scope and argument count).
  // Errors name the directive and file:line (conf::invalid_value, conf::error_at).
  Status (*set)(const conf::Node& node, ModuleConf& conf);
  // Fills what CHILD left unset from PARENT. When called for a location, then with
  // resolver != nullptr, the module also applies its defaults and checks cross-references.
  Status (*merge)(const ModuleConf& parent, ModuleConf& child, const ConfigResolver* resolver);
  // Called for each request routed to a location; returns true if the module took the request
  // (it then answers through ctx.conn, now or later), false to let the next module try.
  bool (*handle)(RequestContext& ctx, const ModuleConf& conf);
};

template <class T>
const T& as(const ModuleConf& c) {
  return static_cast<const T&>(c);
}
template <class T>
T& as(ModuleConf& c) {
  return static_cast<T&>(c);
}

}  // namespace tether
