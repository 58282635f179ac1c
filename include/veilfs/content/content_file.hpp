// The encrypted-file engine: random-access read, write and truncate of one file's plaintext over a backing fd.
//
// Invariants kept on disk (docs/FORMAT.md, "File contents"):
//  * the last slot is a data slot whose associated data says "final"; a file cut at a block boundary therefore
//    ends in a non-final block and fails authentication (truncation is detected);
//  * an all-zero slot is a hole only if the next data slot's hole_before covers it; zeroing a data block is
//    detected, holes are still never written (sparse files stay sparse);
//  * a non-final slot may also carry the final flag, and a hole claim may reach back over data blocks: writers
//    leave both on purpose until the data is on disk (see DurableShape), so that whatever subset of the writes
//    since the last fdatasync a power cut keeps, the file reads as a mix of its versions, never as EIO
//    (docs/FORMAT.md 6.5; tests/content/crash_state_test.cpp stops after each step, tests/crash/ drops writes).
// Thread safety: reads share a lock, writes and truncates take it exclusively; one request's blocks are
// encrypted on several cores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <utility>
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

// How ContentFile::verify walks a file.
struct VerifyOptions {
  size_t chunk_bytes = size_t{1} << 20;  // plaintext bytes read and checked at a time (bounds the memory used)
  size_t max_ranges = 8;                 // bad-block ranges kept in the result (at least one is always kept)
  // Called after each stretch of blocks is checked, with the plaintext bytes it covered (holes skipped without
  // reading them included; zeros after the last data, which nothing can vouch for, not); the callee throttles.
  // Runs under the file's read lock.
  std::function<void(uint64_t bytes)> on_progress;
};

// What ContentFile::verify found. Damage that keeps the blocks from being checked at all (a bad header, a header
// without blocks, a last slot too short to hold data) is reported on its own and no block is checked.
struct VerifyResult {
  enum class Header {
    Ok,          // parsed, or the file is empty (no header, no blocks)
    Short,       // the backing file is shorter than a header (backing_size bytes)
    Unreadable,  // fewer header bytes could be read than the backing size promised
    Invalid,     // does not parse; header_error says why
  };
  Header header = Header::Ok;
  std::string header_error;
  uint64_t backing_size = 0;
  uint64_t blocks = 0;               // slots in the backing file; 0 with a header: the contents are missing
  uint64_t last_slot_size = 0;       // bytes of the last slot
  bool last_slot_too_short = false;  // it holds no data byte: a read up to the end fails before any block
  uint64_t bad_blocks = 0;           // blocks that fail authentication, as read() would fail them
  // The first max_ranges runs of bad blocks, inclusive and ascending; more_ranges if there are others.
  std::vector<std::pair<uint64_t, uint64_t>> bad_ranges;
  bool more_ranges = false;
  // The only bad block is the last one, a whole slot that authenticates as a non-final block: the file was cut
  // at a block boundary (bad_blocks is 1 and bad_ranges names it).
  bool cut_at_block_boundary = false;

  bool header_only() const { return header == Header::Ok && backing_size > 0 && blocks == 0; }
  bool clean() const { return header == Header::Ok && !header_only() && !last_slot_too_short && bad_blocks == 0; }
  // The first block a read would fail on: 0 for a bad header or a header without blocks, the last block if it
  // is too short (the blocks before it are not checked then); nullopt if the file is clean.
  std::optional<uint64_t> first_bad_block() const;
};

