// veilkey export-key / recover: the master key as a human-typable recovery code, and back.
#include <algorithm>
#include <cstdio>

#include "keytool.hpp"
#include "veilfs/cli/cipher_dir.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/format/recovery_code.hpp"
#include "veilfs/util/error.hpp"

namespace veil::keytool {

namespace {

constexpr CommandHelp kExportHelp{
    "veilkey export-key CIPHERDIR [options]",
    "Prints the volume's recovery code (the master key, with checksums) on standard output after checking the\n"
    "passphrase or key file. Anyone holding the code can read the volume: keep it offline.",
    "  veilkey export-key ~/vault.enc\n"
    "  veilkey export-key ~/vault.enc --passfile pass.txt > /media/usb/recovery.txt\n"};

constexpr CommandHelp kRecoverHelp{
    "veilkey recover CIPHERDIR [options]",
    "Reads a recovery code (from --recovery-code-file, standard input's first line, or the terminal), checks\n"
    "it, and adds a new key slot with a new secret (--new-passfile/--new-extpass/--new-keyfile, standard\n"
    "input's next line, or the terminal, asked twice). A mistyped code is reported with the group that holds the\n"
    "typo (exit 17); a well-formed code of another volume is a wrong secret (exit 10). Case, dashes and spaces do\n"
    "not matter; O, I and L are read as 0, 1 and 1.",
    "  veilkey recover ~/vault.enc\n"
    "  veilkey recover ~/vault.enc --recovery-code-file /media/usb/recovery.txt --new-passfile new.txt\n"
    "  printf '%s\\n%s\\n' \"$CODE\" \"$NEW\" | veilkey recover ~/vault.enc\n"};

}  // namespace

int cmd_export_key(const Args& args) {
  cli::SecretSource src;
  po::options_description d("Options", kHelpWidth);
  add_secret_options(d, src);
  po::variables_map vm;
  if (!parse_options(args, kExportHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  cli::check_single_source(src);
  const format::VolumeConfig cfg = preflight(vm["CIPHERDIR"].as<std::string>(), config_of(vm));
  SecretBytes secret = read_existing_secret(src);
  SecretBytes master = cfg.unlock(secret.span());  // also authenticates the volume parameters
  print_recovery_code(master);
  return cli::kExitOk;
}

int cmd_recover(const Args& args) {
  std::optional<std::string> code_file;
  NewSecret fresh;
  KdfChoice kdf;
  po::options_description d("Options", kHelpWidth);
  d.add_options()("recovery-code-file", into(code_file, "FILE"), "read the recovery code from the first line of FILE");
  add_new_secret_options(d, fresh);
  add_kdf_options(d, kdf);
  po::variables_map vm;
  if (!parse_options(args, kRecoverHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const std::string dir = vm["CIPHERDIR"].as<std::string>();
  fresh.check();
  const Argon2Params params = kdf.resolve(fresh.is_random() ? kArgonRandomKey : kArgonDefault);

  const std::string config = config_of(vm);
  cli::preflight_recovery(dir, config);  // a missing config is what recover is also for
  cli::SecretSource code_src;
  code_src.passfile = code_file;
  code_src.passfile_option = "--recovery-code-file";
  code_src.what = "recovery code";
  SecretBytes master;
  {
    SecretBytes code = cli::read_secret(code_src, "Recovery code: ");
    master = format::decode_recovery_code(code.view());  // RecoveryCodeError -> exit 17
  }
  SecretBytes new_secret = fresh.read();

  ConfigLock lock(dir, config);
  format::VolumeConfig cfg;
  bool recreated = false;
  try {
    cfg = lock.load();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::NotFound) throw;
    // The config is lost: rebuilt from veilfs.params (whose MAC the key checks below) with the new slot only.
    cfg = lock.load_params();
    recreated = true;
  }
  if (cfg.slots.size() >= format::kMaxKeySlots) return refuse("the volume already has 32 key slots");
  try {
    cfg.verify_params(master);  // the parameters' MAC is keyed by the master key: a foreign key fails it
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Corrupt) throw;
    throw Error(ErrorKind::WrongSecret, EACCES,
                "the recovery code is well-formed but does not open this volume (or the config was tampered with)");
  }
  test_point("unlocked");
  cfg.slots.push_back(cfg.make_slot(master, new_secret.span(), fresh.kind(), params));
  const uint32_t id = cfg.slots.back().id;
  lock.save(cfg);
  fresh.committed();
  if (recreated)
    std::fprintf(stderr, "veilkey: recovered: the config was missing; wrote a new one (from %s) with slot %u\n",
                 std::string(format::kParamsName).c_str(), id);
  else
    std::fprintf(stderr, "veilkey: recovered: added slot %u\n", id);
  return cli::kExitOk;
}

}  // namespace veil::keytool
