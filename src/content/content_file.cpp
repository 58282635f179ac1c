#include "veilfs/content/content_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/util/parallel.hpp"

namespace veil {

using format::BlockLayout;
using format::kFileHeaderSize;

namespace {

constexpr std::string_view kFileKeyLabel = "veilfs v1 file key";
constexpr size_t kParallelBlocks = 32;  // below 128 KiB, splitting costs more than it saves
constexpr uint64_t kMaxPlainSize = uint64_t{1} << 60;
constexpr size_t kWriteBehindBytes = 256 * 1024;  // smaller writes are left to the kernel's writeback
constexpr uint64_t kMaxRewrite = 32;  // blocks rewritten rather than a barrier (crash ordering, write_locked)
constexpr size_t kMaxLoose = 4096;    // loose blocks before a barrier and tightening

uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Uninitialised byte buffer: zero-filling a 1 MiB request buffer costs as much as a tenth of its encryption.
struct RawBuffer {
  explicit RawBuffer(size_t n) : data(new uint8_t[n]), size(n) {}
  std::unique_ptr<uint8_t[]> data;
  size_t size;
  std::span<uint8_t> span(size_t off, size_t len) { return {data.get() + off, len}; }
};

}  // namespace

ContentCipher::ContentCipher(CipherId cipher, uint32_t block_size, SecretBytes content_key)
    : cipher_(cipher), layout_(cipher, block_size), key_(std::move(content_key)) {}

Aead ContentCipher::file_aead(const format::FileId& id) const {
  std::vector<uint8_t> info(kFileKeyLabel.begin(), kFileKeyLabel.end());
  info.insert(info.end(), id.begin(), id.end());
  SecretBytes k = hkdf_sha256(key_.span(), {}, info, kAeadKeySize);
  return Aead(cipher_, k.span());
}

ContentFile::ContentFile(std::shared_ptr<const ContentCipher> cipher, UniqueFd fd, std::string label,
                         std::shared_ptr<DurableShape> shape)
    : cipher_(std::move(cipher)),
      layout_(cipher_->layout()),
      fd_(std::move(fd)),
      label_(std::move(label)),
      shape_(shape ? std::move(shape) : std::make_shared<DurableShape>()) {
  const int fl = ::fcntl(fd_.get(), F_GETFL);
  writable_ = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
  std::lock_guard lk(shape_->mu);
  if (!shape_->known) {
    // What the file holds when first seen is taken as on disk: written before this daemon, or by it and synced
    // when its engine went (see the destructor and docs/FORMAT.md 6.5).
    shape_->known = true;
    reset_shape_locked(backing_size());
  }
}

ContentFile::~ContentFile() {
  if (!writable_ || halted_) return;
  try {
    settle(/*unsynced_too=*/shape_.use_count() == 1);  // the last engine to know of unsynced writes
  } catch (...) {
    // Best effort: what is left is what a crash right now would leave, which readers accept.
  }
}

void ContentFile::barrier_locked(bool full) {
  if ((full ? ::fsync(fd_.get()) : ::fdatasync(fd_.get())) != 0) throw_errno(full ? "fsync" : "fdatasync");
  const uint64_t backing = backing_size();
  std::optional<format::FileId> id;
  {
    std::lock_guard kl(key_mu_);
    if (key_ && backing >= kFileHeaderSize) id = key_->header.id;
  }
  std::lock_guard lk(shape_->mu);
  reset_shape_locked(backing);
  shape_->id = id;
  shape_->dirty = false;
  step_done("barrier");
}

void ContentFile::reset_shape_locked(uint64_t backing) {
  DurableShape& d = *shape_;
  d.bytes = d.high = backing;
  d.header = backing >= kFileHeaderSize;
  d.short_slots.clear();
  const uint64_t nb = layout_.block_count(backing);
  if (nb > 0 && backing < layout_.slot_offset(nb)) d.short_slots.insert(nb - 1);
}

void ContentFile::tighten_locked() {
  std::set<uint64_t> loose;
  {
    std::lock_guard lk(shape_->mu);
    if (!writable_) return;
    loose.swap(shape_->loose);
  }
  const uint64_t backing = backing_size();
  const uint64_t nb = layout_.block_count(backing);
  if (loose.empty() || nb == 0) return;
  const FileKey& k = key_locked(backing);
  // Tightening is not a change of the file: its modification time stays what the user last made it (tar and
  // rsync set it after writing, before the close that tightens).
  struct stat before;
  const bool have_times = ::fstat(fd_.get(), &before) == 0;
  bool stored = false;
  for (uint64_t i : loose) {
    if (i >= nb) break;
    try {
      Block b = load_block(k, i, nb);
      if (b.hole) continue;
      // The exact claim: the all-zero slots right before it, all of them within the claim it has.
      const uint64_t exact = i - zero_run_start(i - b.hole_before, i);
      if (exact == b.hole_before && i + 1 == nb) continue;  // already exact (the last block reads only if final)
      store_block(k, i, exact, i + 1 == nb, b.plain);
      stored = true;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Auth) throw;  // a damaged block is left as found: reads and fsck report it
    }
  }
  if (stored && have_times) {
    const struct timespec times[2] = {before.st_atim, before.st_mtim};
    ::futimens(fd_.get(), times);  // best effort: a failure leaves a later mtime, nothing worse
  }
  step_done("tighten");
}

