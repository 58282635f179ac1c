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

ContentFile::ContentFile(std::shared_ptr<const ContentCipher> cipher, UniqueFd fd, std::string label)
    : cipher_(std::move(cipher)), layout_(cipher_->layout()), fd_(std::move(fd)), label_(std::move(label)) {}

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

const ContentFile::FileKey& ContentFile::new_key_locked() {
  std::lock_guard lk(key_mu_);
  auto h = format::FileHeader::fresh();
  key_ = std::make_unique<FileKey>(FileKey{h, cipher_->file_aead(h.id)});
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
  lk.unlock();
  if (data.size() >= kWriteBehindBytes) {
    // Large writes are streaming: start the backing file's write-out now, so that the disk works while the next
    // request is encrypted instead of all at the final fsync or close. Only a hint; it waits for nothing.
    const uint64_t B = layout_.block_size();
    const uint64_t from = layout_.slot_offset(off / B), to = layout_.slot_offset((off + data.size() - 1) / B + 1);
    ::sync_file_range(fd_.get(), static_cast<off_t>(from), static_cast<off_t>(to - from), SYNC_FILE_RANGE_WRITE);
  }
}

void ContentFile::write_locked(uint64_t off, std::span<const uint8_t> data) {
  if (data.empty()) return;
  if (off > kMaxPlainSize || data.size() > kMaxPlainSize - off) throw Error(ErrorKind::Io, EFBIG, "file too large");
  const uint64_t B = layout_.block_size();
  uint64_t backing = backing_size();
  const bool need_header = backing < kFileHeaderSize;
  const FileKey& k = need_header ? new_key_locked() : key_locked(backing);
  if (need_header) backing = 0;

  const uint64_t nb = layout_.block_count(backing);
  const uint64_t size = layout_.plain_size(backing);
  const uint64_t end = off + data.size();
  const bool extends = end > size;
  const uint64_t new_size = std::max(size, end);
  const uint64_t f = off / B, l = (end - 1) / B;
  const uint64_t new_last = extends ? l : nb - 1;
  const bool old_last_outside = extends && nb > 0 && nb - 1 < f;  // old final block must lose its flag

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
  if (l != f && l < nb) {
    bool covered = off <= l * B && end >= l * B + new_len(l);
    // A hole at l also matters: the data block that claims it must have its claim shortened.
    if (!covered || l + 1 < nb) lastb = load_block(k, l, nb);
  }
  // Data block after the written range whose hole claim shrinks (only when l was inside a hole run).
  std::optional<uint64_t> claimer;
  std::optional<Block> claimer_block;
  const Block* at_l = (l == f) ? (first ? &*first : nullptr) : (lastb ? &*lastb : nullptr);
  if (at_l && at_l->hole && l + 1 < nb) {
    uint64_t c = 0;
    verified_hole_start(k, l, nb, &c);
    claimer = c;
    claimer_block = load_block(k, c, nb);
  }
  std::optional<Block> old_last;
  if (old_last_outside) old_last = load_block(k, nb - 1, nb);

  // The written range as laid out on disk: [wstart, wstart + wlen), the header first for a new file.
  const size_t count = l - f + 1;
  const size_t ns = layout_.nonce_size(), ovh = layout_.overhead(), slot = layout_.slot_size();
  const size_t hdr = (need_header && f == 0) ? kFileHeaderSize : 0;
  const size_t wlen = hdr + (count - 1) * slot + new_len(l) + ovh;
  const uint64_t wstart = layout_.slot_offset(f) - hdr;
  // A write that rewrites existing bytes reserves its space first, so that a full disk fails it before anything is
  // overwritten. A write wholly past the old end needs no reservation: if it fails, the file is cut back to where
  // it ended, which is cheaper than reserving (fallocate) on every append.
  const bool overwrites = wstart < backing;
  const bool pad_old_last = old_last_outside && old_last->plain.size() < B;
  auto reserve = [&](uint64_t at, uint64_t len) {
    if (::fallocate(fd_.get(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(at), static_cast<off_t>(len)) != 0 &&
        errno != EOPNOTSUPP && errno != ENOSYS)
      throw_errno("reserve space");
  };
  if (extends && overwrites) reserve(wstart, wlen);
  if (pad_old_last) reserve(layout_.slot_offset(nb - 1), slot);

  // Order matters for crash safety: every intermediate state is a readable file.
  std::vector<uint8_t> padded;
  if (old_last_outside) {
    padded = old_last->plain;
    padded.resize(B, 0);
    // Step 1: a short final block becomes a full final block (the file grows with zeros).
    if (pad_old_last) {
      store_block(k, nb - 1, old_last->hole_before, true, padded);
      step_done("pad-old-final");
    }
  }
  if (need_header && !hdr) {
    auto h = k.header.serialize();
    pwrite_full(fd_.get(), h, 0);
    step_done("header");
  }
  const uint64_t cut_back_to = overwrites ? 0 : backing_size();

  // Step 2: the new blocks, the last of them final. Each chunk encrypts its blocks into one buffer and writes them
  // with one pwrite, so that on several cores the copies into the page cache overlap with encryption.
  std::vector<uint8_t> nonces(count * ns);
  random_fill(nonces);
  try {
    parallel_for(count, kParallelBlocks, [&](size_t cb, size_t ce) {
      const size_t bbeg = cb == 0 ? 0 : hdr + cb * slot;
      const size_t bend = ce == count ? wlen : hdr + ce * slot;
      RawBuffer wbuf(bend - bbeg);
      if (cb == 0 && hdr) {
        auto h = k.header.serialize();
        std::memcpy(wbuf.data.get(), h.data(), h.size());
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
        encrypt_slot(k, i, i == f ? hb_first : 0, i == new_last, plain, wbuf.span(hdr + c * slot - bbeg, len + ovh),
                     {nonces.data() + c * ns, ns});
      }
      pwrite_full(fd_.get(), wbuf.span(0, wbuf.size), wstart + bbeg);
    });
  } catch (const Error&) {
    // Past the old end nothing was overwritten: dropping what did get written restores the file as it was.
    if (!overwrites && ::ftruncate(fd_.get(), static_cast<off_t>(cut_back_to)) != 0) {
      // The file keeps a torn tail, which reads as EIO; the error already being reported says the write failed.
    }
    throw;
  }
  step_done("new-blocks");
  // Step 3: the old final block is no longer final.
  if (old_last_outside) {
    store_block(k, nb - 1, old_last->hole_before, false, padded);
    step_done("unfinal-old");
  }
  // Step 4: the data block after a filled hole claims fewer hole blocks.
  if (claimer && !claimer_block->hole) {
    store_block(k, *claimer, *claimer - l - 1, *claimer + 1 == nb, claimer_block->plain);
    step_done("shrink-claim");
  }
}

void ContentFile::truncate(uint64_t new_size) {
  std::unique_lock lk(rw_);
  if (new_size > kMaxPlainSize) throw Error(ErrorKind::Io, EFBIG, "file too large");
  const uint64_t backing = backing_size();
  const uint64_t size = layout_.plain_size(backing);
  if (new_size == 0) {
    if (backing == 0) return;
    if (::ftruncate(fd_.get(), 0) != 0) throw_errno("ftruncate");
    std::lock_guard kl(key_mu_);
    key_.reset();  // the next write starts a new file with a new ID and key
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
  };
  if (plain.size() == B) {
    // Block-aligned: rewrite the new final block in place at the same length, flagged final (tolerated in the
    // middle of a file), then cut. Every intermediate state is a valid file.
    store_block(k, last, b.hole_before, true, plain);
    step_done("new-final");
    cut_to(layout_.slot_offset(last + 1));
    step_done("cut");
    return;
  }
  // A shorter final block cannot be rewritten in place: between that write and the cut, its slot would be
  // followed by the old slot's tail and fail authentication, leaving the end of the file unreadable after a
  // crash. Instead end the file at the block before it (made final first), then append the short block, so
  // that every intermediate state is a valid file: the old one, a prefix of it, or the new one.
  if (last == 0) {
    cut_to(kFileHeaderSize);  // a header-only file reads as empty
    step_done("cut-before");
    store_block(k, 0, 0, true, plain);
    step_done("new-final");
    return;
  }
  Block prev = load_block(k, last - 1, nb);
  std::vector<uint8_t> prev_plain = prev.hole ? std::vector<uint8_t>(B, 0) : std::move(prev.plain);
  // A hole before the new final block becomes a data block of zeros: a file never ends in a hole. The data
  // block that claimed it keeps a claim one block too long, which readers accept (it still covers every hole).
  store_block(k, last - 1, prev.hole_before, true, prev_plain);
  step_done("prev-final");
  cut_to(layout_.slot_offset(last));
  step_done("cut-before");
  store_block(k, last, 0, true, plain);
  step_done("new-final");
  store_block(k, last - 1, prev.hole_before, false, prev_plain);
  step_done("prev-unfinal");
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
}

}  // namespace veil
