// fsx: a seeded random-operation exerciser in the manner of xfstests' fsx, checked byte for byte against an
// in-memory model of each file. Operations: pwrite, pread, ftruncate, writes and reads through shared mappings
// (with and without msync), fallocate in every mode a local disk offers (0, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE with
// and without KEEP_SIZE; COLLAPSE_RANGE and INSERT_RANGE, which must be refused with EOPNOTSUPP),
// copy_file_range (between the run's files and within one), O_DIRECT reads and writes at unaligned offsets,
// lengths and buffers, fstat, fsync and fdatasync, reopening.
//
// Free of GoogleTest: the mount test (exerciser_test.cpp) and the benchmark program (bench/fsx.cpp, the `fsx`
// workload of bench/run.py, which runs it on every file system) share it. Same seed, same operations.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "veilfs/util/unique_fd.hpp"

namespace veiltest::fsx {

struct Options {
  uint64_t max_size = 3 << 20;  // no file grows past this
  // The benchmark's mode, for file systems that lack an operation: EOPNOTSUPP from a fallocate mode or
  // copy_file_range, EINVAL from an unaligned O_DIRECT request (ext4) or O_DIRECT itself, skip the operation
  // (the model does not change) and count it instead of failing. COLLAPSE_RANGE and INSERT_RANGE are then not
  // tried at all (a local disk may do them; the model does not).
  bool tolerate_unsupported = false;
};

// One file and its model.
class File {
 public:
  File(std::string path, uint64_t seed, const Options& opt);
  // Opens the file (created if missing) buffered and with O_DIRECT; returns an error description or empty.
  std::string open();
  void close();
  // Performs one random operation; `peer` is another file of the run (or this one), the source of
  // copy_file_range. Returns an error description or empty; `what` says what was done.
  std::string step(uint64_t n, std::string& what, File& peer);
  // Reads the whole file through a fresh descriptor and compares it with the model.
  std::string verify_all() const;

  const std::string& path() const { return path_; }
  const std::string& data() const { return data_; }
  // Operations skipped because the file system lacks them (tolerate_unsupported), by name.
  const std::map<std::string, uint64_t>& unsupported() const { return unsupported_; }

 private:
  uint64_t pick_offset(uint64_t limit);
  size_t pick_len();
  std::string skip(const char* op, int err);  // tolerated refusal, or an error description
  std::string op_write(uint64_t n, std::string& what);
  std::string op_read(uint64_t n, std::string& what);
  std::string op_truncate(uint64_t n, std::string& what);
  std::string op_mmap_write(uint64_t n, std::string& what);
  std::string op_mmap_read(uint64_t n, std::string& what);
  std::string op_fallocate(uint64_t n, std::string& what, unsigned kind);
  std::string op_refused(uint64_t n, std::string& what);
  std::string op_copy_range(uint64_t n, std::string& what, File& peer);
  std::string op_direct_write(uint64_t n, std::string& what);
  std::string op_direct_read(uint64_t n, std::string& what);
  std::string op_fstat(uint64_t n, std::string& what);
  std::string op_fsync(uint64_t n, std::string& what);

  std::string path_;
  Options opt_;
  std::mt19937_64 rng_;
  std::string data_;
  veil::UniqueFd fd_, direct_;
  std::map<std::string, uint64_t> unsupported_;
};

struct RunConfig {
  std::string dir;  // the files fsx0, fsx1, ... are made here
  uint64_t seed = 1;
  uint64_t ops = 10000;
  unsigned files = 4;
  uint64_t verify_every = 300;  // a full comparison of the file just used, every this many operations
  Options options;
  // Called every remount_every operations with every file closed (and after it each file is compared in full
  // and reopened); returns an error description or empty.
  uint64_t remount_every = 0;
  std::function<std::string()> remount;
};

struct RunReport {
  std::string error;  // empty: every operation and comparison matched the model
  uint64_t ops_done = 0;
  double seconds = 0;  // wall time of the operations (remounts excluded)
  uint64_t remounts = 0;
  std::map<std::string, uint64_t> unsupported;               // summed over the files
  std::map<std::string, std::pair<uint64_t, double>> kinds;  // per kind of operation: count and seconds
  std::vector<std::pair<std::string, std::string>> files;    // path and expected contents at the end
};

// Runs cfg.ops operations over cfg.files files; the error names the seed, the operation, the file and the last
// operations before it, enough to replay the run.
RunReport run(const RunConfig& cfg);

}  // namespace veiltest::fsx
