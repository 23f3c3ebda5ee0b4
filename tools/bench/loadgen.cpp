// tether-loadgen: the load generator of Tether's benchmarks. One event loop, one thread; prints
// one JSON object on stdout at the end, progress on stderr. See usage() in options.cpp.

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <string_view>

#include "tools/bench/backend.h"
#include "tools/bench/options.h"
#include "tools/bench/run.h"

namespace {

// Each connection is a descriptor; the machine allows up to the hard limit (20,000) per process.
rlim_t raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tether::bench;
  if (argc >= 2 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
    std::fputs(usage(), stdout);
    return 0;
  }
  auto options = parse_options(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "tether-loadgen: %s (tether-loadgen --help for usage)\n",
                 options.error().what.c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);  // a peer that resets: the write fails with EPIPE instead
  rlim_t limit = raise_fd_limit();
  if (options->mode != Mode::kBackend && limit != RLIM_INFINITY &&
      static_cast<rlim_t>(options->connections) + 32 > limit) {
    std::fprintf(stderr, "tether-loadgen: %d connections need more descriptors than the limit (%llu)\n",
                 options->connections, static_cast<unsigned long long>(limit));
    return 1;
  }

  if (options->mode == Mode::kBackend) {
    Backend backend(*options);
    tether::Status st = backend.listen();
    if (st.ok()) st = backend.run();
    if (!st.ok()) {
      std::fprintf(stderr, "tether-loadgen: %s\n", st.error().what.c_str());
      return 1;
    }
    return 0;
  }
  Run run(*options);
  tether::Status st = run.execute();
  if (!st.ok()) {
    std::fprintf(stderr, "tether-loadgen: %s\n", st.error().what.c_str());
    return 1;
  }
  return 0;
}
