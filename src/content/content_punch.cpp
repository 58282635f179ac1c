// ContentFile::zero_range and ContentFile::extend: fallocate's PUNCH_HOLE and ZERO_RANGE, and growing without a
// race, kept apart from the write and truncate paths of content_file.cpp (docs/FORMAT.md, 6.3 and 6.5).
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <vector>

#include "veilfs/content/content_file.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil {

using format::kFileHeaderSize;

namespace {
constexpr uint64_t kScanSlots = 64;             // slots read at a time when looking for data among zeros
constexpr size_t kZeroChunk = size_t{1} << 20;  // zeros written at a time where the backing file has no fallocate
}  // namespace

uint64_t ContentFile::zero_run_start(uint64_t from, uint64_t to) const {
  // The claim that says where a run starts may reach back over data blocks (an interrupted write leaves such a
  // claim, 6.3): the new claim must not, or those blocks could be zeroed undetected. Unallocated ranges are
  // skipped without reading; allocated slots are read and checked.
  const size_t slot = layout_.slot_size();
  std::vector<uint8_t> buf;
  // The slots right before `to` first: in a dense file the run ends there (tightening a long claim, whose
  // reach may be the whole file, costs one read instead of a scan of everything before it).
  if (to > from) {
    const uint64_t lo = to - std::min<uint64_t>(4, to - from);
    buf.resize((to - lo) * slot);
    const size_t got = pread_full(fd_.get(), buf, layout_.slot_offset(lo));
    for (uint64_t t = to; t > lo; --t) {
      const size_t b = static_cast<size_t>((t - 1 - lo) * slot);
      if (b + slot > got || !slot_is_zero({buf.data() + b, slot})) return t;
    }
    to = lo;  // all zeros: the rest is scanned forwards, skipping what is unallocated
  }
  uint64_t start = from;
  for (uint64_t i = from; i < to;) {
    off_t data = ::lseek(fd_.get(), static_cast<off_t>(layout_.slot_offset(i)), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      data = static_cast<off_t>(layout_.slot_offset(i));
    }
    const uint64_t j = std::max(i, (static_cast<uint64_t>(data) - kFileHeaderSize) / slot);
    if (j >= to) break;
    const uint64_t count = std::min(kScanSlots, to - j);
    buf.resize(count * slot);
    const size_t got = pread_full(fd_.get(), buf, layout_.slot_offset(j));
    for (uint64_t t = 0; t < count; ++t) {
      const size_t b = static_cast<size_t>(t * slot);
      if (b + slot > got || !slot_is_zero({buf.data() + b, slot})) start = j + t + 1;
    }
    i = j + count;
  }
  return start;
}

void ContentFile::clear_slots(uint64_t first, uint64_t end, Space space) {
  const off_t at = static_cast<off_t>(layout_.slot_offset(first));
  const off_t len = static_cast<off_t>(layout_.slot_offset(end)) - at;
  const int fd = fd_.get();
  const int mode = FALLOC_FL_KEEP_SIZE | (space == Space::Keep ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
  if (::fallocate(fd, mode, at, len) == 0) return;
  int err = errno;
  // No ZERO_RANGE (tmpfs, or it failed): punch, then allocate again, which is the same to a reader.
  if (space == Space::Keep && ::fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, at, len) == 0) {
    if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, at, len) != 0) {
      // The zeros are there; only the reservation is missing, as where the backing file system has none.
    }
    return;
  }
  // No way to deallocate at all: write the zeros. The file is as valid, only not sparse.
  if (err != EOPNOTSUPP && err != ENOSYS && err != ENOSPC) throw_errno("zero backing range");
  std::vector<uint8_t> zeros(static_cast<size_t>(std::min<off_t>(len, static_cast<off_t>(kZeroChunk))), 0);
  for (off_t pos = 0; pos < len;) {
    const size_t n = static_cast<size_t>(std::min<off_t>(len - pos, static_cast<off_t>(zeros.size())));
    pwrite_full(fd, {zeros.data(), n}, static_cast<uint64_t>(at + pos));
    pos += static_cast<off_t>(n);
  }
}

