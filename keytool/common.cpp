#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "keytool.hpp"
#include "veilfs/cli/cipher_dir.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/format/recovery_code.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::keytool {

void add_new_secret_options(po::options_description& d, NewSecret& s) {
  s.src.name_as_new();
  d.add_options()                                                                                //
      ("new-passfile", into(s.src.passfile, "FILE"), "new passphrase = first line of FILE")      //
      ("new-extpass", into(s.src.extpass, "CMD"), "new passphrase = first line printed by CMD")  //
      ("new-keyfile", into(s.src.keyfile, "FILE"),
       "new secret = the whole contents of FILE (the new slot is a key-file slot)")  //
      ("new-random-keyfile", into(s.random_keyfile, "FILE"),
       "create FILE (it must not exist) holding a random 256-bit key, for a key-file slot; such a slot gets the "
       "minimum Argon2id cost (1 pass, 8 KiB) unless --kdf-* say otherwise: a random key cannot be guessed");
}

void add_init_secret_options(po::options_description& d, NewSecret& s) {
  add_secret_options(d, s.src);
  s.random_keyfile_option = "--random-keyfile";
  d.add_options()("random-keyfile", into(s.random_keyfile, "FILE"),
                  "create FILE (it must not exist) holding a random 256-bit key, for a key-file slot with the minimum "
                  "Argon2id cost (1 pass, 8 KiB) unless --kdf-* say otherwise");
}

// ---- generated key files ----

GeneratedKeyFile::GeneratedKeyFile(std::string path) : path_(std::move(path)), key_(SecretBytes::random(32)) {
  UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400));
  if (!fd) {
    const int err = errno;
    throw Error(err == EEXIST ? ErrorKind::InvalidArgument : ErrorKind::Io, err,
                path_ + ": cannot create the key file: " + std::strerror(err) +
                    (err == EEXIST ? " (veilkey never overwrites a file)" : ""));
  }
  try {
    pwrite_full(fd.get(), key_.span(), 0);
    if (::fsync(fd.get()) != 0) throw_errno("fsync");
    fd.reset();
    std::string parent = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.rfind('/') + 1);
    UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) fsync_dir(dir.get());
  } catch (const Error& e) {
    ::unlink(path_.c_str());
    cli::rethrow_at(path_ + ": cannot write the key file", e);
  }
}

GeneratedKeyFile::~GeneratedKeyFile() {
  if (!keep_) ::unlink(path_.c_str());
}

format::SlotKind NewSecret::kind() const {
  return is_random() || src.keyfile ? format::SlotKind::KeyFile : format::SlotKind::Passphrase;
}

void NewSecret::check() const {
  cli::check_single_source(src);
  if (!random_keyfile) return;
  for (const auto* opt : {src.keyfile ? &src.keyfile_option : nullptr, src.passfile ? &src.passfile_option : nullptr,
                          src.extpass ? &src.extpass_option : nullptr})
    if (opt)
      throw_invalid(random_keyfile_option + " and " + *opt + " cannot be combined: give one source of the " + src.what);
}

SecretBytes NewSecret::read() {
  check();
  if (random_keyfile) {
    generated = std::make_unique<GeneratedKeyFile>(*random_keyfile);
    return generated->key().clone();
  }
  return cli::read_secret(src, "New passphrase: ", /*confirm=*/true);
}

void NewSecret::committed() {
  if (generated) generated->keep();
}

void add_kdf_options(po::options_description& d, KdfChoice& kdf, bool keep_old) {
  const char* mem = keep_old ? "Argon2id memory for the new slot: bytes, or with K, M or G (8K .. 4G; default: the old "
                               "slot's)"
                             : "Argon2id memory for the new slot: bytes, or with K, M or G (8K .. 4G; default 256M)";
  const char* ops = keep_old ? "Argon2id passes for the new slot (1 .. 64; default: the old slot's)"
                             : "Argon2id passes for the new slot (1 .. 64; default 3)";
  d.add_options()  //
      ("kdf-memory", po::value<std::string>()->value_name("SIZE")->notifier([&kdf](const std::string& v) {
        kdf.memory = parse_size(v, "--kdf-memory");
      }),
       mem)  //
      ("kdf-ops", into(kdf.ops, "N"), ops);
}

