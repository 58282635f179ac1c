#include "veilfs/reverse/reverse_view.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "veilfs/crypto/kdf.hpp"
#include "veilfs/format/block_layout.hpp"
#include "veilfs/format/file_header.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::reverse {

namespace {

constexpr std::string_view kFileIdLabel = "veilfs reverse file id v1";
constexpr std::string_view kBlockLabel = "veilfs reverse block v1";
constexpr std::string_view kLinkLabel = "veilfs reverse symlink v1";

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string join(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

// Birth time in nanoseconds (0 where the plain file system does not keep one): with the inode number, what tells
// a file from a later one that reuses its number.
uint64_t birth_of(int fd) {
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) != 0 || !(sx.stx_mask & STATX_BTIME))
    return 0;
  return static_cast<uint64_t>(sx.stx_btime.tv_sec) * 1000000000u + sx.stx_btime.tv_nsec;
}

bool same_version(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

// veilfs's own files of the view: their bytes are known in full.
class BytesReader : public ReverseView::Reader {
 public:
  explicit BytesReader(std::string bytes) : bytes_(std::move(bytes)) {}
  size_t read(uint64_t off, std::span<uint8_t> out) const override {
    if (off >= bytes_.size()) return 0;
    const size_t n = std::min<uint64_t>(out.size(), bytes_.size() - off);
    std::memcpy(out.data(), bytes_.data() + off, n);
    return n;
  }

 private:
  std::string bytes_;
};

}  // namespace

struct ReverseView::Keys {
  SecretBytes id, block, link;
};

// A plain regular file read as its cipher file: header, then each block encrypted on demand from one pread.
class ReverseView::FileReader : public ReverseView::Reader {
 public:
  FileReader(const ReverseView& view, UniqueFd fd, const struct stat& st)
      : view_(view),
        fd_(std::move(fd)),
        opened_(st),
        id_(view.file_id(st, birth_of(fd_.get()))),
        aead_(view.vol_.content()->file_aead(id_)),
        layout_(view.vol_.content()->layout()) {
    format::FileHeader h;
    h.id = id_;
    header_ = h.serialize();
    find_data(static_cast<uint64_t>(st.st_size));
  }

