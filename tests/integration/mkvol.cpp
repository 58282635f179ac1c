// veilfs_test_mkvol CIPHERDIR PASSFILE [cipher]: creates a volume for the mount tests without depending on
// veilkey, with Argon2 test parameters so that set-up costs milliseconds, not the 256 MiB default.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/cli/secret_source.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/volume.hpp"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s CIPHERDIR PASSFILE [aes256gcm|xchacha20poly1305]\n", argv[0]);
    return veil::cli::kExitUsage;
  }
  return veil::cli::run_guarded("veilfs_test_mkvol", [&] {
    veil::CreateOptions opt;
    opt.kdf = veil::kArgonTesting;
    if (argc == 4) {
      auto c = veil::cipher_from_name(argv[3]);
      if (!c) veil::throw_invalid("unknown cipher");
      opt.cipher = *c;
    }
    if (::mkdir(argv[1], 0700) != 0 && errno != EEXIST) veil::throw_errno("mkdir cipher dir");
    veil::cli::SecretSource src;
    src.passfile = argv[2];
    auto secret = veil::cli::read_secret(src, "");
    veil::Volume::create(argv[1], secret.span(), opt);
    return 0;
  });
}