void ContentFile::zero_range(uint64_t off, uint64_t len, Space space) {
  std::unique_lock lk(rw_);
  const uint64_t backing = backing_size();
  const uint64_t size = layout_.plain_size(backing);
  if (len == 0 || off >= size) return;
  const uint64_t end = size - off < len ? size : off + len;  // what lies past the end is not the file's
  const FileKey& k = key_locked(backing);
  const uint64_t B = layout_.block_size();
  const uint64_t nb = layout_.block_count(backing), L = nb - 1;
  if ((size - 1) / B != L) fail_auth(L);  // a last slot too short to hold data: cut or corrupt (as read())

  // Blocks [h0, h1) are wholly covered and become holes; the last block never does. At most two blocks are
  // covered in part (or, for the last one, wholly) and keep their data slot, rewritten with zeros: head (off
  // inside it) and tail (end inside it, or the last block). When the run is not empty, tail is h1.
  const uint64_t fb = (off + B - 1) / B, fe = end / B;
  const uint64_t h0 = fb, h1 = std::min(fe, L);
  const bool run = h0 < h1;
  std::optional<uint64_t> head, tail;
  if (off % B) head = off / B;
  if (end == size && L >= fb)
    tail = L;
  else if (end % B && fe >= fb)
    tail = fe;
  std::optional<Block> tb, hb;
  if (tail) tb = load_block(k, *tail, nb);
  if (head) hb = load_block(k, *head, nb);
  auto zeroed = [&](Block& b, uint64_t i, uint64_t lo, uint64_t hi) {
    std::fill(b.plain.begin() + static_cast<std::ptrdiff_t>(lo - i * B),
              b.plain.begin() + static_cast<std::ptrdiff_t>(hi - i * B), uint8_t{0});
  };
  if (tb && !tb->hole) zeroed(*tb, *tail, *tail * B, end);
  if (hb && !hb->hole) zeroed(*hb, *head, off, std::min(end, *head * B + hb->plain.size()));

  bool tail_done = !tb || tb->hole;
  if (run) {
    // The run joins the holes right before it: the new claim reaches back to the start of all of them.
    const Block b0 = load_block(k, h0, nb);
    const uint64_t s = zero_run_start(h0 - b0.hole_before, h0);
    // The data block that will vouch for the run: the tail if it holds data, else the first data slot after
    // h1 (the last block at the latest).
    uint64_t j = h1;
    Block claimer;
    if (tb && !tb->hole) {
      claimer = std::move(*tb);
      tail_done = true;
    } else {
      claimer = tb ? std::move(*tb) : load_block(k, h1, nb);
      if (claimer.hole) {
        verified_hole_start(k, h1, nb, &j);
        claimer = load_block(k, j, nb);
      }
    }
    // Step 1: the claim first. Until the run is cleared its blocks still hold data, which readers accept under
    // a claim (they decrypt on their own), so the file reads as before, apart from the zeroed tail.
    if (claimer.hole_before != j - s || j == tail) {
      store_block(k, j, j - s, j == L, claimer.plain);
      note_written();
      step_done("punch-claim");
    }
    // The claim on disk before any slot is cleared: a power cut must not keep zeros that no claim covers.
    if (unsynced()) barrier_locked();
    // Step 2: the run's slots become zeros (unallocated or not), now vouched for.
    clear_slots(h0, h1, space);
    note_written();
    step_done("punch-slots");
  }
  // Steps 3 and 4: the partly covered blocks, rewritten in place at their length with their claim and flag.
  if (!tail_done) {
    store_block(k, *tail, tb->hole_before, *tail == L, tb->plain);
    note_written();
    step_done("punch-tail");
  }
  if (hb && !hb->hole) {
    store_block(k, *head, hb->hole_before, *head == L, hb->plain);
    note_written();
    step_done("punch-head");
  }
}

void ContentFile::extend(uint64_t new_size) {
  std::unique_lock lk(rw_);
  const uint64_t size = layout_.plain_size(backing_size());
  if (new_size <= size) return;
  // As a growing truncate: only the new final block is written; write_locked refuses a size past the limit.
  const uint64_t B = layout_.block_size();
  const uint64_t start = std::max(size, (new_size - 1) / B * B);
  std::vector<uint8_t> zeros(new_size - start, 0);
  write_locked(start, zeros);
}

}  // namespace veil