// What the backing file system is known to hold of one file: its shape at the last barrier (an fdatasync that
// returned), which a power cut cannot take back, and what was written since. Writes are laid out so that any
// subset of them reaching the disk on top of that shape is a readable file (docs/FORMAT.md 6.5); where a write
// depends on an earlier one being on disk, the engine makes a barrier first. The mount keeps one per inode, so
// that an engine made after an evicted one knows what may still not be on disk.
struct DurableShape {
  std::mutex mu;
  bool known = false;   // false: taken from the backing file when an engine first sees it
  uint64_t bytes = 0;   // backing size at the barrier
  uint64_t high = 0;    // the largest backing size since (a cut since then may not be on disk)
  bool header = false;  // a header was on disk at the barrier
  // The file ID of any header that may be on disk (at the barrier or written since), when known: a new header
  // (after a truncate to 0) reuses it, so that blocks of the old contents a power cut brings back still belong.
  std::optional<format::FileId> id;
  // Slots that were the file's short last slot at the barrier or since: a write that starts past one of them
  // rewrites it in the same pwrite (a power cut could keep the later slots and not the one it lengthened).
  std::set<uint64_t> short_slots;
  bool dirty = false;  // written since the barrier
  // Blocks written with a final flag that is no longer theirs, or a hole claim longer than the holes before
  // them: tolerated by readers, tightened (rewritten exactly) once a barrier has put the data on disk.
  std::set<uint64_t> loose;
};

class ContentFile {
 public:
  // Takes ownership of fd (open O_RDWR for writing, O_RDONLY for reading only). `shape` is shared with the
  // file's other engines over time (the mount's inode); without one the engine keeps its own.
  ContentFile(std::shared_ptr<const ContentCipher> cipher, UniqueFd fd, std::string label = {},
              std::shared_ptr<DurableShape> shape = nullptr);
  // An engine that is the last to know of unsynced writes makes them durable first (see DurableShape).
  ~ContentFile();
  ContentFile(const ContentFile&) = delete;
  ContentFile& operator=(const ContentFile&) = delete;

  // Reads up to out.size() bytes at off; returns the count (short only at end of file).
  // Throws Error(Auth) if a block in range fails authentication.
  size_t read(uint64_t off, std::span<uint8_t> out);
  void write(uint64_t off, std::span<const uint8_t> data);
  void truncate(uint64_t size);
  // What zero_range does with the backing space of the blocks it turns into holes.
  enum class Space {
    Release,  // deallocate it (FALLOC_FL_PUNCH_HOLE): the backing file stays sparse
    Keep,     // keep it allocated (FALLOC_FL_ZERO_RANGE): a later write there needs no new space
  };
  // Makes [off, off + len) read as zeros; the part past the end of the file is ignored and the size never
  // changes (fallocate's PUNCH_HOLE and ZERO_RANGE, src/content/content_punch.cpp). Whole blocks become holes,
  // vouched for by the data block after them, whose claim is rewritten first; partly covered blocks are
  // rewritten with zeros; the last block stays a data block (a file never ends in a hole). Every step leaves a
  // valid file in which each block holds its old contents or zeros (docs/FORMAT.md, 6.5).
  void zero_range(uint64_t off, uint64_t len, Space space);
  // Grows the file to new_size (the new bytes read as zeros, blocks in between stay holes, as a growing
  // truncate); does nothing if the file is already that long or longer. Atomic against concurrent writes, unlike
  // size() followed by truncate().
  void extend(uint64_t new_size);
  uint64_t size() const;  // from the backing size alone
  // fsync (fdatasync if datasync) of the backing file; then the blocks left loose since are tightened.
  void sync(bool datasync);
  // If blocks are loose (or, with unsynced_too, anything was written since the last barrier): a barrier
  // (fdatasync), then tightening. For the end of a writer's use (release); cheap when there is nothing to do.
  void settle(bool unsynced_too = false);
  // futimens of the backing file, ordered with the tightening of loose blocks (which keeps the times it finds:
  // a tar that sets a file's mtime right after closing it must not see it reverted).
  void set_times(const struct timespec times[2]);
  // Written since the last barrier (a forgotten inode's engine makes one before it goes).
  bool unsynced() const;
  size_t loose_blocks() const;  // tests
  int fd() const { return fd_.get(); }
  // Label used in log and error messages (an inode number or cipher path, never a plaintext name).
  const std::string& label() const { return label_; }

