// veilkey slot list|add|remove: several passphrases and key files per volume.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "keytool.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/util/error.hpp"

namespace veil::keytool {

namespace {

constexpr CommandHelp kListHelp{"veilkey slot list CIPHERDIR",
                                "Lists the key slots: id, kind (passphrase or keyfile) and KDF parameters.\n"
                                "Needs no secret.",
                                "  veilkey slot list ~/vault.enc\n"};

constexpr CommandHelp kAddHelp{
    "veilkey slot add CIPHERDIR [options]",
    "Adds a key slot for a new passphrase or key file. Needs a secret that opens an existing slot (read first,\n"
    "from --passfile/--extpass/--keyfile or standard input's first line); the new secret comes from\n"
    "--new-passfile/--new-extpass/--new-keyfile, standard input's next line, or the terminal (asked twice).\n"
    "A volume holds at most 32 slots.",
    "  veilkey slot add ~/vault.enc --new-random-keyfile /media/usb/vault.key   # creates the key file\n"
    "  veilkey slot add ~/vault.enc --new-keyfile /media/usb/vault.key\n"
    "  veilkey slot add ~/vault.enc --passfile mine.txt --new-passfile colleague.txt\n"
    "  printf '%s\\n%s\\n' \"$EXISTING\" \"$NEW\" | veilkey slot add ~/vault.enc --kdf-memory 64M\n"};

constexpr CommandHelp kRemoveHelp{
    "veilkey slot remove CIPHERDIR [--slot ID] [options]",
    "Removes the slot ID, or without --slot the slot that the given secret opens. Needs a secret that opens\n"
    "some slot. Removing the last slot is refused (exit 16): the volume would be lost.",
    "  veilkey slot remove ~/vault.enc --slot 2 --passfile mine.txt\n"
    "  veilkey slot remove ~/vault.enc --keyfile lost-laptop.key\n"};

constexpr std::string_view kSlotUsage =
    "Usage: veilkey slot list|add|remove CIPHERDIR [options]   (veilkey slot add --help for details)\n";

int slot_list(const Args& args) {
  po::options_description d("Options", kHelpWidth);
  po::variables_map vm;
  if (!parse_options(args, kListHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  print_slots(preflight(vm["CIPHERDIR"].as<std::string>(), config_of(vm)), "");
  return cli::kExitOk;
}

int slot_add(const Args& args) {
  cli::SecretSource src;
  NewSecret fresh;
  KdfChoice kdf;
  po::options_description d("Options", kHelpWidth);
  add_secret_options(d, src);
  add_new_secret_options(d, fresh);
  add_kdf_options(d, kdf);
  po::variables_map vm;
  if (!parse_options(args, kAddHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const std::string dir = vm["CIPHERDIR"].as<std::string>();
  cli::check_single_source(src);
  fresh.check();
  const Argon2Params params = kdf.resolve(fresh.is_random() ? kArgonRandomKey : kArgonDefault);

  if (preflight(dir, config_of(vm)).slots.size() >= format::kMaxKeySlots)
    return refuse("the volume already has 32 key slots");
  SecretBytes secret = read_existing_secret(src);
  SecretBytes new_secret = fresh.read();

  ConfigLock lock(dir, config_of(vm));
  format::VolumeConfig cfg = lock.load();
  if (cfg.slots.size() >= format::kMaxKeySlots) return refuse("the volume already has 32 key slots");
  SecretBytes master = cfg.unlock(secret.span());
  test_point("unlocked");
  cfg.slots.push_back(cfg.make_slot(master, new_secret.span(), fresh.kind(), params));
  const uint32_t id = cfg.slots.back().id;
  lock.save(cfg);
  fresh.committed();
  std::fprintf(stderr, "veilkey: added slot %u\n", id);
  return cli::kExitOk;
}

int slot_remove(const Args& args) {
  cli::SecretSource src;
  std::optional<uint32_t> which;
  po::options_description d("Options", kHelpWidth);
  d.add_options()("slot", into(which, "ID"), "the slot to remove (see `veilkey slot list`)");
  add_secret_options(d, src);
  po::variables_map vm;
  if (!parse_options(args, kRemoveHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const std::string dir = vm["CIPHERDIR"].as<std::string>();
  cli::check_single_source(src);

  constexpr const char* kLast = "refusing to remove the last key slot: the volume could never be opened again";
  auto find = [&](format::VolumeConfig& cfg, uint32_t id) {
    return std::find_if(cfg.slots.begin(), cfg.slots.end(), [&](const auto& s) { return s.id == id; });
  };
  {
    format::VolumeConfig cfg = preflight(dir, config_of(vm));
    if (cfg.slots.size() <= 1) return refuse(kLast);
    if (which && find(cfg, *which) == cfg.slots.end()) throw_invalid("no key slot has id " + std::to_string(*which));
  }
  SecretBytes secret = read_existing_secret(src);

  ConfigLock lock(dir, config_of(vm));
  format::VolumeConfig cfg = lock.load();
  if (cfg.slots.size() <= 1) return refuse(kLast);
  std::optional<uint32_t> opened;
  cfg.unlock(secret.span(), &opened);
  test_point("unlocked");
  const uint32_t id = which.value_or(*opened);
  auto it = find(cfg, id);
  if (it == cfg.slots.end()) throw_invalid("no key slot has id " + std::to_string(id));
  cfg.slots.erase(it);
  lock.save(cfg);
  std::fprintf(stderr, "veilkey: removed slot %u\n", id);
  return cli::kExitOk;
}

}  // namespace

int cmd_slot(const Args& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout) << kSlotUsage;
    return args.empty() ? cli::kExitUsage : cli::kExitOk;
  }
  Args rest(args.begin() + 1, args.end());
  if (args[0] == "list") return slot_list(rest);
  if (args[0] == "add") return slot_add(rest);
  if (args[0] == "remove") return slot_remove(rest);
  std::cerr << "veilkey: unknown slot command\n" << kSlotUsage;
  return cli::kExitUsage;
}

}  // namespace veil::keytool