void ContentFile::note_loose(uint64_t index) {
  std::lock_guard lk(shape_->mu);
  shape_->loose.insert(index);
}

void ContentFile::note_written(std::optional<uint64_t> short_last) {
  const uint64_t backing = backing_size();
  std::lock_guard lk(shape_->mu);
  shape_->dirty = true;
  shape_->high = std::max(shape_->high, backing);
  if (short_last) shape_->short_slots.insert(*short_last);
}

void ContentFile::sync(bool datasync) {
  std::unique_lock w(rw_);
  barrier_locked(!datasync);
  tighten_locked();
}

void ContentFile::settle(bool unsynced_too) {
  auto nothing_to_do = [&] {
    std::lock_guard lk(shape_->mu);
    return shape_->loose.empty() && !(unsynced_too && shape_->dirty);
  };
  // Every writer's RELEASE calls this: in the common case it returns without waiting for the file's requests.
  if (nothing_to_do()) return;
  std::unique_lock w(rw_);
  if (nothing_to_do()) return;  // settled meanwhile
  barrier_locked();
  tighten_locked();
}

void ContentFile::set_times(const struct timespec times[2]) {
  std::unique_lock w(rw_);
  if (::futimens(fd_.get(), times) != 0) throw_errno("futimens");
}

bool ContentFile::unsynced() const {
  std::lock_guard lk(shape_->mu);
  return shape_->dirty;
}

size_t ContentFile::loose_blocks() const {
  std::lock_guard lk(shape_->mu);
  return shape_->loose.size();
}

uint64_t ContentFile::backing_size() const { return file_size(fd_.get()); }

uint64_t ContentFile::size() const {
  std::shared_lock lk(rw_);
  return layout_.plain_size(backing_size());
}

void ContentFile::fail_auth(uint64_t index) const {
  throw_auth("block " + std::to_string(index) + " of " + (label_.empty() ? "a file" : label_) +
             " failed authentication (tampered, corrupt or truncated)");
}

const ContentFile::FileKey& ContentFile::key_locked(uint64_t backing) {
  std::lock_guard lk(key_mu_);
  if (!key_) {
    // A damaged header is tampering with the file like any other: report it as an authentication failure
    // (EIO), as a flipped file-ID bit would be, so callers see one kind of error for one kind of damage.
    auto h = read_header(backing);
    if (!h) throw_auth("file header of " + (label_.empty() ? "a file" : label_) + " is damaged");
    key_ = std::make_unique<FileKey>(FileKey{*h, cipher_->file_aead(h->id)});
    std::lock_guard sl(shape_->mu);
    if (!shape_->id) shape_->id = h->id;
  }
  return *key_;
}

std::optional<format::FileHeader> ContentFile::read_header(uint64_t backing, VerifyResult::Header* fault,
                                                           std::string* why) const {
  auto bad = [&](VerifyResult::Header f) {
    if (fault) *fault = f;
    return std::nullopt;
  };
  if (backing < kFileHeaderSize) return bad(VerifyResult::Header::Short);
  uint8_t buf[kFileHeaderSize];
  if (pread_full(fd_.get(), buf, 0) != kFileHeaderSize) return bad(VerifyResult::Header::Unreadable);
  try {
    return format::FileHeader::parse(buf);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Corrupt) throw;
    if (why) *why = e.what();
    return bad(VerifyResult::Header::Invalid);
  }
}

const ContentFile::FileKey& ContentFile::new_key_locked(const std::optional<format::FileId>& id) {
  std::lock_guard lk(key_mu_);
  if (id && key_ && key_->header.id == *id) return *key_;
  auto h = format::FileHeader::fresh();
  if (id) h.id = *id;
  key_ = std::make_unique<FileKey>(FileKey{h, cipher_->file_aead(h.id)});
  std::lock_guard sl(shape_->mu);
  shape_->id = h.id;
  return *key_;
}

bool ContentFile::slot_is_zero(std::span<const uint8_t> slot) const {
  return std::all_of(slot.begin(), slot.end(), [](uint8_t b) { return b == 0; });
}

size_t ContentFile::decrypt_slot(const FileKey& k, uint64_t index, bool last, std::span<const uint8_t> slot,
                                 std::span<uint8_t> out, uint64_t* hole_before) const {
  const size_t ns = layout_.nonce_size();
  if (slot.size() <= layout_.overhead() || slot.size() > layout_.slot_size()) fail_auth(index);
  uint64_t hb = get_u64(slot.data() + ns);
  if (hb > index) fail_auth(index);
  auto nonce = slot.subspan(0, ns);
  auto body = slot.subspan(ns + format::kHoleFieldSize);
  size_t plen = body.size() - kAeadTagSize;
  // The last block must say "final". A block that is not last normally does not, but may: an append
  // interrupted between its steps leaves the old final block in the middle.
  bool ok = k.aead.decrypt(out, body, nonce, BlockLayout::aad(k.header.id, index, hb, last ? true : false)) ||
            (!last && k.aead.decrypt(out, body, nonce, BlockLayout::aad(k.header.id, index, hb, true)));
  if (!ok) fail_auth(index);
  if (hole_before) *hole_before = hb;
  return plen;
}