  size_t read(uint64_t off, std::span<uint8_t> out) const override {
    struct stat now;
    if (::fstat(fd_.get(), &now) != 0) throw_errno("fstat plain file");
    // The plain file changed since it was opened: its blocks and its length would disagree.
    if (!same_version(now, opened_)) throw Error(ErrorKind::Io, ESTALE, "the plain file changed while being read");
    const uint64_t plain_size = static_cast<uint64_t>(now.st_size);
    const uint64_t total = layout_.backing_size(plain_size);
    if (off >= total || out.empty()) return 0;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), total - off));
    size_t done = 0;
    if (off < format::kFileHeaderSize) {
      const size_t n = std::min<size_t>(want, format::kFileHeaderSize - off);
      std::memcpy(out.data(), header_.data() + off, n);
      done = n;
    }
    const uint64_t blocks = layout_.block_count(total);
    std::vector<uint8_t> slot(layout_.slot_size()), plain(layout_.block_size());
    while (done < want) {
      const uint64_t pos = off + done;
      const uint64_t index = (pos - format::kFileHeaderSize) / layout_.slot_size();
      const uint64_t in_slot = (pos - format::kFileHeaderSize) % layout_.slot_size();
      const bool last = index + 1 == blocks;
      size_t len;
      if (!last && is_hole(index, plain_size)) {
        // A hole of the plain file stays a hole: an all-zero slot, which the next data block's claim covers.
        len = layout_.slot_size();
        std::fill(slot.begin(), slot.end(), 0);
      } else {
        len = encrypt_block(index, last, hole_before(index, plain_size), plain_size, plain, slot);
      }
      const size_t n = std::min<size_t>(want - done, len - in_slot);
      std::memcpy(out.data() + done, slot.data() + in_slot, n);
      done += n;
    }
    return done;
  }

 private:
  // Slot `index` into slot; returns its length (short for a short last block).
  // The plain file's data extents (SEEK_DATA / SEEK_HOLE), once at open: everything else reads as zeros.
  void find_data(uint64_t size) {
    off_t pos = 0;
    while (static_cast<uint64_t>(pos) < size && data_.size() < kMaxExtents) {
      const off_t d = ::lseek(fd_.get(), pos, SEEK_DATA);
      if (d < 0) break;  // ENXIO: only a hole is left (or the file system cannot tell: then all is data)
      const off_t h = ::lseek(fd_.get(), d, SEEK_HOLE);
      if (h < 0) {
        data_.push_back({static_cast<uint64_t>(d), size});
        return;
      }
      data_.push_back({static_cast<uint64_t>(d), static_cast<uint64_t>(h)});
      pos = h;
    }
    if (data_.size() >= kMaxExtents) data_ = {{0, size}};  // too fragmented to be worth it: every block stored
    if (::lseek(fd_.get(), 0, SEEK_DATA) < 0 && errno == EINVAL) data_ = {{0, size}};  // no SEEK_DATA here
  }
  // Whether no data extent overlaps block index.
  bool is_hole(uint64_t index, uint64_t plain_size) const {
    const uint64_t lo = index * layout_.block_size(), hi = std::min<uint64_t>(lo + layout_.block_size(), plain_size);
    auto it = std::upper_bound(data_.begin(), data_.end(), lo, [](uint64_t v, const auto& e) { return v < e.second; });
    return it == data_.end() || it->first >= hi;  // the first extent ending after lo starts at or after hi
  }
  // How many hole blocks lie immediately before block index.
  uint64_t hole_before(uint64_t index, uint64_t plain_size) const {
    const uint64_t lo = index * layout_.block_size();
    // The last extent that starts before lo: its last byte is in the nearest data block before this one.
    auto it = std::lower_bound(data_.begin(), data_.end(), lo, [](const auto& e, uint64_t v) { return e.first < v; });
    if (it == data_.begin()) return index;
    const uint64_t last_byte = std::min<uint64_t>(std::prev(it)->second, plain_size) - 1;
    const uint64_t prev = last_byte / layout_.block_size();
    return prev >= index ? 0 : index - prev - 1;
  }

  size_t encrypt_block(uint64_t index, bool final, uint64_t hole_before, uint64_t plain_size,
                       std::vector<uint8_t>& plain, std::vector<uint8_t>& slot) const {
    const uint64_t start = index * layout_.block_size();
    const size_t len = static_cast<size_t>(std::min<uint64_t>(layout_.block_size(), plain_size - start));
    size_t got = 0;
    while (got < len) {
      ssize_t r = ::pread(fd_.get(), plain.data() + got, len - got, static_cast<off_t>(start + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw_errno("read plain file");
      }
      if (r == 0) throw Error(ErrorKind::Io, ESTALE, "the plain file shrank while being read");
      got += static_cast<size_t>(r);
    }
    const std::span<const uint8_t> p(plain.data(), len);
    const size_t ns = layout_.nonce_size();
    // Deterministic nonce: a keyed hash of everything the block's ciphertext depends on.
    // Everything the slot's AAD holds is in the nonce too: one nonce never serves two AADs.
    uint8_t head[format::kFileIdSize + 17];
    std::copy(id_.begin(), id_.end(), head);
    put_u64(head + format::kFileIdSize, index);
    put_u64(head + format::kFileIdSize + 8, hole_before);
    head[format::kFileIdSize + 16] = final ? 1 : 0;
    uint8_t nonce[32];
    blake2b_keyed(std::span(nonce, 32), view_.keys_->block.span(), {bytes_of(kBlockLabel), {head, sizeof head}, p});
    std::memcpy(slot.data(), nonce, ns);
    put_u64(slot.data() + ns, hole_before);
    const auto aad = format::BlockLayout::aad(id_, index, hole_before, final);
    aead_.encrypt(std::span(slot).subspan(ns + format::kHoleFieldSize, len + kAeadTagSize), p,
                  std::span<const uint8_t>(slot.data(), ns), aad);
    return ns + format::kHoleFieldSize + len + kAeadTagSize;
  }

  const ReverseView& view_;
  UniqueFd fd_;
  struct stat opened_;
  format::FileId id_;
  Aead aead_;
  const format::BlockLayout& layout_;
  std::array<uint8_t, format::kFileHeaderSize> header_{};
  static constexpr size_t kMaxExtents = 1 << 16;
  std::vector<std::pair<uint64_t, uint64_t>> data_;  // [start, end) of each data extent, ascending
};

