// veilkey passwd: re-wrap the master key under a new secret, in place of the slot the old secret opens.
#include <algorithm>
#include <cstdio>

#include "keytool.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/util/error.hpp"

namespace veil::keytool {

namespace {
constexpr CommandHelp kHelp{
    "veilkey passwd CIPHERDIR [options]",
    "Changes the passphrase (or key file) of the key slot that the current secret opens. Only the wrapping of\n"
    "the master key changes: file contents are not touched. The config is replaced atomically, so an\n"
    "interruption leaves either the old or the new secret working. The new slot keeps the old slot's KDF cost\n"
    "unless --kdf-memory/--kdf-ops say otherwise (a --new-random-keyfile slot gets the minimum), and gets a new\n"
    "slot id.\n"
    "Without options the old secret is read from standard input's first line and the new one from its second\n"
    "line (or both are asked on the terminal, the new one twice).",
    "  veilkey passwd ~/vault.enc\n"
    "  veilkey passwd ~/vault.enc --passfile old.txt --new-passfile new.txt\n"
    "  printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | veilkey passwd ~/vault.enc\n"
    "  veilkey passwd ~/vault.enc --keyfile old.key --new-keyfile new.key\n"};
}  // namespace

int cmd_passwd(const Args& args) {
  cli::SecretSource src;
  NewSecret fresh;
  KdfChoice kdf;
  po::options_description d("Options", kHelpWidth);
  add_secret_options(d, src);
  add_new_secret_options(d, fresh);
  add_kdf_options(d, kdf, /*keep_old=*/true);
  po::variables_map vm;
  if (!parse_options(args, kHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const std::string dir = vm["CIPHERDIR"].as<std::string>();
  cli::check_single_source(src);
  fresh.check();

  preflight(dir, config_of(vm));
  SecretBytes old_secret = read_existing_secret(src);
  SecretBytes new_secret = fresh.read();

  ConfigLock lock(dir, config_of(vm));
  format::VolumeConfig cfg = lock.load();
  std::optional<uint32_t> opened;
  SecretBytes master = cfg.unlock(old_secret.span(), &opened);
  test_point("unlocked");
  auto old_slot = std::find_if(cfg.slots.begin(), cfg.slots.end(), [&](const auto& s) { return s.id == *opened; });
  // A generated random key needs no work factor; otherwise the old slot's cost carries over.
  format::KeySlot slot = cfg.make_slot(master, new_secret.span(), fresh.kind(),
                                       kdf.resolve(fresh.is_random() ? kArgonRandomKey : old_slot->kdf));
  // The old slot is about to go: prove the new one opens before the config that lacks the old one is written.
  auto check = cfg.try_slot(slot, new_secret.span());
  if (!check || !check->equals(master.span())) throw Error(ErrorKind::Io, EIO, "the new key slot failed to verify");
  const uint32_t old_id = old_slot->id, new_id = slot.id;
  *old_slot = std::move(slot);
  lock.save(cfg);
  fresh.committed();
  std::fprintf(stderr, "veilkey: secret changed (slot %u replaced by slot %u)\n", old_id, new_id);
  return cli::kExitOk;
}

}  // namespace veil::keytool