void ContentFile::encrypt_slot(const FileKey& k, uint64_t index, uint64_t hole_before, bool final,
                               std::span<const uint8_t> plain, std::span<uint8_t> out,
                               std::span<const uint8_t> nonce) const {
  const size_t ns = layout_.nonce_size();
  std::memcpy(out.data(), nonce.data(), ns);
  put_u64(out.data() + ns, hole_before);
  k.aead.encrypt(out.subspan(ns + format::kHoleFieldSize), plain, nonce,
                 BlockLayout::aad(k.header.id, index, hole_before, final));
}

uint64_t ContentFile::verified_hole_start(const FileKey& k, uint64_t index, uint64_t nblocks, uint64_t* claimer) const {
  const size_t slot = layout_.slot_size();
  constexpr uint64_t kBatch = 64;
  std::vector<uint8_t> buf(kBatch * slot);
  uint64_t j = index + 1;
  while (j < nblocks) {
    // Skip unallocated ranges quickly; zero-filled allocated ranges are scanned.
    off_t data = ::lseek(fd_.get(), static_cast<off_t>(layout_.slot_offset(j)), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      data = static_cast<off_t>(layout_.slot_offset(j));
    }
    j = std::max(j, (static_cast<uint64_t>(data) - kFileHeaderSize) / slot);
    if (j >= nblocks) break;
    uint64_t count = std::min(kBatch, nblocks - j);
    size_t got = pread_full(fd_.get(), {buf.data(), count * slot}, layout_.slot_offset(j));
    for (uint64_t t = 0; t < count; ++t) {
      size_t begin = t * slot;
      if (begin >= got) break;
      auto s = std::span<const uint8_t>(buf.data() + begin, std::min(slot, got - begin));
      if (slot_is_zero(s)) continue;
      uint64_t idx = j + t, hb = 0;
      std::vector<uint8_t> plain(layout_.block_size());
      decrypt_slot(k, idx, idx == nblocks - 1, s, plain, &hb);
      if (idx - hb > index) fail_auth(index);  // a zeroed data block, not a hole we wrote
      if (claimer) *claimer = idx;
      return idx - hb;
    }
    j += count;
  }
  fail_auth(index);  // zeros with no data block after them: the file's end was zeroed
}

ContentFile::Block ContentFile::load_block(const FileKey& k, uint64_t index, uint64_t nblocks) {
  Block b;
  std::vector<uint8_t> slot(layout_.slot_size());
  size_t got = pread_full(fd_.get(), slot, layout_.slot_offset(index));
  slot.resize(got);
  if (got > 0 && got == layout_.slot_size() && slot_is_zero(slot) && index + 1 < nblocks) {
    b.hole = true;
    b.hole_before = index - verified_hole_start(k, index, nblocks);
    return b;
  }
  b.plain.resize(layout_.block_size());
  size_t n = decrypt_slot(k, index, index + 1 == nblocks, slot, b.plain, &b.hole_before);
  b.plain.resize(n);
  return b;
}

void ContentFile::store_block(const FileKey& k, uint64_t index, uint64_t hole_before, bool final,
                              std::span<const uint8_t> plain) {
  std::vector<uint8_t> nonce(layout_.nonce_size());
  random_fill(nonce);
  std::vector<uint8_t> slot(plain.size() + layout_.overhead());
  encrypt_slot(k, index, hole_before, final, plain, slot, nonce);
  pwrite_full(fd_.get(), slot, layout_.slot_offset(index));
}

size_t ContentFile::read(uint64_t off, std::span<uint8_t> out) {
  std::shared_lock lk(rw_);
  return read_locked(off, out);
}

size_t ContentFile::read_locked(uint64_t off, std::span<uint8_t> out) {
  const uint64_t backing = backing_size();
  const uint64_t size = layout_.plain_size(backing);
  if (out.empty() || off >= size) return 0;
  const uint64_t B = layout_.block_size();
  const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size - off));
  const uint64_t nb = layout_.block_count(backing);
  const uint64_t f = off / B, l = (off + n - 1) / B;
  // A last slot too short to hold any data can only come from truncation or corruption.
  if (off + n == size && l + 1 < nb) fail_auth(nb - 1);
  const FileKey& k = key_locked(backing);

  // Each chunk reads its own slots and decrypts them, so that on several cores the copies out of the page cache
  // run in parallel too. Zero slots are left for afterwards: a run of them is a hole only if the data block after
  // it vouches for it, which is checked once per run, sequentially.
  const size_t slot = layout_.slot_size();
  const uint64_t count = l - f + 1;
  std::vector<uint8_t> is_hole(count, 0);
  // The plaintext range [lo, hi) of block i that the read covers.
  auto covered = [&](uint64_t i) {
    return std::pair<uint64_t, uint64_t>{std::max<uint64_t>(off, i * B), std::min<uint64_t>(off + n, i * B + B)};
  };
  parallel_for(count, kParallelBlocks, [&](size_t cb, size_t ce) {
    const uint64_t cbegin = layout_.slot_offset(f + cb);
    const uint64_t cend = std::min(backing, layout_.slot_offset(f + ce));
    RawBuffer cbuf(cend - cbegin);
    if (pread_full(fd_.get(), cbuf.span(0, cbuf.size), cbegin) != cbuf.size) fail_auth(f + ce - 1);
    std::vector<uint8_t> tmp;
    for (size_t c = cb; c < ce; ++c) {
      const uint64_t i = f + c;
      const size_t sb = (c - cb) * slot;
      auto s = std::span<const uint8_t>(cbuf.data.get() + sb, std::min<size_t>(slot, cbuf.size - sb));
      if (s.size() == slot && slot_is_zero(s)) {
        is_hole[c] = 1;
        continue;
      }
      const uint64_t blk_start = i * B;
      const auto [lo, hi] = covered(i);
      uint8_t* dst = out.data() + (lo - off);
      if (lo == blk_start && hi - lo == s.size() - layout_.overhead()) {
        decrypt_slot(k, i, i + 1 == nb, s, {dst, static_cast<size_t>(hi - lo)}, nullptr);
      } else {
        tmp.resize(B);
        size_t plen = decrypt_slot(k, i, i + 1 == nb, s, tmp, nullptr);
        if (hi - blk_start > plen) fail_auth(i);
        std::memcpy(dst, tmp.data() + (lo - blk_start), hi - lo);
      }
    }
  });

  uint64_t claim_lo = 1, claim_hi = 0;  // verified hole range [lo, hi)
  for (uint64_t c = 0; c < count; ++c) {
    if (!is_hole[c]) continue;
    const uint64_t i = f + c;
    if (!(i >= claim_lo && i < claim_hi)) {
      uint64_t claimer = 0;
      claim_lo = verified_hole_start(k, i, nb, &claimer);
      claim_hi = claimer;
    }
    const auto [lo, hi] = covered(i);
    std::memset(out.data() + (lo - off), 0, hi - lo);
  }
  return n;
}