ReverseView::ReverseView(const Volume& vol, std::string config_file, Excludes excludes)
    : vol_(vol), config_file_(std::move(config_file)), excludes_(std::move(excludes)), keys_(std::make_unique<Keys>()) {
  // Shown only when it is PLAINDIR's own reverse config (the same file, not merely the same name).
  struct stat in_plain {
  }, given{};
  show_config_ =
      ::fstatat(vol.root_fd(), std::string(kReverseConfigName).c_str(), &in_plain, AT_SYMLINK_NOFOLLOW) == 0 &&
      ::stat(config_file_.c_str(), &given) == 0 && in_plain.st_ino == given.st_ino && in_plain.st_dev == given.st_dev;
  const auto& c = vol.config();
  keys_->id = hkdf_sha256(vol.master_key().span(), c.volume_id, "veilfs v1 reverse file id", 32);
  keys_->block = hkdf_sha256(vol.master_key().span(), c.volume_id, "veilfs v1 reverse block nonce", 32);
  keys_->link = hkdf_sha256(vol.master_key().span(), c.volume_id, "veilfs v1 reverse symlink nonce", 32);
  params_ = c.serialize_params();
}

ReverseView::~ReverseView() = default;

Node ReverseView::root() const {
  Node n;
  n.kind = Kind::Dir;
  n.iv = vol_.root_iv();
  return n;
}

format::FileId ReverseView::file_id(const struct stat& st, uint64_t birth_ns) const {
  uint8_t in[16];
  put_u64(in, static_cast<uint64_t>(st.st_ino));
  put_u64(in + 8, birth_ns);
  format::FileId id{};
  blake2b_keyed(id, keys_->id.span(), {bytes_of(kFileIdLabel), {in, sizeof in}});
  return id;
}

UniqueFd ReverseView::open_plain(const std::string& rel, int flags) const {
  // Beneath PLAINDIR and through no symlink: a directory replaced by a symlink since it was looked up must not
  // lead the view outside the tree.
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
  const std::string path = rel.empty() ? "." : rel;
  long fd = ::syscall(SYS_openat2, vol_.root_fd(), path.c_str(), &how, sizeof how);
  if (fd < 0) throw_errno("open plain object");
  return UniqueFd(static_cast<int>(fd));
}

std::string ReverseView::config_bytes() const {
  // The reverse config as it is on disk: what forward mode will read as veilfs.conf.
  layout::ConfigDir at = layout::open_config_dir(config_file_);
  auto bytes = read_small_file(at.dir.get(), at.name, format::kMaxConfigSize);
  return std::string(bytes.begin(), bytes.end());
}

std::string ReverseView::stored_target(const Node& link) const {
  auto [dir, name] = [&] {
    const auto slash = link.plain.rfind('/');
    if (slash == std::string::npos) return std::pair<std::string, std::string>{"", link.plain};
    return std::pair<std::string, std::string>{link.plain.substr(0, slash), link.plain.substr(slash + 1)};
  }();
  UniqueFd d = open_plain(dir, O_PATH | O_DIRECTORY);
  const std::string target = layout::read_symlink(d.get(), name.c_str());
  std::array<uint8_t, 24> nonce{};
  blake2b_keyed(nonce, keys_->link.span(), {bytes_of(kLinkLabel), bytes_of(target)});
  return vol_.links().encrypt_with_nonce(target, nonce);
}

