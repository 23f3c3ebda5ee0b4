#pragma once
#include "module/module.h"

namespace tether::sse {
// GET with Accept: text/event-stream (or tether-transport=sse): a session's messages as an
// event stream, resumable with Last-Event-ID. See DESIGN.md "SSE".
extern const Module kModule;
}  // namespace tether::sse
