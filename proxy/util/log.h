#pragma once
// Error log in nginx's format: "2026/11/29 06:30:00 [info] 4242#0: message".
// Peer faults log at info, Tether's own failures at error (STYLE.md 2.7).

#include <cstdio>
#include <string>
#include <string_view>

#include "proxy/util/result.h"

namespace tether::log {

enum class Level { kDebug, kInfo, kNotice, kWarn, kError, kCrit, kAlert, kEmerg };

// "info" -> kInfo; false for an unknown name.
bool parse_level(std::string_view name, Level& out);
std::string_view level_name(Level level);

// Sends the log to PATH ("stderr" for standard error) from LEVEL up. Reopens when called again.
Status open(const std::string& path, Level level);
Level threshold();
inline bool enabled(Level level) {
  return level >= threshold();
}

void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// The access log: PATH, or "" for off. Reopening (SIGUSR1) uses the same path.
Status open_access(const std::string& path);
bool access_enabled();
// One line: `CLIENT - [TIME] "REQUEST" STATUS REST`.
void access(std::string_view client, std::string_view request, int status, std::string_view rest);
// Reopens both logs at their paths (log rotation).
Status reopen();

}  // namespace tether::log

#define TETHER_LOG(level, ...)                                        \
  do {                                                                \
    if (::tether::log::enabled(::tether::log::Level::level)) {        \
      ::tether::log::write(::tether::log::Level::level, __VA_ARGS__); \
    }                                                                 \
  } while (0)
