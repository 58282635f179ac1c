// The libfuse low-level operation table: trampolines that unpack a request, call Fs and reply (ops.cpp).
#pragma once

#include <atomic>

#include "fuse/fs.hpp"
#include "fuse/fuse_api.hpp"
#include "fuse/session.hpp"

namespace veil::fuse {

// The userdata of a session: what every trampoline reaches through fuse_req_userdata().
struct Session {
  Fs* fs;
  const SessionOptions* opt;
  std::atomic<bool> no_open{false};   // the kernel can do without OPEN and RELEASE for files
  std::atomic<uint64_t> requests{0};  // every request counts, for --idle (see session_of in ops.cpp)
};

const fuse_lowlevel_ops& lowlevel_ops();

}  // namespace veil::fuse
