// The process-wide steady clock behind the routing tables' default Clock argument.

#include "proxy/routing/clock.h"

namespace tether::routing {

const Clock& steady_clock() {
  // A function-local static: initialized on first use, so it is ready even for tables built
  // during static initialization elsewhere.
  static const SteadyClock clock;
  return clock;
}

}  // namespace tether::routing
