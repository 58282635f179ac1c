// Whole-buffer positional I/O that retries on EINTR and short transfers.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace veil {

// Reads up to buf.size() bytes at off; returns the count (short only at end of file). Throws on error.
size_t pread_full(int fd, std::span<uint8_t> buf, uint64_t off);
// Writes all of buf at off or throws (ENOSPC included).
void pwrite_full(int fd, std::span<const uint8_t> buf, uint64_t off);
uint64_t file_size(int fd);

// Reads a whole small file relative to dirfd, refusing anything larger than max_size (hostile input).
std::vector<uint8_t> read_small_file(int dirfd, const std::string& name, size_t max_size);
// Atomic replace: write dir/temp, fsync, rename over name, fsync the directory. (The cipher dir's own files are
// replaced through layout::replace_file, which names the temp file.)
void write_file_atomic(int dirfd, const std::string& name, const std::string& temp, std::span<const uint8_t> data,
                       mode_t mode);
void fsync_dir(int dirfd);
// Calls fn(name) for each entry of the directory except "." and ".." until fn returns false
// (dirfd itself is left untouched: the listing uses a duplicate).
void for_each_dir_entry(int dirfd, const std::function<bool(std::string_view)>& fn);
// Whether the directory holds nothing but "." and "..".
bool dir_is_empty(int dirfd);

// Test-only fault injection for crash-safety tests: when set, write_file_atomic calls the hook with
// "after-temp" (temp file written and fsynced, not yet renamed) and "after-rename" (renamed, directory not yet
// fsynced). Unset (null) by default; only veilkey sets it, and only when its test environment variable is present.
using AtomicWriteHook = void (*)(const char* stage);
void set_atomic_write_hook(AtomicWriteHook hook);

}  // namespace veil
