// The filesystem proper: one method per FUSE operation, in plain C++ types. Methods throw veil::Error (with
// the errno a local filesystem would give); the trampolines in ops.cpp turn that into a reply at one boundary.
//
// A request goes: trampoline -> Fs method -> InodeTable (descriptor of the parent) -> name transform ->
// one *at() system call on the cipher dir -> ContentFile for file contents.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "fuse/engine_cache.hpp"
#include "fuse/inode_table.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/volume.hpp"

namespace veil::fuse {

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

// A looked-up object: FUSE inode number and plaintext attributes. ino == 0 means "does not exist" (a
// negative entry the kernel may cache).
struct Entry {
  uint64_t ino = 0;
  struct stat attr {};
};

struct DirEntry {
  std::string name;     // plaintext
  std::string backing;  // backing name ("." and ".." for those)
  ino_t ino = 0;
  unsigned char type = 0;  // DT_*
};

// An open directory: a stream over the backing directory, decrypted one READDIR request at a time, so that
// listing a directory of a million entries needs no more memory than one request's worth. FUSE offsets are the
// backing directory's own positions (d_off, telldir cookies), so the kernel can resume or seek anywhere.
struct DirHandle {
  DirHandle() = default;
  ~DirHandle();
  DirHandle(const DirHandle&) = delete;
  DirHandle& operator=(const DirHandle&) = delete;

  std::shared_ptr<Inode> dir;
  std::mutex mu;
  DIR* stream = nullptr;             // opened at the first READDIR
  uint64_t pos = 0;                  // position of the stream (0: the start)
  struct dirent* pending = nullptr;  // read but not yet handed out (did not fit in the last reply)
};

struct SetAttr {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<uint64_t> size;
  std::optional<struct timespec> atime;  // tv_nsec may be UTIME_NOW
  std::optional<struct timespec> mtime;
  // Who asks, for a mode change: uid and every group (primary and supplementary). See Fs::setattr.
  uid_t caller_uid = 0;
  std::vector<gid_t> caller_groups;
};

// Caps on what the daemon keeps open; 0 means a share of the open-file limit (the default). Tests set small
// caps to exercise eviction and reopening.
struct FsLimits {
  size_t descriptors = 0;  // cached O_PATH descriptors (InodeTable)
  size_t engines = 0;      // cached content engines, one descriptor each
};

// What a rescued bad name is shown with (FsOptions::badname).
inline constexpr std::string_view kBadNameSuffix = " [undecodable name]";

struct FsOptions {
  // The cipher dir has other writers (see SessionOptions::shared_storage): a file's header is read again at each
  // open, and a lookup tells a reused inode number from the object it used to be.
  bool shared_storage = false;
  // Backing names that do not decode and match one of these globs (fnmatch) are shown as
  // "<backing name> [undecodable name]" instead of being left out, so that their contents can be rescued (renamed
  // to an ordinary name). Like gocryptfs's -badname.
  std::vector<std::string> badname;
};

class Fs {
 public:
  explicit Fs(std::unique_ptr<Volume> volume, FsLimits limits = {}, FsOptions options = {});
  ~Fs();

  InodeTable& table() { return table_; }
  EngineCache& engines() { return engines_; }

  Entry lookup(uint64_t parent, const std::string& name);
  // readdirplus: the entry listed under `backing` in dir (nlookup incremented when it exists).
  Entry lookup_backing(Inode& dir, const std::string& backing, bool fresh = false);
  void forget(uint64_t ino, uint64_t count);
  struct stat getattr(uint64_t ino);
  struct stat setattr(uint64_t ino, const SetAttr& a);
  std::string readlink(uint64_t ino);
  void access(uint64_t ino, int mask);

  Entry mknod(const Caller& c, uint64_t parent, const std::string& name, mode_t mode, dev_t rdev);
  Entry mkdir(const Caller& c, uint64_t parent, const std::string& name, mode_t mode);
  Entry symlink(const Caller& c, const std::string& target, uint64_t parent, const std::string& name);
  Entry link(uint64_t ino, uint64_t newparent, const std::string& newname);
  void unlink(uint64_t parent, const std::string& name);
  void rmdir(uint64_t parent, const std::string& name);
  void rename(uint64_t parent, const std::string& name, uint64_t newparent, const std::string& newname, unsigned flags);

  // Files have no handles: contents are reached through the inode (see engine()). open() is only called when
  // the kernel does not skip OPEN (SessionOptions::no_open): it checks access and applies O_TRUNC.
  void open(uint64_t ino, int flags);
  Entry create(const Caller& c, uint64_t parent, const std::string& name, mode_t mode, int flags);
  size_t read(uint64_t ino, std::span<uint8_t> out, uint64_t off);
  void write(uint64_t ino, std::span<const uint8_t> data, uint64_t off);
  void fsync(uint64_t ino, bool datasync);
  // A handle is closed; `wrote`: it was opened for writing (its loose blocks are tightened).
  void release(uint64_t ino, bool wrote);
  void fallocate(uint64_t ino, int mode, uint64_t off, uint64_t len);