void ContentFile::write(uint64_t off, std::span<const uint8_t> data) {
  std::unique_lock lk(rw_);
  write_locked(off, data);
  if (loose_blocks() > kMaxLoose) {
    // A long stream of writes with no fsync: put it on disk and tighten, so the set stays small.
    barrier_locked();
    tighten_locked();
  }
  lk.unlock();
  if (data.size() >= kWriteBehindBytes) {
    // Large writes are streaming: start the backing file's write-out now, so that the disk works while the next
    // request is encrypted instead of all at the final fsync or close. Only a hint; it waits for nothing.
    const uint64_t B = layout_.block_size();
    const uint64_t from = layout_.slot_offset(off / B), to = layout_.slot_offset((off + data.size() - 1) / B + 1);
    ::sync_file_range(fd_.get(), static_cast<off_t>(from), static_cast<off_t>(to - from), SYNC_FILE_RANGE_WRITE);
  }
}

// Crash ordering (docs/FORMAT.md 6.5). Whatever subset of the writes since the last barrier a power cut keeps
// on top of the durable shape, the file must read as a block-wise mix of its versions. So every pwrite stands
// on its own: its first block's hole claim reaches back over every block that may read as zeros then (to the
// durable end), its last block is flagged final where the file may end there, and a slot whose length it
// changes is in the same pwrite as every later slot it writes. Old final flags and long claims stay (readers
// accept them) until a barrier has put the data on disk (tighten_locked). Where a write depends on an earlier
// step being on disk (its header, a cut), it makes a barrier first.
void ContentFile::write_locked(uint64_t off, std::span<const uint8_t> data) {
  if (data.empty()) return;
  if (off > kMaxPlainSize || data.size() > kMaxPlainSize - off) throw Error(ErrorKind::Io, EFBIG, "file too large");
  const uint64_t B = layout_.block_size();
  uint64_t backing = backing_size();
  const bool need_header = backing < kFileHeaderSize;
  if (need_header) backing = 0;
  const uint64_t nb = layout_.block_count(backing);

  uint64_t d_bytes, d_high;
  bool d_header;
  std::optional<format::FileId> d_id;
  std::optional<uint64_t> d_short;  // the lowest short slot that may be on disk before this write's first block
  {
    std::lock_guard lk(shape_->mu);
    d_bytes = shape_->bytes;
    d_high = shape_->high;
    d_header = shape_->header;
    d_id = shape_->id;
    for (uint64_t s : shape_->short_slots)
      if (s < off / B) {
        d_short = s;
        break;
      }
  }
  // A slot that a power cut may leave short, before the first block written: rewrite from it, in this pwrite.
  {
    const uint64_t f0 = off / B;
    const bool short_last_before = nb > 0 && backing < layout_.slot_offset(nb) && f0 > nb - 1;
    uint64_t from = f0;
    if (short_last_before) from = nb - 1;
    if (d_short) from = std::min(from, *d_short);
    // A header not yet on disk, and a write near the start: rewrite from block 0, the header in the same pwrite,
    // rather than a barrier (a journal file written in a few requests, then fsynced, pays nothing extra).
    if (!need_header && !d_header && f0 > 0 && f0 <= kMaxRewrite && f0 <= nb) from = 0;
    if (from < f0) {
      // Rewriting keeps one pwrite, but not across holes the write leaves (they would become zeros on disk).
      if (f0 - from <= kMaxRewrite && f0 <= nb) {
        const uint64_t lead = off - from * B;
        std::vector<uint8_t> joined(lead + data.size(), 0);
        read_locked(from * B, {joined.data(), static_cast<size_t>(lead)});  // zeros past the end
        std::memcpy(joined.data() + lead, data.data(), data.size());
        write_locked(from * B, joined);
        return;
      }
      // Too far back to rewrite, or past holes: the last block padded to full (still final), then all on disk.
      if (short_last_before) {
        const FileKey& k = key_locked(backing);
        Block b = load_block(k, nb - 1, nb);
        b.plain.resize(B, 0);
        reserve_space(layout_.slot_offset(nb - 1), layout_.slot_size());
        store_block(k, nb - 1, b.hole_before, true, b.plain);
        step_done("pad-old-final");
      }
      barrier_locked();
      write_locked(off, data);
      return;
    }
  }

  // The header. A new one (an empty file) reuses the file ID of any header that may still be on disk.
  const FileKey* kp;
  if (need_header) {
    std::optional<format::FileId> reuse = d_id;
    if (!reuse && d_header) {
      barrier_locked();  // a durable header of unknown ID (the truncate to 0 not yet on disk): make the cut durable
      d_header = false;
      d_bytes = d_high = 0;
    }
    kp = &new_key_locked(reuse);
  } else {
    kp = &key_locked(backing);
  }
  const FileKey& k = *kp;

  const uint64_t size = layout_.plain_size(backing);
  const uint64_t end = off + data.size();
  const bool extends = end > size;
  const uint64_t new_size = std::max(size, end);
  const uint64_t f = off / B, l = (end - 1) / B;
  const uint64_t new_last = extends ? l : nb - 1;
  const uint64_t d_blocks = layout_.block_count(d_bytes);
  // The fewest blocks the file may have after a power cut: blocks from there on may be zeros or gone.
  const uint64_t floor_blocks = std::min(nb, d_blocks);

  auto new_len = [&](uint64_t i) { return i == new_last ? new_size - i * B : B; };

  // Gather what we must know before writing anything: old contents at the edges, hole claims.
  std::optional<Block> first, lastb;
  uint64_t hb_first;
  if (f < nb) {
    first = load_block(k, f, nb);
    hb_first = first->hole_before;
  } else {
    hb_first = f - nb;
  }
  if (f > floor_blocks && f - floor_blocks > hb_first) {
    hb_first = f - floor_blocks;  // the blocks between may read as zeros after a power cut
    note_loose(f);
  }
  if (l != f && l < nb) {
    bool covered = off <= l * B && end >= l * B + new_len(l);
    // A hole at l also matters: the data block that claims it is left with a claim too long.
    if (!covered || l + 1 < nb) lastb = load_block(k, l, nb);
  }
  // A filled hole run: the data block after it keeps its claim (too long now, tolerated) until tightened.
  const Block* at_l = (l == f) ? (first ? &*first : nullptr) : (lastb ? &*lastb : nullptr);
  if (at_l && at_l->hole && l + 1 < nb) {
    uint64_t c = 0;
    verified_hole_start(k, l, nb, &c);
    note_loose(c);
  }

  // The written range as laid out on disk: [wstart, wstart + wlen), the header first when it is not on disk.
  const size_t count = l - f + 1;
  const size_t ns = layout_.nonce_size(), ovh = layout_.overhead(), slot = layout_.slot_size();
  const bool header_here = f == 0 && (need_header || !d_header);
  const size_t hdr = header_here ? kFileHeaderSize : 0;
  const size_t wlen = hdr + (count - 1) * slot + new_len(l) + ovh;
  const uint64_t wstart = layout_.slot_offset(f) - hdr;
  const bool overwrites = wstart < backing;
  if (extends && overwrites) reserve_space(wstart, wlen);

  if (f > 0 && (need_header || !d_header)) {
    if (need_header) {
      auto h = k.header.serialize();
      pwrite_full(fd_.get(), h, 0);
      step_done("header");
    }
    // Blocks whose header a power cut could take away (a new file's) wait until it is on disk.
    if (!d_header) barrier_locked();
  }
  // A short last slot where the disk may still hold a longer one, or more slots (a cut not yet on disk): the
  // cut first, or the old slot's tail would follow the new one.
  const uint64_t last_end = layout_.slot_offset(l) + new_len(l) + ovh;
  if (new_len(l) < B && d_high > last_end) barrier_locked();
  const uint64_t cut_back_to = backing_size();

  // The blocks. Each chunk encrypts its blocks into one buffer and writes them with one pwrite, so that on several
  // cores the copies into the page cache overlap with encryption; each chunk's pwrite stands on its own (its
  // first block claims back, its last is final where the file may end). One pwrite for all of them instead:
  // a write that carries a header not yet on disk (a later chunk must not reach the disk without it), one that
  // extends the file (a stream of appends; chunks would each leave two loose blocks, and this also covers a
  // short last slot lengthened and gone past), and one over a slot that was short since the barrier.
  bool one_pwrite = hdr > 0 || extends;
  {
    std::lock_guard lk(shape_->mu);
    auto it = shape_->short_slots.lower_bound(f);
    if (it != shape_->short_slots.end() && *it < l) one_pwrite = true;
  }
  std::vector<uint8_t> nonces(count * ns);
  random_fill(nonces);
  RawBuffer whole(one_pwrite ? wlen : 0);
  try {
    parallel_for(count, kParallelBlocks, [&](size_t cb, size_t ce) {
      const size_t bbeg = cb == 0 ? 0 : hdr + cb * slot;
      const size_t bend = ce == count ? wlen : hdr + ce * slot;
      RawBuffer own(one_pwrite ? 0 : bend - bbeg);
      uint8_t* wbuf = one_pwrite ? whole.data.get() + bbeg : own.data.get();
      if (cb == 0 && hdr) {
        auto h = k.header.serialize();
        std::memcpy(wbuf, h.data(), h.size());
      }
      std::vector<uint8_t> tmp;
      for (size_t c = cb; c < ce; ++c) {
        uint64_t i = f + c;
        uint64_t blk = i * B, len = new_len(i);
        uint64_t lo = std::max(off, blk), hi = std::min(end, blk + len);
        std::span<const uint8_t> plain;
        if (lo == blk && hi == blk + len) {
          plain = data.subspan(lo - off, len);
        } else {
          tmp.assign(len, 0);
          const Block* old = (i == f) ? (first ? &*first : nullptr) : (i == l && lastb ? &*lastb : nullptr);
          if (old && !old->hole) std::memcpy(tmp.data(), old->plain.data(), std::min<size_t>(old->plain.size(), len));
          std::memcpy(tmp.data() + (lo - blk), data.data() + (lo - off), hi - lo);
          plain = {tmp.data(), len};
        }
        uint64_t hb = 0;
        if (c == 0) {
          hb = hb_first;
        } else if (c == cb && !one_pwrite) {
          hb = hb_first + c;  // the chunks before this one may be lost
          note_loose(i);
        }
        bool final = i == new_last;
        if (!final && c + 1 == ce && !one_pwrite && i + 1 >= floor_blocks) {
          final = true;  // the chunks after this one may be lost, and the file end here
          note_loose(i);
        }
        encrypt_slot(k, i, hb, final, plain, {wbuf + (hdr + c * slot - bbeg), static_cast<size_t>(len + ovh)},
                     {nonces.data() + c * ns, ns});
      }
      if (!one_pwrite) pwrite_full(fd_.get(), {wbuf, bend - bbeg}, wstart + bbeg);
    });
    if (one_pwrite) pwrite_full(fd_.get(), whole.span(0, wlen), wstart);
  } catch (const Error&) {
    // Dropping what got written past the old end restores the file as it was when nothing before it was
    // overwritten, and when what was is the same data re-encrypted (a rewrite from an earlier block): a failing
    // write gets that far (a full disk was excluded by reserve_space, a size limit is past the old end).
    if (extends && backing_size() > cut_back_to && ::ftruncate(fd_.get(), static_cast<off_t>(cut_back_to)) != 0) {
      // The file keeps a torn tail, which reads as EIO; the error already being reported says the write failed.
    }
    // A rewritten old last block went out as a block in the middle: it is the last one again.
    if (extends && overwrites && cut_back_to > kFileHeaderSize) {
      try {
        reseal_last_locked(cut_back_to);
      } catch (const Error&) {
        // Left as the failed write left it; reads report it, and the error being thrown says the write failed.
      }
    }
    throw;
  }
  step_done("new-blocks");
  // The old final block keeps its flag (the new blocks may not reach the disk) until tightened.
  if (extends && nb > 0 && nb - 1 < f) note_loose(nb - 1);
  note_written(new_size % B && new_last >= f && new_last <= l ? std::optional<uint64_t>(new_last) : std::nullopt);
}

