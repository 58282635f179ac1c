// What veilfs checks before it reads the passphrase (so that nobody runs a 256 MiB KDF for a mount that cannot
// happen): the mountpoint, and whether libfuse accepts the mount options.
#pragma once

#include <string>
#include <vector>

namespace veil::fuse {

// Empty when path can be mounted on; otherwise a message for the user (exit 15) that says what is wrong and
// what to do: missing, not a directory, a dead FUSE mount ("run fusermount3 -u"), already a mount point, or
// not empty. allow_nonempty (--nonempty) lets the last two through.
std::string mountpoint_problem(const std::string& path, bool allow_nonempty);

// Empty when libfuse accepts fuse_args (what will be passed to fuse_session_new); otherwise a message (exit 2)
// naming each of user_options (the -o entries that were not veilfs's own) that libfuse refuses, with its reason.
std::string fuse_options_problem(const std::vector<std::string>& fuse_args,
                                 const std::vector<std::string>& user_options);

// `mount -o remount[,ro|,rw] MOUNTPOINT` (mount.fuse3 passes it on as -o remount): the mount's read-only flag
// changed by mount(2) MS_REMOUNT, nothing else (no daemon is started, no secret read). Returns an exit code,
// having said why on stderr when it is not 0: not a veilfs mount (15), not root (15), the kernel's refusal.
int remount_existing(const std::string& mountpoint, bool read_only);

}  // namespace veil::fuse
