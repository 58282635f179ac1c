// veilkey info: what the config says, without any secret.
#include <iostream>
#include <nlohmann/json.hpp>

#include "keytool.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/crypto/encoding.hpp"

namespace veil::keytool {

namespace {
constexpr CommandHelp kHelp{
    "veilkey info CIPHERDIR [--json]",
    "Prints the format version, volume id, cipher, block size, feature flags and every key slot with its KDF\n"
    "parameters. Needs no secret and prints none. The parameters are authenticated with the master key only\n"
    "when the volume is opened; this command shows them as stored.",
    "  veilkey info ~/vault.enc\n"
    "  veilkey info ~/vault.enc --json | jq .cipher\n"};
}  // namespace

int cmd_info(const Args& args) {
  bool as_json = false;
  po::options_description d("Options", kHelpWidth);
  d.add_options()("json", po::bool_switch(&as_json), "print one JSON object");
  po::variables_map vm;
  if (!parse_options(args, kHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const format::VolumeConfig cfg = preflight(vm["CIPHERDIR"].as<std::string>(), config_of(vm));

  if (as_json) {
    nlohmann::json slots = nlohmann::json::array();
    for (const auto& s : cfg.slots)
      slots.push_back({{"id", s.id},
                       {"kind", format::slot_kind_name(s.kind)},
                       {"kdf", "argon2id"},
                       {"opslimit", s.kdf.opslimit},
                       {"memlimit", s.kdf.memlimit}});
    nlohmann::json j{{"version", cfg.version},
                     {"volume_id", base64url_encode(cfg.volume_id)},
                     {"cipher", cipher_name(cfg.cipher)},
                     {"block_size", cfg.block_size},
                     {"features", cfg.features},
                     {"key_slots", slots}};
    std::cout << j.dump(2) << "\n";
    return cli::kExitOk;
  }
  std::cout << "format version: " << cfg.version << "\n"
            << "volume id:      " << base64url_encode(cfg.volume_id) << "\n"
            << "cipher:         " << cipher_name(cfg.cipher) << "\n"
            << "block size:     " << cfg.block_size << "\n"
            << "features:      ";
  for (const auto& f : cfg.features) std::cout << " " << f;
  std::cout << "\nkey slots:      " << cfg.slots.size() << "\n";
  print_slots(cfg, "  ");
  return cli::kExitOk;
}

}  // namespace veil::keytool