uint64_t parse_size(const std::string& text, const std::string& option) {
  auto bad = [&]() -> uint64_t {
    throw_invalid(option + ": '" + text +
                  "' is not a size (bytes, or a number with K, M or G for KiB, MiB, GiB, e.g. 64M)");
  };
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (n > (UINT64_MAX - digit) / 10) return bad();
    n = n * 10 + digit;
    ++i;
  }
  if (i == 0) return bad();
  std::string unit;
  for (; i < text.size(); ++i) unit.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(text[i]))));
  unsigned shift = 0;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KIB")
    shift = 10;
  else if (unit == "M" || unit == "MIB")
    shift = 20;
  else if (unit == "G" || unit == "GIB")
    shift = 30;
  else
    return bad();
  if (n > (UINT64_MAX >> shift)) return bad();
  return n << shift;
}

Argon2Params KdfChoice::resolve(const Argon2Params& dflt) const {
  Argon2Params p = dflt;
  if (memory) p.memlimit = *memory;
  if (ops) p.opslimit = *ops;
  if (p.memlimit < kArgonMinMem || p.memlimit > kArgonMaxMem)
    throw_invalid("--kdf-memory must be between 8K (" + std::to_string(kArgonMinMem) + " bytes) and 4G (" +
                  std::to_string(kArgonMaxMem) + " bytes)");
  if (p.opslimit < kArgonMinOps || p.opslimit > kArgonMaxOps)
    throw_invalid("--kdf-ops must be between " + std::to_string(kArgonMinOps) + " and " + std::to_string(kArgonMaxOps));
  return p;
}

bool parse_options(const Args& args, const CommandHelp& help, po::options_description& named,
                   const std::vector<std::string>& positional, po::variables_map& vm) {
  named.add_options()("config", po::value<std::string>()->value_name("FILE"), cli::kConfigOptionHelp);
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
  if (vm.count("config") && vm["config"].as<std::string>().empty()) throw_invalid("--config needs a file name");
  return true;
}

std::string config_of(const po::variables_map& vm) {
  return vm.count("config") ? vm["config"].as<std::string>() : std::string();
}

SecretBytes read_existing_secret(const cli::SecretSource& src) { return cli::read_secret(src, "Passphrase: "); }

namespace {

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

format::VolumeConfig preflight(const std::string& cipherdir, const std::string& config_file) {
  return cli::preflight_volume(cipherdir, config_file);
}

ConfigLock::ConfigLock(std::string cipherdir, std::string config_file)
    : path_(std::move(cipherdir)), config_file_(std::move(config_file)), dir_(cli::open_cipher_dir(path_)) {
  if (::flock(dir_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw_errno(path_ + ": cannot lock the cipher dir");
    test_point("lock-contended");
    if (::isatty(STDERR_FILENO)) std::fprintf(stderr, "veilkey: waiting for another veilkey on this volume...\n");
    while (::flock(dir_.get(), LOCK_EX) != 0)
      if (errno != EINTR) throw_errno(path_ + ": cannot lock the cipher dir");
  }
  test_point("locked");
}

format::VolumeConfig ConfigLock::load() const { return cli::load_config_at(dir_.get(), path_, config_file_); }

format::VolumeConfig ConfigLock::load_params() const {
  const std::string where = path_ + "/" + std::string(format::kParamsName);
  std::optional<format::VolumeConfig> p;
  try {
    p = layout::load_params(dir_.get());
  } catch (const Error& e) {
    cli::rethrow_at(where, e);
  }
  if (!p) throw Error(ErrorKind::NotFound, ENOENT, where + ": missing, and so is the config");
  return std::move(*p);
}

void ConfigLock::save(const format::VolumeConfig& cfg) const {
  try {
    remove_stale_temps(dir_.get());
    // Volumes made before veilfs.params existed get it now, so that their recovery code suffices from here on.
    if (::faccessat(dir_.get(), std::string(format::kParamsName).c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno == ENOENT)
      layout::save_params(dir_.get(), cfg);
  } catch (const Error& e) {
    cli::rethrow_at(path_ + ": cannot write " + std::string(format::kParamsName), e);
  }
  try {
    if (config_file_.empty()) {
      layout::save_config(dir_.get(), cfg);
    } else {
      layout::ConfigDir at = layout::open_config_dir(config_file_);
      layout::save_config(at.dir.get(), cfg, at.name);
    }
  } catch (const Error& e) {
    cli::rethrow_at(config_file_.empty() ? path_ + ": cannot write " + std::string(format::kConfigName)
                                         : config_file_ + ": cannot write the config",
                    e);
  }
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
