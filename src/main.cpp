// veilfs: mount an encrypted directory (src/fuse/daemon.cpp), or `veilfs fsck` / `veilfs xray` (src/fsck/).
#include <cstdio>
#include <cstring>

#include "fuse/daemon.hpp"

#ifdef VEILFS_HAVE_FSCK
#include "fsck/fsck_main.hpp"
#include "fsck/xray_main.hpp"
#endif

int main(int argc, char** argv) {
  const char* command = argc > 1 ? argv[1] : "";
  const bool fsck = std::strcmp(command, "fsck") == 0;
  if (fsck || std::strcmp(command, "xray") == 0) {
#ifdef VEILFS_HAVE_FSCK
    return fsck ? veil::fsck::fsck_main(argc - 1, argv + 1) : veil::fsck::xray_main(argc - 1, argv + 1);
#else
    std::fprintf(stderr, "veilfs: %s not built\n", command);
    return 1;
#endif
  }
  return veil::fuse::mount_main(argc, argv);
}
