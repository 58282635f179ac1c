// Opening a cipher dir and its config from a command line, with messages that name the path and say why
// (shared by veilfs, veilfs fsck and veilkey, so that one bad CIPHERDIR gets one message and one exit code).
#pragma once

#include <string>

#include "veilfs/format/config.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::cli {

// Opens path as a directory. Missing, or not a directory: NotFound (exit 11) "PATH: the cipher dir does not
// exist" / "... is not a directory". Anything else (no permission, a dead FUSE mount): Io (exit 14) with strerror.
UniqueFd open_cipher_dir(const std::string& path);

// The config of the opened cipher dir at path, every message naming PATH/veilfs.conf: NotFound (not a volume,
// exit 11), Io (unreadable, exit 14), Corrupt (exit 13), Unsupported (exit 12).
// config_file: empty for PATH/veilfs.conf, else the config kept elsewhere (--config FILE), named in messages.
// A cipher dir with veilfs.params but no veilfs.conf gets a message saying the config is kept elsewhere.
format::VolumeConfig load_config_at(int dirfd, const std::string& path, const std::string& config_file = {});

// Both: what to check before asking for a secret, so that a directory that is not a usable volume fails first.
format::VolumeConfig preflight_volume(const std::string& path, const std::string& config_file = {});
// The same before asking for a recovery code: a missing config is fine when veilfs.params is there.
void preflight_recovery(const std::string& path, const std::string& config_file = {});

// Rethrows e with "where: " in front of its message, keeping its kind and errno (so its exit code).
[[noreturn]] void rethrow_at(const std::string& where, const Error& e);

}  // namespace veil::cli
