// The `fsx` workload of bench/run.py: the mount exerciser's random operations (tests/integration/fsx.hpp) on any
// directory, timed. The same seed gives every file system the same operations; an operation a file system lacks
// (a fallocate mode, unaligned O_DIRECT, copy_file_range) is skipped there and listed, never counted as a
// failure. A mismatch with the model is a failure (exit 1): the figure of a file system that returns wrong data
// is no figure.
//
//   veilfs_bench_fsx DIR [--ops N] [--seed N] [--files N] [--max-size BYTES]
//
// Prints one JSON line: {"ops": N, "seconds": S, "ops_per_s": X, "seed": N, "unsupported": {"punch-hole": N, ...},
// "kinds": {"write": [count, seconds], ...}}.
#include "fsx.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  veiltest::fsx::RunConfig cfg;
  cfg.seed = 20261121;
  cfg.ops = 20000;
  cfg.options.tolerate_unsupported = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> unsigned long long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::strtoull(argv[++i], nullptr, 10);
    };
    if (a == "--ops")
      cfg.ops = value();
    else if (a == "--seed")
      cfg.seed = value();
    else if (a == "--files")
      cfg.files = static_cast<unsigned>(value());
    else if (a == "--max-size")
      cfg.options.max_size = value();
    else if (!a.empty() && a[0] != '-' && cfg.dir.empty())
      cfg.dir = a;
    else {
      std::fprintf(stderr, "usage: %s DIR [--ops N] [--seed N] [--files N] [--max-size BYTES]\n", argv[0]);
      return 2;
    }
  }
  if (cfg.dir.empty()) {
    std::fprintf(stderr, "usage: %s DIR [--ops N] [--seed N] [--files N] [--max-size BYTES]\n", argv[0]);
    return 2;
  }
  ::mkdir(cfg.dir.c_str(), 0755);
  const auto rep = veiltest::fsx::run(cfg);
  if (!rep.error.empty()) {
    std::fprintf(stderr, "fsx: %s\n", rep.error.c_str());
    return 1;
  }
  std::string unsupported;
  for (const auto& [k, v] : rep.unsupported)
    unsupported += (unsupported.empty() ? "\"" : ", \"") + k + "\": " + std::to_string(v);
  std::string kinds;  // where the time went: seconds per kind of operation
  for (const auto& [k, cs] : rep.kinds) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", cs.second);
    kinds += (kinds.empty() ? "\"" : ", \"") + k + "\": [" + std::to_string(cs.first) + ", " + buf + "]";
  }
  std::printf(
      "{\"ops\": %llu, \"seconds\": %.3f, \"ops_per_s\": %.1f, \"seed\": %llu, \"unsupported\": {%s}, "
      "\"kinds\": {%s}}\n",
      static_cast<unsigned long long>(rep.ops_done), rep.seconds, rep.ops_done / rep.seconds,
      static_cast<unsigned long long>(cfg.seed), unsupported.c_str(), kinds.c_str());
  for (const auto& [path, data] : rep.files) std::remove(path.c_str());
  return 0;
}
