// An opened volume: config + master-derived subkeys + engines. What veilfs, veilkey and fsck all use.
//
// Key hierarchy (HKDF-SHA256, salt = volume ID, one label per purpose):
//   master (32 random bytes, wrapped in the config's key slots)
//     -> "veilfs v1 content"  -> per-file keys = HKDF(content, info = label | file ID)
//     -> "veilfs v1 names"    -> name SIV keys, dir-IV derivation key
//     -> "veilfs v1 symlinks" -> symlink target AEAD key
//     -> "veilfs v1 xattrs"   -> xattr name SIV and value AEAD keys
//     -> "veilfs v1 root iv"  -> the root directory's IV (16 bytes)
#pragma once

#include <memory>
#include <span>
#include <string>

#include "veilfs/content/content_file.hpp"
#include "veilfs/format/config.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/names/link_codec.hpp"
#include "veilfs/names/name_transform.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil {

struct CreateOptions {
  CipherId cipher = fastest_cipher();
  uint32_t block_size = format::kDefaultBlockSize;
  Argon2Params kdf = kArgonDefault;
  format::SlotKind slot_kind = format::SlotKind::Passphrase;
  std::string config_file;  // empty: CIPHERDIR/veilfs.conf; else a new file of that name (--config FILE)
  // Reverse mode (veilkey init --reverse): the directory is a plain one, left as it is; only the config is
  // written (to config_file, which must be given). The view shows the IV and params files.
  bool reverse = false;
};

class Volume {
 public:
  // Creates a new volume in an existing empty directory; returns the master key (for a recovery code).
  // Refuses a non-empty directory (EEXIST/ENOTEMPTY) and an external config file that exists (EEXIST).
  static SecretBytes create(const std::string& cipherdir, std::span<const uint8_t> secret, const CreateOptions& opt);
  // config_file: empty for CIPHERDIR/veilfs.conf, else the config kept elsewhere (--config FILE).
  // Throws NotFound (no config), Corrupt, Unsupported, WrongSecret.
  static std::unique_ptr<Volume> open(const std::string& cipherdir, std::span<const uint8_t> secret,
                                      const std::string& config_file = {});
  static std::unique_ptr<Volume> open_with_master_key(const std::string& cipherdir, const SecretBytes& master,
                                                      const std::string& config_file = {});
  // With the recovery code's master key: from the config when there is one, else from veilfs.params (a lost
  // config); either is authenticated by the key. Throws NotFound when there is neither, Corrupt.
  static std::unique_ptr<Volume> open_with_recovery(const std::string& cipherdir, const SecretBytes& master,
                                                    const std::string& config_file = {});

  const format::VolumeConfig& config() const { return config_; }
  int root_fd() const { return root_.get(); }
  const std::string& path() const { return path_; }
  const SecretBytes& master_key() const { return master_; }

  const std::shared_ptr<const ContentCipher>& content() const { return content_; }
  const NameTransform& names() const { return *names_; }
  const LinkCodec& links() const { return *links_; }
  const XattrCodec& xattrs() const { return *xattrs_; }
  const DirIv& root_iv() const { return root_iv_; }

  // IV of a directory: its IV file, or (missing) derived from the parent IV and its encoded name.
  DirIv dir_iv(int dirfd, const DirIv* parent_iv, std::string_view encoded_name) const;

 private:
  Volume(std::string path, UniqueFd root, format::VolumeConfig cfg, SecretBytes master);

  std::string path_;
  UniqueFd root_;
  format::VolumeConfig config_;
  SecretBytes master_;
  std::shared_ptr<const ContentCipher> content_;
  std::unique_ptr<NameTransform> names_;
  std::unique_ptr<LinkCodec> links_;
  std::unique_ptr<XattrCodec> xattrs_;
  DirIv root_iv_{};
};

}  // namespace veil
