// Exit codes of veilfs and veilkey: one table, documented in README.md ("Exit codes").
#pragma once

#include <functional>

namespace veil::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,         // anything not listed below
  kExitUsage = 2,         // bad command line
  kExitWrongSecret = 10,  // wrong passphrase or key file
  kExitNotVolume = 11,    // no veilfs.conf in the directory
  kExitUnsupported = 12,  // newer format version or unknown feature flag
  kExitCorrupt = 13,      // config corrupt or tampered with
  kExitIo = 14,           // I/O error (including a full disk)
  kExitMount = 15,        // the mount itself failed (mountpoint missing, not empty, no /dev/fuse)
  kExitRefused = 16,      // refused to act: non-empty dir for init, removing the last slot, ...
  kExitCodeTypo =
      17,  // veilkey recover, veilfs --recovery-code: the recovery code has a typo (a checksum does not match)
  kExitFsckDamage = 26,  // fsck found damage (same number as gocryptfs)
};

// Runs body, turning any veil::Error or std::exception into a message on stderr and an exit code.
// Messages never include secrets; callers must not put plaintext names in them either.
int run_guarded(const char* program, const std::function<int()>& body);

}  // namespace veil::cli
