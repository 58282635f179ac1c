#include "veilfs/cli/secret_options.hpp"

namespace veil::cli {

void add_secret_options(boost::program_options::options_description& d, SecretSource& src) {
  d.add_options()                                                                  //
      ("passfile", into(src.passfile, "FILE"), "passphrase = first line of FILE")  //
      ("extpass", into(src.extpass, "CMD"),
       "passphrase = first line printed by CMD (run by /bin/sh -c)")  //
      ("keyfile", into(src.keyfile, "FILE"), "secret = the whole contents of FILE (a key file)");
}

}  // namespace veil::cli
