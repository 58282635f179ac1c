#include "veilfs/cli/secret_options.hpp"

namespace veil::cli {

void add_secret_options(boost::program_options::options_description& d, SecretSource& src) {
  d.add_options()                                                                  //
      ("passfile", into(src.passfile, "FILE"), "passphrase = first line of FILE")  //
      ("extpass", into(src.extpass, "CMD"),
       "passphrase = first line printed by CMD (run by /bin/sh -c)")  //
      ("keyfile", into(src.keyfile, "FILE"), "secret = the whole contents of FILE (a key file)");
}

void add_config_option(boost::program_options::options_description& d, std::string& config_file) {
  d.add_options()("config", boost::program_options::value(&config_file)->value_name("FILE"), kConfigOptionHelp);
}

}  // namespace veil::cli
