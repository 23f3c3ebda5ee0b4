#include "proxy/util/log.h"

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <ctime>

namespace tether::log {
namespace {

constexpr std::string_view kNames[] = {"debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"};

FILE* g_out = stderr;
bool g_owned = false;
Level g_level = Level::kInfo;

}  // namespace

bool parse_level(std::string_view name, Level& out) {
  for (size_t i = 0; i < std::size(kNames); ++i) {
    if (kNames[i] == name) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

std::string_view level_name(Level level) { return kNames[static_cast<size_t>(level)]; }

Status open(const std::string& path, Level level) {
  FILE* f = stderr;
  if (path != "stderr") {
    f = std::fopen(path.c_str(), "a");
    if (!f) {
      return Error{Errc::kIo, "open() \"" + path + "\" failed (" + std::to_string(errno) + ": " +
                                  std::strerror(errno) + ")"};
    }
    std::setvbuf(f, nullptr, _IOLBF, 0);
  }
  if (g_owned) std::fclose(g_out);
  g_out = f;
  g_owned = f != stderr;
  g_level = level;
  return ok_status();
}

Level threshold() { return g_level; }

void write(Level level, const char* fmt, ...) {
  char line[4096];
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  int n = static_cast<int>(strftime(line, sizeof line, "%Y/%m/%d %H:%M:%S", &tm));
  n += snprintf(line + n, sizeof line - n, " [%s] %d#0: ", kNames[static_cast<size_t>(level)].data(),
                static_cast<int>(getpid()));
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = m < 0 ? n : std::min(sizeof line - 2, static_cast<size_t>(n + m));
  line[len++] = '\n';
  fwrite(line, 1, len, g_out);
  fflush(g_out);
}

}  // namespace tether::log