void ContentFile::reserve_space(uint64_t at, uint64_t len) {
  // A write that rewrites existing bytes reserves its space first, so that a full disk fails it before anything
  // is overwritten. A write wholly past the old end needs no reservation: if it fails, the file is cut back to
  // where it ended, which is cheaper than reserving (fallocate) on every append.
  if (::fallocate(fd_.get(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(at), static_cast<off_t>(len)) != 0 &&
      errno != EOPNOTSUPP && errno != ENOSYS)
    throw_errno("reserve space");
}

void ContentFile::truncate(uint64_t new_size) {
  std::unique_lock lk(rw_);
  if (new_size > kMaxPlainSize) throw Error(ErrorKind::Io, EFBIG, "file too large");
  const uint64_t backing = backing_size();
  const uint64_t size = layout_.plain_size(backing);
  if (new_size == 0) {
    if (backing == 0) return;
    if (backing >= kFileHeaderSize) {
      try {
        key_locked(backing);  // its file ID is the next header's (DurableShape::id)
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::Auth) throw;
      }
    }
    if (::ftruncate(fd_.get(), 0) != 0) throw_errno("ftruncate");
    note_written();
    return;
  }
  if (new_size == size && backing == layout_.backing_size(size)) return;
  const uint64_t B = layout_.block_size();
  const uint64_t last = (new_size - 1) / B;
  if (new_size > size) {
    // Growing writes only the new final block; the blocks between stay holes.
    uint64_t start = std::max(size, last * B);
    std::vector<uint8_t> zeros(new_size - start, 0);
    write_locked(start, zeros);
    return;
  }
  const FileKey& k = key_locked(backing);
  const uint64_t nb = layout_.block_count(backing);
  Block b = load_block(k, last, nb);
  std::vector<uint8_t> plain = std::move(b.plain);
  plain.resize(new_size - last * B, 0);
  auto cut_to = [&](uint64_t backing_len) {
    if (::ftruncate(fd_.get(), static_cast<off_t>(backing_len)) != 0) throw_errno("ftruncate");
    note_written();
  };
  // Each step below depends on the one before it being on disk: a barrier between them (a shrinking truncate
  // to a size > 0 costs one or two fdatasyncs; truncates to 0 and growing ones none).
  if (plain.size() == B) {
    // Block-aligned: the new final block rewritten in place at the same length, flagged final (tolerated in the
    // middle of a file), then the cut.
    store_block(k, last, b.hole_before, true, plain);
    step_done("new-final");
    barrier_locked();
    cut_to(layout_.slot_offset(last + 1));
    step_done("cut");
    return;
  }
  // A shorter final block cannot be rewritten in place: between that write and the cut, its slot would be
  // followed by the old slot's tail. Instead end the file at the block before it (made final first), then
  // append the short block: every state is the old file, a prefix of it, or the new one.
  if (last == 0) {
    cut_to(kFileHeaderSize);  // a header-only file reads as empty
    step_done("cut-before");
    barrier_locked();
    store_block(k, 0, 0, true, plain);
    note_written(0);
    step_done("new-final");
    return;
  }
  Block prev = load_block(k, last - 1, nb);
  std::vector<uint8_t> prev_plain = prev.hole ? std::vector<uint8_t>(B, 0) : std::move(prev.plain);
  // A hole before the new final block becomes a data block of zeros: a file never ends in a hole. The data
  // block that claimed it keeps a claim one block too long, which readers accept (it still covers every hole).
  store_block(k, last - 1, prev.hole_before, true, prev_plain);
  step_done("prev-final");
  barrier_locked();
  cut_to(layout_.slot_offset(last));
  step_done("cut-before");
  barrier_locked();
  store_block(k, last, 0, true, plain);
  note_written(last);
  note_loose(last - 1);  // its final flag goes when tightened
  step_done("new-final");
}

