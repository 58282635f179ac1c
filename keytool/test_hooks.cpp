// Test-only fault injection and synchronisation, driven by environment variables (never set in normal use):
//   VEILKEY_CRASH_AT=<stage>       _exit(99) when <stage> is reached, as if the machine lost power there
//   VEILKEY_TEST_EVENT_FD=<n>      write "<stage>\n" to descriptor n at every stage reached
//   VEILKEY_TEST_PAUSE_AT=<stage>  at <stage>, block until one byte arrives on VEILKEY_TEST_RESUME_FD=<m>
// Stages, in order: lock-contended (another veilkey holds the lock), locked, unlocked (the secret opened a slot),
// after-temp (temp config fsynced, not renamed), after-rename (renamed, dir not fsynced), saved.
// The hooks can only stop or delay this process; they cannot change what is written.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "keytool.hpp"
#include "veilfs/util/io.hpp"

namespace veil::keytool {

namespace {

struct Hooks {
  const char* crash_at = nullptr;
  const char* pause_at = nullptr;
  int event_fd = -1;
  int resume_fd = -1;
};
Hooks g_hooks;

int fd_from_env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : -1;
}

void io_hook(const char* stage) { test_point(stage); }

}  // namespace

void install_test_hooks() {
  g_hooks.crash_at = std::getenv("VEILKEY_CRASH_AT");
  g_hooks.pause_at = std::getenv("VEILKEY_TEST_PAUSE_AT");
  g_hooks.event_fd = fd_from_env("VEILKEY_TEST_EVENT_FD");
  g_hooks.resume_fd = fd_from_env("VEILKEY_TEST_RESUME_FD");
  if (g_hooks.crash_at || g_hooks.pause_at || g_hooks.event_fd >= 0) set_atomic_write_hook(&io_hook);
}

void test_point(const char* stage) {
  if (g_hooks.event_fd >= 0) {
    std::string line = std::string(stage) + "\n";
    (void)!::write(g_hooks.event_fd, line.data(), line.size());
  }
  if (g_hooks.pause_at && g_hooks.resume_fd >= 0 && std::strcmp(g_hooks.pause_at, stage) == 0) {
    char c;
    while (::read(g_hooks.resume_fd, &c, 1) < 0 && errno == EINTR) {
    }
  }
  if (g_hooks.crash_at && std::strcmp(g_hooks.crash_at, stage) == 0) ::_exit(99);
}

}  // namespace veil::keytool
