// `veilfs fsck CIPHERDIR [--passfile F | --extpass C | --keyfile K] [--repair] [--quiet]`
// Called by veilfs's main with argv[0] == "fsck". Exit codes (veilfs/cli/exit_codes.hpp): 0 clean (or every
// problem found was repaired), 26 damage found, 13 config corrupt or tampered with (nothing else checked),
// 10 wrong passphrase, 11 not a volume, 12 unsupported format, 14 I/O error, 2 bad command line.
#pragma once

namespace veil::fsck {
int fsck_main(int argc, char** argv);
}  // namespace veil::fsck
