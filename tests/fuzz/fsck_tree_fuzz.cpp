// fsck over a fuzzed cipher dir: names, long-name sidecars, symlink targets (inline and long), directory IVs,
// xattrs, file contents and temporary leftovers, all at once, with and without --repair.
//
// Input: byte 0 = flags (bit 0: repair), then records until the input ends:
//   type (low 3 bits) | variant (high bits), name length (1 byte), name, content length (2 bytes LE), content.
// Variants choose between raw bytes (hostile) and bytes made valid by the engines (so checks get past
// authentication and reach what comes after), then possibly damaged.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fsck/checker.hpp"
#include "fuzz_common.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/io.hpp"

using namespace veil;

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  bool take(size_t k, std::string_view* out) {
    if (k > n) return false;
    *out = {reinterpret_cast<const char*>(p), k};
    p += k;
    n -= k;
    return true;
  }
  bool byte(uint8_t* b) {
    if (n < 1) return false;
    *b = *p++;
    --n;
    return true;
  }
};

// A valid plain name from fuzz bytes.
std::string plain_name(std::string_view raw, size_t max = format::kMaxPlainNameSize) {
  std::string n = fuzz::sanitize_name(raw).substr(0, max);
  return n;
}

void add_record(const Volume& vol, int root, uint8_t type, uint8_t variant, std::string_view name,
                std::string_view content) {
  const DirIv& iv = vol.root_iv();
  auto bytes = fuzz::as_bytes(content);
  switch (type) {
    case 0:  // a raw entry: foreign or undecryptable
      fuzz::put_file(root, fuzz::sanitize_name(name), bytes);
      break;
    case 1: {  // a file with a valid name; contents valid (then maybe damaged) or raw
      std::string enc = vol.names().encrypt(iv, plain_name(name));
      std::string backing = layout::backing_name(enc);
      if (layout::needs_long_name(enc)) fuzz::put_file(root, layout::name_sidecar_of(backing), fuzz::as_bytes(enc));
      if (variant & 1) {
        UniqueFd fd(::openat(root, backing.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd) break;
        ContentFile f(vol.content(), std::move(fd));
        try {
          f.write(variant >> 1, bytes);  // small offsets leave a hole in front now and then
          if (!content.empty() && (variant & 2)) {
            // Damage one byte of the backing file where the content says.
            uint64_t off = static_cast<uint8_t>(content[0]) * 37u % (file_size(f.fd()) + 1);
            uint8_t b = 0;
            if (pread_full(f.fd(), {&b, 1}, off) == 1) {
              b ^= static_cast<uint8_t>(content.size() | 1);
              pwrite_full(f.fd(), {&b, 1}, off);
            }
          }
        } catch (const Error&) {
        }
      } else {
        fuzz::put_file(root, backing, bytes);
      }
      break;
    }
    case 2: {  // a symlink with a valid name; target valid (maybe long, with a sidecar) or raw
      std::string backing = layout::backing_name(vol.names().encrypt(iv, plain_name(name)));
      std::string target;
      if (variant & 1) {
        if (content.empty()) content = "t";
        target = vol.links().encrypt(content.substr(0, 4095));
        if (target.size() > format::kMaxInlineLinkSize) {
          fuzz::put_file(root, std::string(format::kLongLinkPrefix) + backing, fuzz::as_bytes(target));
          target = std::string(format::kLongLinkMarker);
        }
      } else {
        target = fuzz::sanitize_name(content.empty() ? std::string_view("x") : content.substr(0, 4095));
        if (variant & 2) {
          target = std::string(format::kLongLinkMarker);
          fuzz::put_file(root, std::string(format::kLongLinkPrefix) + backing, bytes);
        }
      }
      (void)::symlinkat(target.c_str(), root, backing.c_str());
      break;
    }
    case 3: {  // a directory with a valid name; its IV file derived, raw, or missing; one file inside
      std::string enc = vol.names().encrypt(iv, plain_name(name));
      std::string backing = layout::backing_name(enc);
      if (::mkdirat(root, backing.c_str(), 0700) != 0) break;
      UniqueFd d(::openat(root, backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!d) break;
      DirIv child = vol.names().derive_child_iv(iv, enc);
      if ((variant & 3) == 0)
        layout::write_dir_iv(d.get(), child);
      else if ((variant & 3) == 1)
        fuzz::put_file(d.get(), std::string(format::kDirIvName), bytes);
      std::string inner = vol.names().encrypt(child, "inner");
      fuzz::put_file(d.get(), inner, bytes);
      break;
    }
    case 4: {  // a long name whose sidecar is right, raw, or from another name
      std::string enc = vol.names().encrypt(iv, plain_name(std::string(200, 'L') + std::string(name), 255));
      std::string backing = layout::long_name_for(enc);
      fuzz::put_file(root, backing, {});
      fuzz::put_file(root, layout::name_sidecar_of(backing), (variant & 1) ? fuzz::as_bytes(enc) : bytes);
      break;
    }
    case 5: {  // reserved names with raw contents: sidecars (maybe orphaned), IV files, temp leftovers
      static const char* kPrefixes[] = {"veilfs.longname.", "veilfs.link.", "veilfs.diriv.tmp.", "veilfs.conf.tmp.",
                                        "veilfs."};
      std::string n = std::string(kPrefixes[variant % 5]) + std::string(name);
      if (variant & 8) n += ".name";
      fuzz::put_file(root, fuzz::sanitize_name(n), bytes);
      break;
    }
    case 6: {  // an xattr on the root directory: valid name and value, or raw
      std::string xname = (variant & 1) ? vol.xattrs().encrypt_name("user." + plain_name(name)).value_or("user.x")
                                        : "user." + fuzz::sanitize_name(name);
      std::vector<uint8_t> value(bytes.begin(), bytes.end());
      if (variant & 2) value = vol.xattrs().encrypt_value(xname, bytes);
      (void)::fsetxattr(root, xname.c_str(), value.data(), value.size(), 0);
      break;
    }
    default: {  // a FIFO with a valid name: never opened
      std::string backing = layout::backing_name(vol.names().encrypt(iv, plain_name(name)));
      (void)::mkfifoat(root, backing.c_str(), 0600);
      break;
    }
  }
}

void clear_root_xattrs(int root) {
  char list[65536];
  ssize_t n = ::flistxattr(root, list, sizeof list);
  for (ssize_t pos = 0; pos < n;) {
    std::string name(list + pos);
    pos += static_cast<ssize_t>(name.size()) + 1;
    if (name.rfind("user.", 0) == 0) ::fremovexattr(root, name.c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  auto& scratch = fuzz::ScratchVolume::instance();
  const Volume& vol = scratch.vol();
  scratch.reset();
  clear_root_xattrs(vol.root_fd());
  Reader r{data + 1, size - 1};
  for (int records = 0; records < 64; ++records) {
    uint8_t tv = 0, nlen = 0, l0 = 0, l1 = 0;
    std::string_view name, content;
    if (!r.byte(&tv) || !r.byte(&nlen) || !r.take(nlen, &name) || !r.byte(&l0) || !r.byte(&l1)) break;
    size_t clen = std::min<size_t>(l0 | (l1 << 8), r.n);
    r.take(clen, &content);
    try {
      add_record(vol, vol.root_fd(), tv & 7, tv >> 3, name, content);
    } catch (const Error&) {
      // a name the engines refuse (too long, invalid): the record is skipped
    }
  }
  fsck::Options opt;
  opt.repair = data[0] & 1;
  opt.max_kept_problems = 16;
  fsck::Checker c(vol, opt);
  fsck::Report rep = c.run();
  // Kept problems include notices (a sync tool's own file, say), which are counted apart.
  if (rep.problem_count + rep.notice_count < rep.problems.size() || rep.repaired_count > rep.problem_count)
    __builtin_trap();
  return 0;
}
