#include "veilfs/volume.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <optional>

#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil {

namespace {

UniqueFd open_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  return fd;
}

// The config, from the cipher dir's root or from where --config put it.
format::VolumeConfig load_volume_config(int rootfd, const std::string& config_file) {
  if (config_file.empty()) return layout::load_config(rootfd);
  layout::ConfigDir at = layout::open_config_dir(config_file);
  return layout::load_config(at.dir.get(), at.name);
}

SecretBytes subkey(const SecretBytes& master, const format::VolumeConfig& c, std::string_view label, size_t n = 32) {
  return hkdf_sha256(master.span(), c.volume_id, label, n);
}

}  // namespace

Volume::Volume(std::string path, UniqueFd root, format::VolumeConfig cfg, SecretBytes master)
    : path_(std::move(path)), root_(std::move(root)), config_(std::move(cfg)), master_(std::move(master)) {
  content_ = std::make_shared<ContentCipher>(config_.cipher, config_.block_size,
                                             subkey(master_, config_, "veilfs v1 content"));
  names_ = std::make_unique<NameTransform>(subkey(master_, config_, "veilfs v1 names"));
  links_ = std::make_unique<LinkCodec>(subkey(master_, config_, "veilfs v1 symlinks"));
  xattrs_ = std::make_unique<XattrCodec>(subkey(master_, config_, "veilfs v1 xattrs"));
  SecretBytes iv = subkey(master_, config_, "veilfs v1 root iv", format::kDirIvSize);
  std::copy(iv.data(), iv.data() + iv.size(), root_iv_.begin());
}

SecretBytes Volume::create(const std::string& cipherdir, std::span<const uint8_t> secret, const CreateOptions& opt) {
  UniqueFd root = open_dir(cipherdir);
  if (opt.reverse && opt.config_file.empty())
    throw Error(ErrorKind::InvalidArgument, EINVAL, "a reverse volume needs a config file name");
  if (!opt.reverse && !dir_is_empty(root.get()))
    throw Error(ErrorKind::InvalidArgument, ENOTEMPTY, "refusing to create a volume in a non-empty directory");
  format::VolumeConfig c;
  random_fill(c.volume_id);
  c.cipher = opt.cipher;
  c.block_size = opt.block_size;
  c.features = format::VolumeConfig::default_features();
  format::BlockLayout(c.cipher, c.block_size);                                  // validates the block size
  if (c.cipher == CipherId::Aes256Gcm) Aead(c.cipher, SecretBytes(32).span());  // fails early without AES-NI
  SecretBytes master = SecretBytes::random(format::kMasterKeySize);
  c.slots.push_back(c.make_slot(master, secret, opt.slot_kind, opt.kdf));
  c.seal_params(master);
  std::optional<layout::ConfigDir> external;
  if (!opt.config_file.empty()) {
    external = layout::open_config_dir(opt.config_file);
    struct stat st;
    if (::fstatat(external->dir.get(), external->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      throw Error(ErrorKind::InvalidArgument, EEXIST, opt.config_file + ": the config file exists already");
  }
  Volume v(cipherdir, std::move(root), c, master.clone());
  if (!opt.reverse) {
    layout::write_dir_iv(v.root_fd(), v.root_iv());
    layout::save_params(v.root_fd(), c);
  }
  // Last: a directory without a config is not yet a volume.
  if (external)
    layout::save_config(external->dir.get(), c, external->name);
  else
    layout::save_config(v.root_fd(), c);
  return master;
}

std::unique_ptr<Volume> Volume::open(const std::string& cipherdir, std::span<const uint8_t> secret,
                                     const std::string& config_file) {
  UniqueFd root = open_dir(cipherdir);
  auto c = load_volume_config(root.get(), config_file);
  SecretBytes master = c.unlock(secret);
  return std::unique_ptr<Volume>(new Volume(cipherdir, std::move(root), std::move(c), std::move(master)));
}

std::unique_ptr<Volume> Volume::open_with_master_key(const std::string& cipherdir, const SecretBytes& master,
                                                     const std::string& config_file) {
  UniqueFd root = open_dir(cipherdir);
  auto c = load_volume_config(root.get(), config_file);
  c.verify_params(master);
  return std::unique_ptr<Volume>(new Volume(cipherdir, std::move(root), std::move(c), master.clone()));
}

std::unique_ptr<Volume> Volume::open_with_recovery(const std::string& cipherdir, const SecretBytes& master,
                                                   const std::string& config_file) {
  UniqueFd root = open_dir(cipherdir);
  std::optional<format::VolumeConfig> c;
  try {
    c = load_volume_config(root.get(), config_file);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::NotFound) throw;
    c = layout::load_params(root.get());
    if (!c)
      throw Error(ErrorKind::NotFound, ENOENT,
                  "not a veilfs volume: " + (config_file.empty() ? std::string(format::kConfigName) : config_file) +
                      " and " + std::string(format::kParamsName) + " are missing");
  }
  try {
    c->verify_params(master);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Corrupt) throw;
    throw Error(ErrorKind::WrongSecret, EACCES,
                "the recovery code is well-formed but does not open this volume (or its parameters were tampered "
                "with)");
  }
  return std::unique_ptr<Volume>(new Volume(cipherdir, std::move(root), std::move(*c), master.clone()));
}

DirIv Volume::dir_iv(int dirfd, const DirIv* parent_iv, std::string_view encoded_name) const {
  if (auto iv = layout::read_dir_iv(dirfd)) return *iv;
  if (!parent_iv) return root_iv_;
  return names_->derive_child_iv(*parent_iv, encoded_name);
}

}  // namespace veil
