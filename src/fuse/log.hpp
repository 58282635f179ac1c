// Daemon logging: stderr in the foreground, syslog once detached. Callers pass inode numbers and backing
// (encrypted) names only, never a plaintext name, content or secret.
#pragma once

namespace veil::fuse {

enum class LogLevel { Debug, Info, Warning, Error };

// Switches to syslog (after daemonising); also routes libfuse's own messages there.
void log_to_syslog();
void set_debug_logging(bool on);
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace veil::fuse
