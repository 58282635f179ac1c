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
  bool shared_storage = false;       // other writers of the cipher dir (see SessionOptions::shared_storage)
  std::vector<std::string> badname;  // globs of undecodable backing names to show (FsOptions::badname)
  bool nonempty = false;             // --nonempty / -o nonempty: mount over a non-empty directory or an existing mount
  cli::SecretSource secret;
  std::vector<std::string> fuse_options;  // -o entries that are not ours, passed to FUSE
};

// Throws veil::Error(InvalidArgument) with a message for the user on a bad command line.
MountOptions parse_command_line(int argc, char** argv);
std::string usage_text();

}  // namespace veil::fuse
