// The crash explorer's log: one record per state-changing system call that a process under the recorder
// (recorder.cpp, LD_PRELOADed) made on the cipher dir, in the order the calls completed, plus the markers the
// workload writes between its steps. Shared by the recorder (which must stay small and allocation-light) and
// the replayer (replay.hpp).
//
// Encoding: a record is "VCR1", a u32 byte count of the rest, then the fields of Record in declaration order:
// integers as little-endian u64 (op as one byte), strings and data as a u32 length and the bytes. Writers
// append a whole record with one write(2) on an O_APPEND descriptor, so the daemon's threads, veilkey and the
// test process never interleave inside a record.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace veil::crash {

enum class Op : uint8_t {
  Create = 1,  // a new entry and a new object: open(O_CREAT) that created, mkdir, symlink, mknod
  Link,        // a new entry for an existing object
  Unlink,      // unlink or rmdir (flags & kRemoveDir)
  Rename,      // rename/renameat/renameat2 (flags: RENAME_*)
  Write,       // pwrite/write/pwritev: data at off
  Truncate,    // ftruncate/truncate, and open(O_TRUNC) of an existing file: size in off
  Falloc,      // fallocate (mode in flags, off, len); size after the call in size_after
  Fsync,       // fsync or fdatasync (flags & kDataSync) of a file or a directory (is_dir)
  Syncfs,      // syncfs on the cipher dir's filesystem, or sync()
  Chmod,       // chmod/fchmod/fchmodat: permission bits in mode
  Mark,        // not a system call: the workload finished step `off` (label: what it did)
};

constexpr uint64_t kRemoveDir = 1;  // Unlink: it was rmdir
constexpr uint64_t kDataSync = 1;   // Fsync: fdatasync

struct Record {
  Op op = Op::Mark;
  uint64_t pid = 0, tid = 0;
  uint64_t ino = 0;   // the object written, truncated, synced, created, linked, unlinked or renamed
  uint64_t dir = 0;   // the directory of name (Create, Link, Unlink, Rename's source)
  uint64_t dir2 = 0;  // Rename: the directory of name2
  uint64_t ino2 = 0;  // Rename: the object that was at name2 before (0 when there was none)
  uint64_t mode = 0;  // Create: st_mode of the new object; Chmod: the new permission bits
  uint64_t flags = 0;
  uint64_t off = 0;  // Write: offset; Truncate: new size; Falloc: offset; Mark: step number
  uint64_t len = 0;  // Falloc: length
  uint64_t size_after = 0;
  uint64_t is_dir = 0;  // Fsync: the descriptor was a directory
  std::string name, name2;
  std::string path, path2;  // the full paths (relative to the recorded root) at the time of the call, for reports
  std::string call;         // "pwrite", "renameat2", ...; Mark: the step's description
  std::string data;         // Write: the bytes; Create of a symlink: its target
};

namespace detail {
inline void put_u64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}
inline void put_str(std::string& out, std::string_view s) {
  const auto n = static_cast<uint32_t>(s.size());
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(n >> (8 * i));
  out.append(b, 4);
  out.append(s);
}
struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t u(size_t n) {
    if (in.size() < n) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
    in.remove_prefix(n);
    return v;
  }
  std::string s() {
    const uint64_t n = u(4);
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string r(in.substr(0, n));
    in.remove_prefix(n);
    return r;
  }
};
}  // namespace detail

inline constexpr std::string_view kRecordMagic = "VCR1";

// Appends one encoded record to out.
inline void encode(const Record& r, std::string& out) {
  std::string body;
  body.reserve(128 + r.data.size() + r.path.size() + r.path2.size());
  body.push_back(static_cast<char>(r.op));
  for (uint64_t v : {r.pid, r.tid, r.ino, r.dir, r.dir2, r.ino2, r.mode, r.flags, r.off, r.len, r.size_after, r.is_dir})
    detail::put_u64(body, v);
  for (const std::string* s : {&r.name, &r.name2, &r.path, &r.path2, &r.call, &r.data}) detail::put_str(body, *s);
  out.append(kRecordMagic);
  detail::put_str(out, body);
}

// Decodes the record at the front of in and advances past it; false at the end or on a damaged record.
inline bool decode(std::string_view& in, Record& r) {
  if (in.size() < kRecordMagic.size() + 4 || in.substr(0, kRecordMagic.size()) != kRecordMagic) return false;
  in.remove_prefix(kRecordMagic.size());
  detail::Reader outer{in};
  std::string body = outer.s();
  if (!outer.ok) return false;
  in = outer.in;
  detail::Reader b{body};
  r.op = static_cast<Op>(b.u(1));
  for (uint64_t* v :
       {&r.pid, &r.tid, &r.ino, &r.dir, &r.dir2, &r.ino2, &r.mode, &r.flags, &r.off, &r.len, &r.size_after, &r.is_dir})
    *v = b.u(8);
  for (std::string* s : {&r.name, &r.name2, &r.path, &r.path2, &r.call, &r.data}) *s = b.s();
  return b.ok;
}

}  // namespace veil::crash