bool ContentFile::reseal_end() {
  if (!writable_) return false;
  const VerifyResult r = verify();
  if (!r.cut_at_block_boundary) return false;
  std::unique_lock lk(rw_);
  const uint64_t backing = backing_size();
  const uint64_t nb = layout_.block_count(backing);
  if (backing != r.backing_size || nb == 0) return false;  // changed since
  reseal_last_locked(backing);
  barrier_locked();
  return true;
}

void ContentFile::reseal_last_locked(uint64_t backing) {
  const uint64_t nb = layout_.block_count(backing);
  const FileKey& k = key_locked(backing);
  std::vector<uint8_t> slot(layout_.slot_size());
  slot.resize(pread_full(fd_.get(), slot, layout_.slot_offset(nb - 1)));
  std::vector<uint8_t> plain(layout_.block_size());
  uint64_t hb = 0;
  // Decrypted as a block in the middle (final or not): it authenticates, only its place is wrong.
  plain.resize(decrypt_slot(k, nb - 1, /*last=*/false, slot, plain, &hb));
  store_block(k, nb - 1, hb, true, plain);
}

bool ContentFile::drop_empty_header() {
  if (!writable_) return false;
  const VerifyResult r = verify();
  if (!r.header_only()) return false;
  std::unique_lock lk(rw_);
  if (backing_size() != r.backing_size) return false;
  if (::ftruncate(fd_.get(), 0) != 0) throw_errno("ftruncate");
  barrier_locked();
  return true;
}

