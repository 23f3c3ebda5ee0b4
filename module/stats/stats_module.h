#pragma once
#include "module/module.h"

namespace tether::stats_module {
// `tether_stats;` in a location: GET answers the core's figures as JSON (jansson), or as
// Prometheus text with ?format=prometheus. Guard it with allow/deny.
extern const Module kModule;
}  // namespace tether::stats_module
