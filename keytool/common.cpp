#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "keytool.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/format/recovery_code.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::keytool {

void add_secret_options(po::options_description& d, cli::SecretSource& src) {
  d.add_options()                                                                  //
      ("passfile", into(src.passfile, "FILE"), "passphrase = first line of FILE")  //
      ("extpass", into(src.extpass, "CMD"),
       "passphrase = first line printed by CMD (run by /bin/sh -c)")  //
      ("keyfile", into(src.keyfile, "FILE"), "secret = the whole contents of FILE (a key file)");
}

void add_new_secret_options(po::options_description& d, cli::SecretSource& src) {
  d.add_options()                                                                              //
      ("new-passfile", into(src.passfile, "FILE"), "new passphrase = first line of FILE")      //
      ("new-extpass", into(src.extpass, "CMD"), "new passphrase = first line printed by CMD")  //
      ("new-keyfile", into(src.keyfile, "FILE"),
       "new secret = the whole contents of FILE (the new slot is a key-file slot)");
}

void add_kdf_options(po::options_description& d, KdfChoice& kdf, bool keep_old) {
  const char* mem = keep_old
                        ? "Argon2id memory for the new slot, in bytes (8192 .. 4294967296; default: the old slot's)"
                        : "Argon2id memory for the new slot, in bytes (8192 .. 4294967296; default 268435456 = "
                          "256 MiB)";
  const char* ops = keep_old ? "Argon2id passes for the new slot (1 .. 64; default: the old slot's)"
                             : "Argon2id passes for the new slot (1 .. 64; default 3)";
  d.add_options()("kdf-memory", into(kdf.memory, "BYTES"), mem)("kdf-ops", into(kdf.ops, "N"), ops);
}

Argon2Params KdfChoice::resolve(const Argon2Params& dflt) const {
  Argon2Params p = dflt;
  if (memory) p.memlimit = *memory;
  if (ops) p.opslimit = *ops;
  if (p.memlimit < kArgonMinMem || p.memlimit > kArgonMaxMem)
    throw_invalid("--kdf-memory must be between " + std::to_string(kArgonMinMem) + " and " +
                  std::to_string(kArgonMaxMem) + " bytes");
  if (p.opslimit < kArgonMinOps || p.opslimit > kArgonMaxOps)
    throw_invalid("--kdf-ops must be between " + std::to_string(kArgonMinOps) + " and " + std::to_string(kArgonMaxOps));
  return p;
}

bool parse_options(const Args& args, const CommandHelp& help, po::options_description& named,
                   const std::vector<std::string>& positional, po::variables_map& vm) {
  named.add_options()("help,h", "show this help");
  po::options_description hidden;
  po::positional_options_description pos;
  for (const auto& p : positional) {
    hidden.add_options()(p.c_str(), po::value<std::string>());
    pos.add(p.c_str(), 1);
  }
  po::options_description all;
  all.add(named).add(hidden);
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << "Usage: " << help.usage << "\n\n"
                << help.summary << "\n\n"
                << named << "\nExamples:\n"
                << help.examples << "\nExit codes: see `veilkey --help`.\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw_invalid(std::string(e.what()) + " (see --help)");
  }
  for (const auto& p : positional)
    if (!vm.count(p)) throw_invalid("missing " + p + " (see --help)");
  return true;
}

SecretBytes read_existing_secret(const cli::SecretSource& src) { return cli::read_secret(src, "Passphrase: "); }

SecretBytes read_new_secret(const cli::SecretSource& src) {
  return cli::read_secret(src, "New passphrase: ", /*confirm=*/true);
}

format::SlotKind kind_of(const cli::SecretSource& src) {
  return src.keyfile ? format::SlotKind::KeyFile : format::SlotKind::Passphrase;
}

namespace {

UniqueFd open_cipherdir(const std::string& cipherdir) {
  UniqueFd fd(::open(cipherdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR)
      throw Error(ErrorKind::NotFound, errno, "not a veilfs volume: the cipher dir does not exist");
    throw_errno("open cipher dir");
  }
  return fd;
}

// A veilkey killed between writing its temp config and renaming it leaves "veilfs.conf.tmp.<random>" behind.
// It holds only wrapped keys, but it is clutter; under the lock no other veilkey can be writing one.
void remove_stale_temps(int dirfd) {
  std::vector<std::string> stale;
  for_each_dir_entry(dirfd, [&](std::string_view name) {
    if (layout::is_config_temp(name)) stale.emplace_back(name);
    return true;
  });
  for (const auto& name : stale) ::unlinkat(dirfd, name.c_str(), 0);
}

}  // namespace

format::VolumeConfig preflight(const std::string& cipherdir) {
  UniqueFd dir = open_cipherdir(cipherdir);
  return layout::load_config(dir.get());
}

ConfigLock::ConfigLock(const std::string& cipherdir) : dir_(open_cipherdir(cipherdir)) {
  if (::flock(dir_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw_errno("lock cipher dir");
    test_point("lock-contended");
    if (::isatty(STDERR_FILENO)) std::fprintf(stderr, "veilkey: waiting for another veilkey on this volume...\n");
    while (::flock(dir_.get(), LOCK_EX) != 0)
      if (errno != EINTR) throw_errno("lock cipher dir");
  }
  test_point("locked");
}

format::VolumeConfig ConfigLock::load() const { return layout::load_config(dir_.get()); }

void ConfigLock::save(const format::VolumeConfig& cfg) const {
  remove_stale_temps(dir_.get());
  layout::save_config(dir_.get(), cfg);
  test_point("saved");
}

int refuse(const std::string& why) {
  std::fprintf(stderr, "veilkey: %s\n", why.c_str());
  return cli::kExitRefused;
}

void print_slots(const format::VolumeConfig& cfg, std::string_view indent) {
  for (const auto& s : cfg.slots) {
    std::cout << indent << "slot " << s.id << ": " << format::slot_kind_name(s.kind)
              << ", argon2id opslimit=" << s.kdf.opslimit << " memlimit=" << s.kdf.memlimit;
    if (s.kdf.memlimit % (1 << 20) == 0) std::cout << " (" << (s.kdf.memlimit >> 20) << " MiB)";
    std::cout << "\n";
  }
}

void print_recovery_code(const SecretBytes& master) {
  SecretBytes code = format::encode_recovery_code(master);
  std::cout.flush();
  // Straight from secure memory to the descriptor: no std::string copy of the key is left on the heap.
  size_t done = 0;
  while (done < code.size()) {
    ssize_t n = ::write(STDOUT_FILENO, code.data() + done, code.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write recovery code");
    }
    done += static_cast<size_t>(n);
  }
  if (::write(STDOUT_FILENO, "\n", 1) != 1) throw_errno("write recovery code");
}

}  // namespace veil::keytool
