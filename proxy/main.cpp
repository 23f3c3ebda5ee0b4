// tether: the edge proxy's command line.

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "module/modules.h"
#include "proxy/core/config.h"
#include "proxy/core/core.h"
#include "proxy/util/log.h"

namespace {

constexpr const char* kUsage =
    "Usage: tether [-h] [-v] [-t] [-s SIGNAL] [-c FILE]\n"
    "\n"
    "Options:\n"
    "  -h         this help\n"
    "  -v         show the version and exit\n"
    "  -t         check the configuration and exit\n"
    "  -s SIGNAL  send SIGNAL to the running tether (its `pid` file): reload, reopen,\n"
    "             stop (fast, 1001 to everyone) or quit (graceful)\n"
    "  -c FILE    use configuration FILE (default: " TETHER_DEFAULT_CONF ")\n";

// -s: the running tether is the one whose pid file the config names.
int send_signal(const tether::Config& cfg, const std::string& file, const std::string& name) {
  if (cfg.pid_file.empty()) {
    std::fprintf(stderr, "tether: [error] no \"pid\" directive in %s: cannot find the running tether\n",
                 file.c_str());
    return 1;
  }
  FILE* f = std::fopen(cfg.pid_file.c_str(), "r");
  long pid = 0;
  if (!f || std::fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
    std::fprintf(stderr, "tether: [error] invalid PID in \"%s\"%s\n", cfg.pid_file.c_str(),
                 f ? "" : " (cannot open it)");
    if (f) std::fclose(f);
    return 1;
  }
  std::fclose(f);
  int sig = name == "reload" ? SIGHUP : name == "reopen" ? SIGUSR1 : name == "stop" ? SIGTERM : SIGQUIT;
  if (kill(static_cast<pid_t>(pid), sig) != 0) {
    std::fprintf(stderr, "tether: [error] kill(%ld, %s) failed (%d: %s)\n", pid, strsignal(sig), errno,
                 std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string file = TETHER_DEFAULT_CONF;
  bool test_only = false;
  std::string signal_name;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-v" || a == "--version") {
      std::printf("tether version %s\n", TETHER_VERSION);
      return 0;
    } else if (a == "-t") {
      test_only = true;
    } else if (a == "-s" && i + 1 < argc) {
      signal_name = argv[++i];
      if (signal_name != "reload" && signal_name != "reopen" && signal_name != "stop" &&
          signal_name != "quit") {
        std::fprintf(stderr, "tether: invalid signal \"%s\" (reload, reopen, stop or quit)\n",
                     signal_name.c_str());
        return 1;
      }
    } else if (a == "-c" && i + 1 < argc) {
      file = argv[++i];
    } else {
      std::fprintf(stderr, "tether: invalid option \"%s\"\n%s", argv[i], kUsage);
      return 1;
    }
  }

  auto config = tether::load_config(file, tether::all_modules());
  if (!config.ok()) {
    std::fprintf(stderr, "tether: [emerg] %s\n", config.error().what.c_str());
    if (test_only) std::fprintf(stderr, "tether: configuration file %s test failed\n", file.c_str());
    return 1;
  }
  if (!signal_name.empty()) return send_signal(*config.value(), file, signal_name);
  if (test_only) {
    std::fprintf(stderr, "tether: the configuration file %s syntax is ok\n", file.c_str());
    std::fprintf(stderr, "tether: configuration file %s test is successful\n", file.c_str());
    return 0;
  }

  std::signal(SIGPIPE, SIG_IGN);
  const auto& cfg = *config.value();
  if (auto st = tether::log::open(cfg.error_log, cfg.error_log_level); !st.ok()) {
    std::fprintf(stderr, "tether: [emerg] %s\n", st.error().what.c_str());
    return 1;
  }
  tether::Core core(config.value());
  if (auto st = core.start(); !st.ok()) {
    TETHER_LOG(kEmerg, "%s", st.error().what.c_str());
    return 1;
  }
  TETHER_LOG(kNotice, "tether %s started", TETHER_VERSION);
  int code = core.run();
  TETHER_LOG(kNotice, "exit");
  return code;
}