  // Read-only verification (fsck): authenticates every block exactly as read() would (holes through the data
  // block that claims them, the final-block marker), in chunks of opt.chunk_bytes, skipping unallocated ranges
  // without reading them. Never writes. Throws only what is not damage (I/O errors).
  VerifyResult verify(const VerifyOptions& opt = {}) const;
  // verify().first_bad_block().
  std::optional<uint64_t> first_bad_block() const;
  // Repairs (fsck --repair) of what an interrupted write can leave, each made durable (fdatasync) before it
  // returns. Neither ever makes up data: reseal_end() flags the last block final when a verify() found the file
  // cut at a block boundary with every block authentic (the data after it is lost already), and returns false
  // without writing otherwise; drop_empty_header() cuts a header without blocks (which reads as empty) to an
  // empty file, and returns false if the file has blocks.
  bool reseal_end();
  bool drop_empty_header();

  // Another writer may have replaced the file's header (a truncate to 0 and a new write give a new file ID and
  // key): the next read or write reads it again. Waits for requests in progress.
  void forget_header();

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
  // Reads and parses the header of a backing file `backing` bytes long; nullopt if it is damaged, with what is
  // wrong in *fault and *why (the parse error) when given.
  std::optional<format::FileHeader> read_header(uint64_t backing, VerifyResult::Header* fault = nullptr,
                                                std::string* why = nullptr) const;
  // A new header's key: with the given file ID, or a fresh one.
  const FileKey& new_key_locked(const std::optional<format::FileId>& id);
  size_t read_locked(uint64_t off, std::span<uint8_t> out);
  uint64_t backing_size() const;

  bool slot_is_zero(std::span<const uint8_t> slot) const;
  // Decrypts slot `index` (bytes given); throws Auth. Returns plaintext length and hole_before.
  size_t decrypt_slot(const FileKey& k, uint64_t index, bool last, std::span<const uint8_t> slot,
                      std::span<uint8_t> out, uint64_t* hole_before) const;
  void encrypt_slot(const FileKey& k, uint64_t index, uint64_t hole_before, bool final, std::span<const uint8_t> plain,
                    std::span<uint8_t> out, std::span<const uint8_t> nonce) const;
  // First index of the hole run that `index` lies in, after authenticating the data slot that claims it.
  uint64_t verified_hole_start(const FileKey& k, uint64_t index, uint64_t nblocks, uint64_t* claimer = nullptr) const;
  Block load_block(const FileKey& k, uint64_t index, uint64_t nblocks);
  void store_block(const FileKey& k, uint64_t index, uint64_t hole_before, bool final, std::span<const uint8_t> plain);
  void write_locked(uint64_t off, std::span<const uint8_t> data);
  // Crash ordering (DurableShape): fdatasync, after which the file's current shape is its durable one.
  void barrier_locked(bool full = false);
  void reset_shape_locked(uint64_t backing);  // under shape_->mu
  void reserve_space(uint64_t at, uint64_t len);
  void tighten_locked();
  void reseal_last_locked(uint64_t backing);  // the last slot re-stored flagged final
  void note_loose(uint64_t index);
  void note_written(std::optional<uint64_t> short_last = std::nullopt);
  // zero_range's parts (content_punch.cpp).
  uint64_t zero_run_start(uint64_t from, uint64_t to) const;
  void clear_slots(uint64_t first, uint64_t end, Space space);
  [[noreturn]] void fail_auth(uint64_t index) const;
  // A hook that throws stands for the process dying there: the engine then does nothing more on its own (its
  // destructor leaves the file as the crash did).
  void step_done(std::string_view step) const {
    if (!step_hook_) return;
    try {
      step_hook_(step);
    } catch (...) {
      halted_ = true;
      throw;
    }
  }

  std::shared_ptr<const ContentCipher> cipher_;
  const format::BlockLayout& layout_;
  UniqueFd fd_;
  std::string label_;
  mutable std::shared_mutex rw_;  // reads shared, writes exclusive
  std::mutex key_mu_;             // guards key_ (loaded lazily by readers too)
  std::unique_ptr<FileKey> key_;
  std::shared_ptr<DurableShape> shape_;
  bool writable_ = false;
  std::function<void(std::string_view)> step_hook_;
  mutable bool halted_ = false;  // tests: a step hook threw
};

}  // namespace veil