  DirHandle* opendir(uint64_t ino);
  // Lists the directory from position off, calling emit(entry, position after it) for each entry until emit
  // returns false (the reply is full: that entry is handed out again by the next call) or the end is reached.
  // Reserved backing names are left out, and names that fail to decrypt with a warning.
  void readdir(DirHandle& dh, uint64_t off, const std::function<bool(const DirEntry&, uint64_t)>& emit);
  void releasedir(DirHandle* dh);
  void fsyncdir(uint64_t ino, bool datasync);
  struct statvfs statfs();

  void setxattr(uint64_t ino, const std::string& name, std::span<const uint8_t> value, int flags);
  std::vector<uint8_t> getxattr(uint64_t ino, const std::string& name);
  std::vector<std::string> listxattr(uint64_t ino);
  void removexattr(uint64_t ino, const std::string& name);

 private:
  void settle_before_forget(Inode& n);
  struct Named {  // a plaintext name resolved in a directory
    std::shared_ptr<Inode> dir;
    FdPtr dirfd;
    DirIv iv;
    std::string encoded;
    std::string backing;
  };
  Named resolve(uint64_t parent, const std::string& name);
  // fstatat of at.backing; when there is none and `name` is how a sync service's conflict copy is shown, at is
  // moved onto that copy's backing name. Throws (ENOENT when neither exists).
  void stat_existing(Named& at, const std::string& name, struct stat& st);
  bool retarget_to_conflict_copy(Named& at, const std::string& name);
  bool retarget_to_bad_name(Named& at, const std::string& name);
  bool shown_as_bad_name(std::string_view backing) const;
  // The IV file of d as it is now on disk, when it differs from `cached` (then cached in d too): names that
  // fail to decode may have been made by another writer after its IV file arrived or changed.
  std::optional<DirIv> reread_iv(Inode& d, const DirIv& cached);
  // The name an entry of a listing is shown under: decrypted, or a conflict copy's (with its marker), or nullopt
  // for veilfs's own files and names that do not decode (those are logged).
  std::optional<std::string> shown_name(int dirfd, const DirIv& iv, std::string_view backing, Inode& dir,
                                        bool* undecodable);
  DirIv iv_of(Inode& dir);
  Entry entry_for(Inode& dir, const std::string& backing, struct stat st, bool fresh = false);
  // With shared storage: the birth time of backing in dir (0 when unknown), so that an inode number another
  // writer freed and reused is not taken for the object this Fs knew under it.
  uint64_t birth_of(Inode& dir, const std::string& backing);
  void plain_attr(Inode& n, struct stat& st);
  struct stat stat_of(Inode& n);
  std::string stored_link(Inode& n);
  void own(const Named& at, const Caller& c, mode_t mode, bool is_dir);
  static void log_undo_failure(const std::string& backing);  // EntryUndo's report of a step it could not undo
  // The content engine of regular file n from engines_, opened on first use (read-write when the backing file
  // allows it; write: must be writable).
  std::shared_ptr<ContentFile> engine(Inode& n, bool write);
  EngineCache::Made make_engine(Inode& n, UniqueFd fd, bool writable);
  std::shared_ptr<EngineSlot> slot_of(Inode& n);  // keeps n alive
  UniqueFd reopen(Inode& n, int flags);
  // Opens or stats n through its parent and name when no descriptor is cached (saves an O_PATH open per
  // file in tree walks), checking (st_dev, st_ino); falls back to the descriptor path otherwise.
  UniqueFd open_object(Inode& n, int flags);
  // O_RDWR, also for a file whose owner may only write it (mode 0200) when the daemon is not root.
  UniqueFd open_for_writing(Inode& n);
  bool stat_at_location(Inode& n, struct stat& st);
  void truncate(Inode& n, uint64_t size);
  // op(), and once more after an authentication failure, with the file's header read again.
  template <class Op>
  auto with_fresh_header(ContentFile& cf, Op&& op);
  struct stat setattr_impl(uint64_t ino, const SetAttr& a);
  std::string xattr_path(Inode& n, FdPtr& hold);

  // Open directory handles, so that those the kernel never released (a daemon stopped with them open) are freed.
  DirHandle* track(std::unique_ptr<DirHandle> dh);

  std::unique_ptr<Volume> vol_;
  InodeTable table_;
  const bool shared_;
  const std::vector<std::string> badname_;
  const layout::Access access_;  // as root: new entries are chowned to the caller, modes never stand in the way
  std::mutex handles_mu_;
  std::unordered_set<DirHandle*> open_dirs_;
  EngineCache engines_;
};

}  // namespace veil::fuse
