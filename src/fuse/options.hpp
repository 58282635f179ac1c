// The veilfs command line: `veilfs [options] CIPHERDIR MOUNTPOINT`.
#pragma once

#include <string>
#include <vector>

#include "veilfs/cli/secret_source.hpp"

namespace veil::fuse {

struct MountOptions {
  std::string cipherdir;
  std::string mountpoint;
  bool help = false;
  bool version = false;
  bool foreground = false;
  bool debug = false;
  bool read_only = false;
  bool allow_other = false;
  bool shared_storage = false;        // other writers of the cipher dir (see SessionOptions::shared_storage)
  std::vector<std::string> badname;   // globs of undecodable backing names to show (FsOptions::badname)
  bool reverse = false;               // --reverse: CIPHERDIR is a plain dir, the mount its encrypted read-only view
  std::vector<std::string> excludes;  // --reverse: --exclude PATTERN, in order
  std::vector<std::string> exclude_files;  // --reverse: --exclude-from FILE
  bool remount = false;   // -o remount (mount(8) -o remount through mount.fuse3): change ro/rw of a live mount
  bool nonempty = false;  // --nonempty / -o nonempty: mount over a non-empty directory or an existing mount
  cli::SecretSource secret;
  std::string config_file;  // --config FILE / -o config=FILE: the config kept outside the cipher dir
  // --recovery-code / --recovery-code-file FILE: unlock with the recovery code (the secret then is the code; a
  // lost config is replaced by veilfs.params for this mount).
  bool recovery_code = false;
  std::string logfile;                  // --logfile FILE / -o logfile=FILE: the daemon's messages go there
  enum class Syslog { Auto, On, Off };  // Auto: syslog once detached, stderr in the foreground
  Syslog syslog = Syslog::Auto;
  unsigned idle_ms = 0;  // --idle DURATION / -o idle=: unmount after this long without a request; 0: never
  std::vector<std::string> fuse_options;  // -o entries that are not ours, passed to FUSE
};

// Throws veil::Error(InvalidArgument) with a message for the user on a bad command line.
MountOptions parse_command_line(int argc, char** argv);
std::string usage_text();

}  // namespace veil::fuse