std::optional<Node> ReverseView::lookup(const Node& dir, std::string_view name) const {
  if (dir.kind != Kind::Dir) return std::nullopt;
  const bool at_root = dir.plain.empty();
  switch (layout::classify(name)) {
    case layout::Reserved::DirIv: {
      Node n{Kind::DirIv, dir.plain, dir.iv, {}};
      return n;
    }
    case layout::Reserved::Config:
      if (!at_root || !show_config_) return std::nullopt;
      return Node{Kind::Config, "", {}, {}};
    case layout::Reserved::Params:
      if (!at_root) return std::nullopt;
      return Node{Kind::Params, "", {}, {}};
    case layout::Reserved::None: {
      auto plain = vol_.names().decrypt(dir.iv, name);
      if (!plain || layout::needs_long_name(name)) return std::nullopt;
      if (at_root && *plain == kReverseConfigName) return std::nullopt;
      UniqueFd d = open_plain(dir.plain, O_PATH | O_DIRECTORY);
      struct stat st;
      if (::fstatat(d.get(), plain->c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
      Node n;
      n.plain = join(dir.plain, *plain);
      if (excludes_.excluded(n.plain, S_ISDIR(st.st_mode))) return std::nullopt;
      n.kind = S_ISDIR(st.st_mode)   ? Kind::Dir
               : S_ISREG(st.st_mode) ? Kind::File
               : S_ISLNK(st.st_mode) ? Kind::Symlink
                                     : Kind::Special;
      if (n.kind == Kind::Dir) n.iv = vol_.names().derive_child_iv(dir.iv, name);
      return n;
    }
    case layout::Reserved::LongName:
    case layout::Reserved::NameSidecar:
    case layout::Reserved::LinkSidecar:
      return lookup_hashed(dir, name);
    default:
      return std::nullopt;
  }
}

std::optional<Node> ReverseView::lookup_hashed(const Node& dir, std::string_view name) const {
  // Hashes and sidecar names cannot be inverted: the entry is found among the directory's. The listing is kept
  // while the directory is unchanged (same mtime and ctime), so that a directory of many long names is listed
  // once, not once per lookup.
  UniqueFd d = open_plain(dir.plain, O_PATH | O_DIRECTORY);
  struct stat st;
  if (::fstat(d.get(), &st) != 0) throw_errno("stat plain directory");
  const std::string version = std::to_string(st.st_ino) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                              std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ctim.tv_sec) + "." +
                              std::to_string(st.st_ctim.tv_nsec);
  {
    // A kept entry is trusted only while its plain object exists (its name is a function of the plain name, so
    // that suffices), and a name not kept is looked for in a new listing: timestamps are too coarse to be the
    // only guard.
    std::optional<Node> kept;
    {
      std::lock_guard lk(hashed_mu_);
      auto it = hashed_.find(dir.plain);
      if (it != hashed_.end() && it->second.version == version) {
        auto e = it->second.entries.find(std::string(name));
        if (e != it->second.entries.end()) kept = e->second;
      }
    }
    if (kept) {
      const std::string base =
          kept->plain.substr(kept->plain.rfind('/') == std::string::npos ? 0 : kept->plain.rfind('/') + 1);
      struct stat est;
      if (::fstatat(d.get(), base.c_str(), &est, AT_SYMLINK_NOFOLLOW) == 0) return kept;
    }
  }
  HashedListing listing{version, {}};
  for (auto& e : list(dir))
    if (layout::is_reserved(e.name)) listing.entries.emplace(std::move(e.name), std::move(e.node));
  std::optional<Node> found;
  if (auto e = listing.entries.find(std::string(name)); e != listing.entries.end()) found = e->second;
  std::lock_guard lk(hashed_mu_);
  if (hashed_.size() >= kHashedDirs) hashed_.clear();  // a bound, not a policy: directories are listed again
  hashed_[dir.plain] = std::move(listing);
  return found;
}

std::vector<ReverseView::Entry> ReverseView::list(const Node& dir) const {
  if (dir.kind != Kind::Dir) throw_errno(ENOTDIR);
  UniqueFd d = open_plain(dir.plain, O_RDONLY | O_DIRECTORY);
  std::vector<std::pair<std::string, unsigned char>> plain;
  {
    DIR* ds = ::fdopendir(::dup(d.get()));
    if (!ds) throw_errno("list plain directory");
    while (dirent* e = ::readdir(ds)) {
      std::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      if (dir.plain.empty() && n == kReverseConfigName) continue;
      plain.emplace_back(std::string(n), e->d_type);
    }
    ::closedir(ds);
  }
  std::vector<Entry> out;
  out.push_back({std::string(format::kDirIvName), Node{Kind::DirIv, dir.plain, dir.iv, {}}});
  if (dir.plain.empty()) {
    if (show_config_) out.push_back({std::string(format::kConfigName), Node{Kind::Config, "", {}, {}}});
    out.push_back({std::string(format::kParamsName), Node{Kind::Params, "", {}, {}}});
  }
  for (auto& [name, type] : plain) {
    unsigned char t = type;
    if (t == DT_UNKNOWN) {
      struct stat st;
      if (::fstatat(d.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
      t = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : S_ISLNK(st.st_mode) ? DT_LNK : DT_FIFO;
    }
    if (excludes_.excluded(join(dir.plain, name), t == DT_DIR)) continue;
    const std::string encoded = vol_.names().encrypt(dir.iv, name);
    const std::string backing = layout::backing_name(encoded);
    Node n;
    n.plain = join(dir.plain, name);
    n.kind = t == DT_DIR ? Kind::Dir : t == DT_REG ? Kind::File : t == DT_LNK ? Kind::Symlink : Kind::Special;
    if (n.kind == Kind::Dir) n.iv = vol_.names().derive_child_iv(dir.iv, encoded);
    if (layout::is_long_name(backing))
      out.push_back({layout::name_sidecar_of(backing), Node{Kind::NameSidecar, n.plain, {}, encoded}});
    if (n.kind == Kind::Symlink && layout::link_target_is_long(stored_target(n)))
      out.push_back({layout::link_sidecar_of(backing), Node{Kind::LinkSidecar, n.plain, {}, {}}});
    out.push_back({backing, std::move(n)});
  }
  return out;
}

struct stat ReverseView::own_file_attributes(const Node& n, size_t size, mode_t mode) const {
  // veilfs's own files take the root's owner and the reverse config's times: stable across mounts, so that
  // a backup tool's size-and-time check skips them.
  struct stat st;
  if (::stat(config_file_.c_str(), &st) != 0) throw_errno("stat reverse config");
  struct stat root;
  if (::fstat(vol_.root_fd(), &root) != 0) throw_errno("stat plain root");
  st.st_uid = root.st_uid;
  st.st_gid = root.st_gid;
  st.st_mode = S_IFREG | mode;
  st.st_size = static_cast<off_t>(size);
  st.st_blocks = static_cast<blkcnt_t>((size + 511) / 512);
  st.st_nlink = 1;
  // An inode number of its own (top bit set, clear of the plain file system's): two of them must never look like
  // hard links to a backup tool.
  std::string identity(1, static_cast<char>('0' + static_cast<int>(n.kind)));
  identity += n.plain;
  identity += '/';
  identity += n.encoded;
  std::array<uint8_t, 16> h{};
  blake2b(h, {bytes_of(identity)});
  uint64_t ino = 0;
  for (int i = 0; i < 8; ++i) ino |= static_cast<uint64_t>(h[i]) << (8 * i);
  st.st_ino = static_cast<ino_t>(ino | (uint64_t{1} << 63));
  return st;
}

struct stat ReverseView::attributes(const Node& n) const {
  switch (n.kind) {
    case Kind::DirIv:
      return own_file_attributes(n, format::kDirIvSize, 0444);
    case Kind::Config:
      return own_file_attributes(n, config_bytes().size(), 0400);
    case Kind::Params:
      return own_file_attributes(n, params_.size(), 0400);
    case Kind::NameSidecar:
      return own_file_attributes(n, n.encoded.size(), 0444);
    case Kind::LinkSidecar:
      return own_file_attributes(n, stored_target(n).size(), 0444);
    default:
      break;
  }
  UniqueFd fd = open_plain(n.plain, O_PATH);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("stat plain object");
  if (S_ISREG(st.st_mode)) {
    st.st_size = static_cast<off_t>(vol_.content()->layout().backing_size(static_cast<uint64_t>(st.st_size)));
    st.st_blocks = (st.st_size + 511) / 512;
  } else if (S_ISLNK(st.st_mode)) {
    const std::string stored = stored_target(n);
    st.st_size =
        static_cast<off_t>(layout::link_target_is_long(stored) ? format::kLongLinkMarker.size() : stored.size());
  }
  return st;
}

struct statvfs ReverseView::statfs() const {
  struct statvfs sv;
  if (::fstatvfs(vol_.root_fd(), &sv) != 0) throw_errno("statfs plain dir");
  return sv;
}

std::string ReverseView::readlink(const Node& n) const {
  if (n.kind != Kind::Symlink) throw_errno(EINVAL);
  std::string stored = stored_target(n);
  return layout::link_target_is_long(stored) ? std::string(format::kLongLinkMarker) : stored;
}

std::unique_ptr<ReverseView::Reader> ReverseView::open(const Node& n) const {
  switch (n.kind) {
    case Kind::DirIv:
      return std::make_unique<BytesReader>(std::string(reinterpret_cast<const char*>(n.iv.data()), n.iv.size()));
    case Kind::Config:
      return std::make_unique<BytesReader>(config_bytes());
    case Kind::Params:
      return std::make_unique<BytesReader>(params_);
    case Kind::NameSidecar:
      return std::make_unique<BytesReader>(n.encoded);
    case Kind::LinkSidecar:
      return std::make_unique<BytesReader>(stored_target(n));
    case Kind::File: {
      UniqueFd fd = open_plain(n.plain, O_RDONLY);
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) throw_errno("stat plain file");
      if (!S_ISREG(st.st_mode)) throw_errno(EISDIR);
      return std::make_unique<FileReader>(*this, std::move(fd), st);
    }
    default:
      throw_errno(EISDIR);
  }
}

}  // namespace veil::reverse
