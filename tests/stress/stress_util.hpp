// The stress suite's layer over the shared daemon harness (tests/common/daemon_harness.hpp): its scratch
// directories and its time limits, which allow for sanitizer builds several times slower than Release.
#pragma once

#include <sys/resource.h>

#include <cstring>
#include <string>

#include "../common/daemon_harness.hpp"

namespace veil::stress {

using namespace veil::daemon_harness;  // NOLINT: the whole harness is this suite's vocabulary

struct Scratch : daemon_harness::Scratch {
  explicit Scratch(std::string_view passphrase, const std::string& tmpfs_opts = "")
      : daemon_harness::Scratch("stress", passphrase, tmpfs_opts) {}
};

constexpr DaemonLimits kStressDaemonLimits{std::chrono::seconds(kSanitized ? 60 : 20),
                                           std::chrono::seconds(kSanitized ? 120 : 30)};

struct Daemon : daemon_harness::Daemon {
  explicit Daemon(const Scratch& s, const std::string& passfile = "")
      : daemon_harness::Daemon(s, kStressDaemonLimits, passfile) {}
};

inline int in_child(const std::function<int()>& fn, int seconds = kSanitized ? 60 : 15) {
  return run_in_child(fn, seconds);
}

}  // namespace veil::stress
