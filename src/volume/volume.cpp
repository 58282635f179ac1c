#include "veilfs/volume.hpp"

#include <fcntl.h>

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
  if (!dir_is_empty(root.get()))
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
  Volume v(cipherdir, std::move(root), c, master.clone());
  layout::write_dir_iv(v.root_fd(), v.root_iv());
  layout::save_config(v.root_fd(), c);  // last: a directory without a config is not yet a volume
  return master;
}

std::unique_ptr<Volume> Volume::open(const std::string& cipherdir, std::span<const uint8_t> secret) {
  UniqueFd root = open_dir(cipherdir);
  auto c = layout::load_config(root.get());
  SecretBytes master = c.unlock(secret);
  return std::unique_ptr<Volume>(new Volume(cipherdir, std::move(root), std::move(c), std::move(master)));
}

std::unique_ptr<Volume> Volume::open_with_master_key(const std::string& cipherdir, const SecretBytes& master) {
  UniqueFd root = open_dir(cipherdir);
  auto c = layout::load_config(root.get());
  c.verify_params(master);
  return std::unique_ptr<Volume>(new Volume(cipherdir, std::move(root), std::move(c), master.clone()));
}

DirIv Volume::dir_iv(int dirfd, const DirIv* parent_iv, std::string_view encoded_name) const {
  if (auto iv = layout::read_dir_iv(dirfd)) return *iv;
  if (!parent_iv) return root_iv_;
  return names_->derive_child_iv(*parent_iv, encoded_name);
}

}  // namespace veil
