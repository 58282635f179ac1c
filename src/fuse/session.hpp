// How a mount is served: the session's options and its run loop (session.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "fuse/fs.hpp"
#include "fuse/fuse_api.hpp"
#include "fuse/log.hpp"

namespace veil::fuse {

struct SessionOptions {
  std::string mountpoint;
  std::vector<std::string> fuse_args;  // argv for fuse_session_new (after argv[0])
  bool foreground = true;
  bool writeback_cache = true;
  // Let the kernel open files without OPEN/RELEASE requests. Only sound when a forbidden open(2) is refused
  // without asking us: the kernel checks permissions (default_permissions), or the daemon is root (so every
  // open the kernel lets through would succeed on the cipher dir too).
  bool no_open = false;
  // Other writers of the cipher dir: short kernel cache timeouts (kSharedTimeout), no writeback cache (the
  // kernel would trust its own file sizes), no "no open" (each open revalidates the file's pages).
  bool shared_storage = false;
  // Where messages go once detached (before, the caller's targets stand).
  LogTargets detached_log{.to_stderr = false, .to_syslog = true, .log_fd = -1};
  // --idle: unmount after this long without a request, unless the mount is in use (open files, a working
  // directory inside: the kernel refuses a plain unmount then). 0: never.
  unsigned idle_ms = 0;
};

// Mounts fs, detaches when asked (only after the mount succeeded), serves requests until unmounted or
// signalled, unmounts. Returns an exit code (veil::cli::ExitCode).
int run_session(Fs& fs, const SessionOptions& opt);
// The same for any operation table (reverse mode's): requests, if given, counts every request (for --idle).
int serve(const fuse_lowlevel_ops& ops, void* userdata, const SessionOptions& opt,
          const std::atomic<uint64_t>* requests);

}  // namespace veil::fuse
