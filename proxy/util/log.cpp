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
std::string g_path = "stderr";
FILE* g_access = nullptr;
std::string g_access_path;

Result<FILE*> open_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "a");
  if (!f) {
    return Error{Errc::kIo, "open() \"" + path + "\" failed (" + std::to_string(errno) + ": " +
                                std::strerror(errno) + ")"};
  }
  std::setvbuf(f, nullptr, _IOLBF, 0);
  return f;
}

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

std::string_view level_name(Level level) {
  return kNames[static_cast<size_t>(level)];
}

Status open(const std::string& path, Level level) {
  FILE* f = stderr;
  if (path != "stderr") {
    auto r = open_file(path);
    if (!r.ok()) return r.error();
    f = *r;
  }
  if (g_owned) std::fclose(g_out);
  g_out = f;
  g_owned = f != stderr;
  g_level = level;
  g_path = path;
  return ok_status();
}

Status open_access(const std::string& path) {
  FILE* f = nullptr;
  if (!path.empty()) {
    auto r = open_file(path);
    if (!r.ok()) return r.error();
    f = *r;
  }
  if (g_access) std::fclose(g_access);
  g_access = f;
  g_access_path = path;
  return ok_status();
}

bool access_enabled() {
  return g_access != nullptr;
}

void access(std::string_view client, std::string_view request, int status, std::string_view rest) {
  if (!g_access) return;
  char when[64];
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
  fprintf(g_access, "%.*s - [%s] \"%.*s\" %d %.*s\n", static_cast<int>(client.size()), client.data(), when,
          static_cast<int>(request.size()), request.data(), status, static_cast<int>(rest.size()),
          rest.data());
}

Status reopen() {
  Status a = open(g_path, g_level);
  Status b = open_access(g_access_path);
  return a.ok() ? b : a;
}

Level threshold() {
  return g_level;
}

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