std::optional<uint64_t> VerifyResult::first_bad_block() const {
  if (header != Header::Ok || header_only()) return 0;
  if (last_slot_too_short) return blocks - 1;
  if (!bad_ranges.empty()) return bad_ranges.front().first;
  return std::nullopt;
}

std::optional<uint64_t> ContentFile::first_bad_block() const {
  VerifyOptions opt;
  opt.max_ranges = 1;
  return verify(opt).first_bad_block();
}

VerifyResult ContentFile::verify(const VerifyOptions& opt) const {
  std::shared_lock lk(rw_);
  VerifyResult r;
  const uint64_t backing = backing_size();
  r.backing_size = backing;
  if (backing == 0) return r;  // an empty file has no header
  const auto header = read_header(backing, &r.header, &r.header_error);
  if (!header) return r;
  const uint64_t nb = layout_.block_count(backing);
  r.blocks = nb;
  // A header without blocks reads as empty (it is also what a first write at an offset leaves if interrupted
  // after the header), but written data may be missing: fsck reports it (docs/FORMAT.md, open question 11).
  if (nb == 0) return r;
  r.last_slot_size = backing - layout_.slot_offset(nb - 1);
  if (r.last_slot_size <= layout_.overhead()) {
    // read() refuses any read up to the end before looking at a block (see there): nothing else to learn.
    r.last_slot_too_short = true;
    return r;
  }
  // The key of the header as it is on disk now, not a cached one: verification must not trust earlier reads.
  const FileKey k{*header, cipher_->file_aead(header->id)};

  const uint64_t B = layout_.block_size();
  const size_t slot = layout_.slot_size();
  const size_t max_ranges = std::max<size_t>(1, opt.max_ranges);
  auto damage = [](const Error& e) { return e.kind() == ErrorKind::Auth || e.kind() == ErrorKind::Corrupt; };
  auto mark_bad = [&](uint64_t a, uint64_t b) {  // blocks [a, b], called in ascending order
    r.bad_blocks += b - a + 1;
    if (!r.bad_ranges.empty() && r.bad_ranges.back().second + 1 == a)
      r.bad_ranges.back().second = b;
    else if (r.bad_ranges.size() < max_ranges)
      r.bad_ranges.emplace_back(a, b);
    else
      r.more_ranges = true;
  };
  auto progress = [&](uint64_t bytes) {
    if (opt.on_progress) opt.on_progress(bytes);
  };
  // Blocks [a, b) are whole all-zero slots, so they share one claimer (the next data slot after them), whose
  // claim covers a suffix of them or none: one hole check at b - 1 says where the good suffix starts.
  auto zero_run = [&](uint64_t a, uint64_t b) {
    uint64_t start = 0;
    try {
      start = verified_hole_start(k, b - 1, nb);
    } catch (const Error& e) {
      if (!damage(e)) throw;
      mark_bad(a, b - 1);
      return;
    }
    if (start > a) mark_bad(a, start - 1);
  };

  // Blocks [first, first + count): read into one buffer and classified, data slots decrypted on several cores
  // (as read() does). judge() then marks the bad ones, checking each run of zero slots once, in order.
  enum : uint8_t { kGood, kBad, kZero };
  const uint64_t per_chunk = std::max<uint64_t>(1, opt.chunk_bytes / B);
  RawBuffer cbuf(static_cast<size_t>(per_chunk) * slot);
  std::vector<uint8_t> state(per_chunk);
  auto classify = [&](uint64_t first, uint64_t count) {
    const uint64_t from = layout_.slot_offset(first);
    const size_t len = static_cast<size_t>(std::min<uint64_t>(count * slot, backing - from));
    const size_t got = pread_full(fd_.get(), cbuf.span(0, len), from);
    parallel_for(count, kParallelBlocks, [&](size_t cb, size_t ce) {
      std::vector<uint8_t> plain(B);
      for (size_t c = cb; c < ce; ++c) {
        const uint64_t i = first + c;
        const size_t sb = std::min(c * slot, got);
        const auto s = std::span<const uint8_t>(cbuf.data.get() + sb, std::min(slot, got - sb));
        if (s.size() == slot && slot_is_zero(s)) {
          state[c] = kZero;
          continue;
        }
        try {
          decrypt_slot(k, i, i + 1 == nb, s, plain, nullptr);
          state[c] = kGood;
        } catch (const Error& e) {
          if (!damage(e)) throw;
          state[c] = kBad;
        }
      }
    });
  };
  auto judge = [&](uint64_t first, uint64_t count) {
    for (uint64_t c = 0; c < count;) {
      if (state[c] == kZero) {
        uint64_t e = c + 1;
        while (e < count && state[e] == kZero) ++e;
        zero_run(first + c, first + e);
        c = e;
      } else {
        if (state[c] == kBad) mark_bad(first + c, first + c);
        ++c;
      }
    }
  };

  for (uint64_t i = 0; i < nb;) {
    // An unallocated stretch is one hole run: checking its first block authenticates all of it (the data block
    // that claims the run is checked then), so a 10 GiB sparse file costs no 10 GiB of reads.
    const off_t so = static_cast<off_t>(layout_.slot_offset(i));
    const off_t data = ::lseek(fd_.get(), so, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
      // Nothing but zeros from here on: if slot i is not vouched for, no data block can claim the rest either.
      const uint64_t before = r.bad_blocks;
      classify(i, 1);
      judge(i, 1);
      if (r.bad_blocks > before && i + 1 < nb) mark_bad(i + 1, nb - 1);
      break;
    }
    if (data > so) {
      // Slots i+1 .. j-1 lie wholly in the unallocated range: zeros, in the same run as slot i (which does too
      // unless data starts inside it, and then j is i + 1).
      const uint64_t j = std::max(i + 1, std::min((static_cast<uint64_t>(data) - kFileHeaderSize) / slot, nb));
      classify(i, 1);
      if (state[0] == kZero) {
        zero_run(i, j);
      } else {
        if (state[0] == kBad) mark_bad(i, i);
        if (j > i + 1) zero_run(i + 1, j);
      }
      progress((j - i) * B);
      i = j;
      continue;
    }
    const uint64_t count = std::min(per_chunk, nb - i);
    classify(i, count);
    judge(i, count);
    progress(count * B);
    i += count;
  }

  // A block-aligned cut leaves a last block that authenticates as "not final": name it for what it is.
  if (r.bad_blocks == 1 && r.bad_ranges.front().first == nb - 1 && r.last_slot_size == slot) {
    std::vector<uint8_t> s(slot), plain(B);
    if (pread_full(fd_.get(), s, layout_.slot_offset(nb - 1)) == slot) {
      try {
        // As a middle block: the final=false associated data is tried first (final=true already failed).
        decrypt_slot(k, nb - 1, /*last=*/false, s, plain, nullptr);
        r.cut_at_block_boundary = true;
      } catch (const Error& e) {
        if (!damage(e)) throw;
      }
    }
  }
  return r;
}

void ContentFile::forget_header() {
  std::unique_lock w(rw_);  // readers hold references to the cached key
  std::lock_guard k(key_mu_);
  key_.reset();
  // Whatever header is on disk now is another writer's: its file ID is not ours to reuse (6.4).
  std::lock_guard lk(shape_->mu);
  shape_->id.reset();
}

}  // namespace veil
