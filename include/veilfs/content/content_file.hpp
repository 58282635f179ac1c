// The encrypted-file engine: random-access read, write and truncate of one file's plaintext over a backing fd.
//
// Invariants kept on disk (docs/FORMAT.md, "File contents"):
//  * the last slot is a data slot whose associated data says "final"; a file cut at a block boundary therefore
//    ends in a non-final block and fails authentication (truncation is detected);
//  * an all-zero slot is a hole only if the next data slot's hole_before covers it; zeroing a data block is
//    detected, holes are still never written (sparse files stay sparse);
//  * a non-final slot may also carry the final flag: that is the state an append or a shrinking truncate leaves
//    if it is interrupted between its steps, and accepting it keeps such a file readable (every step of a write
//    or truncate leaves a valid file; tests/content/crash_state_test.cpp stops after each one).
// Thread safety: reads share a lock, writes and truncates take it exclusively; one request's blocks are
// encrypted on several cores.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "veilfs/crypto/aead.hpp"
#include "veilfs/crypto/secret.hpp"
#include "veilfs/format/block_layout.hpp"
#include "veilfs/format/file_header.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil {

// Per-volume content crypto: the content subkey, the cipher and the block layout. Derives per-file keys.
class ContentCipher {
 public:
  ContentCipher(CipherId cipher, uint32_t block_size, SecretBytes content_key);
  const format::BlockLayout& layout() const { return layout_; }
  CipherId cipher() const { return cipher_; }
  // Per-file key = HKDF-SHA256(content key, info = label | file ID): a file's key dies with its ID.
  Aead file_aead(const format::FileId& id) const;

 private:
  CipherId cipher_;
  format::BlockLayout layout_;
  SecretBytes key_;
};

class ContentFile {
 public:
  // Takes ownership of fd (open O_RDWR for writing, O_RDONLY for reading only).
  ContentFile(std::shared_ptr<const ContentCipher> cipher, UniqueFd fd, std::string label = {});

  // Reads up to out.size() bytes at off; returns the count (short only at end of file).
  // Throws Error(Auth) if a block in range fails authentication.
  size_t read(uint64_t off, std::span<uint8_t> out);
  void write(uint64_t off, std::span<const uint8_t> data);
  void truncate(uint64_t size);
  uint64_t size() const;  // from the backing size alone
  int fd() const { return fd_.get(); }
  // Label used in log and error messages (an inode number or cipher path, never a plaintext name).
  const std::string& label() const { return label_; }

  // fsck support: verifies every block, returning the index of the first bad one (or nullopt).
  std::optional<uint64_t> first_bad_block();

  // Tests only: called after each on-disk step of a write or truncate with the step's name; throwing from it
  // leaves the backing file exactly as a crash at that point would (the crash-state tests rely on this).
  void set_step_hook_for_testing(std::function<void(std::string_view step)> hook) { step_hook_ = std::move(hook); }

 private:
  struct FileKey {
    format::FileHeader header;
    Aead aead;
  };
  struct Block {
    bool hole = false;
    uint64_t hole_before = 0;
    std::vector<uint8_t> plain;  // empty for holes
  };

  const FileKey& key_locked(uint64_t backing_size);  // loads/caches the header
  const FileKey& new_key_locked();
  uint64_t backing_size() const;

  bool slot_is_zero(std::span<const uint8_t> slot) const;
  // Decrypts slot `index` (bytes given); throws Auth. Returns plaintext length and hole_before.
  size_t decrypt_slot(const FileKey& k, uint64_t index, bool last, std::span<const uint8_t> slot,
                      std::span<uint8_t> out, uint64_t* hole_before) const;
  void encrypt_slot(const FileKey& k, uint64_t index, uint64_t hole_before, bool final, std::span<const uint8_t> plain,
                    std::span<uint8_t> out, std::span<const uint8_t> nonce) const;
  // First index of the hole run that `index` lies in, after authenticating the data slot that claims it.
  uint64_t verified_hole_start(const FileKey& k, uint64_t index, uint64_t nblocks, uint64_t* claimer = nullptr);
  Block load_block(const FileKey& k, uint64_t index, uint64_t nblocks);
  void store_block(const FileKey& k, uint64_t index, uint64_t hole_before, bool final, std::span<const uint8_t> plain);
  void write_locked(uint64_t off, std::span<const uint8_t> data);
  [[noreturn]] void fail_auth(uint64_t index) const;
  void step_done(std::string_view step) const {
    if (step_hook_) step_hook_(step);
  }

  std::shared_ptr<const ContentCipher> cipher_;
  const format::BlockLayout& layout_;
  UniqueFd fd_;
  std::string label_;
  mutable std::shared_mutex rw_;  // reads shared, writes exclusive
  std::mutex key_mu_;             // guards key_ (loaded lazily by readers too)
  std::unique_ptr<FileKey> key_;
  std::function<void(std::string_view)> step_hook_;
};

}  // namespace veil
