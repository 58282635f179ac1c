// `veilfs fsck ...` and `veilfs xray ...` without the daemon: like veilfs's main, hands over argv from the command on.
#include <cstring>

#include "fsck/fsck_main.hpp"
#include "fsck/xray_main.hpp"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (std::strcmp(argv[1], "xray") == 0) return veil::fsck::xray_main(argc - 1, argv + 1);
  return veil::fsck::fsck_main(argc - 1, argv + 1);
}
