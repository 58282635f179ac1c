// Daemon logging: stderr in the foreground, syslog once detached, or where --logfile / --syslog / --no-syslog
// say. Callers pass inode numbers and backing (encrypted) names only, never a plaintext name, content or secret.
#pragma once

namespace veil::fuse {

enum class LogLevel { Debug, Info, Warning, Error };

// Where messages go; any combination (none: they are dropped, e.g. detached with --no-syslog). Also routes
// libfuse's own messages. log_fd is an open, O_APPEND descriptor the log now owns, or -1.
struct LogTargets {
  bool to_stderr = true;
  bool to_syslog = false;
  int log_fd = -1;
};
void set_log_targets(const LogTargets& t);
void set_debug_logging(bool on);
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace veil::fuse
