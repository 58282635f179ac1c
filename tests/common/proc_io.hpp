// What this process has read, from /proc/self/io: tests use it to prove that holes or huge files were not read.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace veil::testing {

// Bytes this process has read through read(2)/pread(2) so far.
inline uint64_t bytes_read_so_far() {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value)
    if (key == "rchar:") return value;
  ADD_FAILURE() << "no rchar in /proc/self/io";
  return 0;
}

}  // namespace veil::testing
