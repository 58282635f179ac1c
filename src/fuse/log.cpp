#include "fuse/log.hpp"

#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "fuse/fuse_api.hpp"

namespace veil::fuse {
namespace {

std::atomic<bool> g_stderr{true};
std::atomic<bool> g_syslog{false};
std::atomic<int> g_fd{-1};
std::atomic<bool> g_debug{false};

int syslog_priority(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return LOG_DEBUG;
    case LogLevel::Info:
      return LOG_INFO;
    case LogLevel::Warning:
      return LOG_WARNING;
    case LogLevel::Error:
      return LOG_ERR;
  }
  return LOG_ERR;
}

// One line to each target. `text` may or may not end in '\n' (libfuse's messages do).
void emit(LogLevel level, const char* text) {
  std::string line = text;
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (g_syslog) ::syslog(syslog_priority(level), "%s", line.c_str());
  if (const int fd = g_fd; fd >= 0) {
    char stamp[32];
    const time_t now = ::time(nullptr);
    struct tm tm {};
    ::gmtime_r(&now, &tm);
    ::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    // One write per line: O_APPEND keeps lines of concurrent threads whole.
    const std::string out = std::string(stamp) + " veilfs[" + std::to_string(::getpid()) + "]: " + line + "\n";
    [[maybe_unused]] ssize_t n = ::write(fd, out.data(), out.size());
  }
  if (g_stderr) std::fprintf(stderr, "veilfs: %s\n", line.c_str());
}

void vlog(LogLevel level, const char* fmt, va_list ap) {
  if (level == LogLevel::Debug && !g_debug) return;
  char buf[2048];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  emit(level, buf);
}

void fuse_log_bridge(enum fuse_log_level level, const char* fmt, va_list ap) {
  LogLevel l = level <= FUSE_LOG_ERR       ? LogLevel::Error
               : level <= FUSE_LOG_WARNING ? LogLevel::Warning
               : level <= FUSE_LOG_INFO    ? LogLevel::Info
                                           : LogLevel::Debug;
  if (l == LogLevel::Debug && !g_debug) return;
  char buf[2048];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  // libfuse's messages carry their own "fuse: " prefix; on stderr they keep their old form, without ours.
  if (g_stderr && !g_syslog && g_fd < 0) {
    std::fputs(buf, stderr);
    return;
  }
  emit(l, buf);
}

}  // namespace

void set_log_targets(const LogTargets& t) {
  if (t.to_syslog && !g_syslog) ::openlog("veilfs", LOG_PID, LOG_DAEMON);
  const int old = g_fd.exchange(t.log_fd);
  if (old >= 0 && old != t.log_fd) ::close(old);
  g_syslog = t.to_syslog;
  g_stderr = t.to_stderr;
  fuse_set_log_func(fuse_log_bridge);
}

void set_debug_logging(bool on) { g_debug = on; }

void log(LogLevel level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}

}  // namespace veil::fuse
