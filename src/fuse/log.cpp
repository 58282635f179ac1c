#include "fuse/log.hpp"

#include <syslog.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>

#include "fuse/fuse_api.hpp"

namespace veil::fuse {
namespace {

std::atomic<bool> g_syslog{false};
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

void vlog(LogLevel level, const char* fmt, va_list ap) {
  if (level == LogLevel::Debug && !g_debug) return;
  if (g_syslog) {
    vsyslog(syslog_priority(level), fmt, ap);
  } else {
    std::fputs("veilfs: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
  }
}

void fuse_log_bridge(enum fuse_log_level level, const char* fmt, va_list ap) {
  LogLevel l = level <= FUSE_LOG_ERR       ? LogLevel::Error
               : level <= FUSE_LOG_WARNING ? LogLevel::Warning
               : level <= FUSE_LOG_INFO    ? LogLevel::Info
                                           : LogLevel::Debug;
  // libfuse messages end in '\n' already; syslog does not mind, stderr gets it once.
  if (l == LogLevel::Debug && !g_debug) return;
  if (g_syslog) {
    vsyslog(syslog_priority(l), fmt, ap);
  } else {
    std::vfprintf(stderr, fmt, ap);
  }
}

}  // namespace

void log_to_syslog() {
  ::openlog("veilfs", LOG_PID, LOG_DAEMON);
  g_syslog = true;
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
