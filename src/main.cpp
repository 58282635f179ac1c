// veilfs: mount an encrypted directory (src/fuse/daemon.cpp), or `veilfs fsck` / `veilfs xray` (src/fsck/).
#include <cstdio>
#include <cstring>

#include "fuse/daemon.hpp"

#ifdef VEILFS_HAVE_FSCK
#include "fsck/fsck_main.hpp"
#include "fsck/xray_main.hpp"
#endif

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "fsck") == 0) {
#ifdef VEILFS_HAVE_FSCK
    return veil::fsck::fsck_main(argc - 1, argv + 1);
#else
    std::fprintf(stderr, "veilfs: fsck not built\n");
    return 1;
#endif
  }
  if (argc > 1 && std::strcmp(argv[1], "xray") == 0) {
#ifdef VEILFS_HAVE_FSCK
    return veil::fsck::xray_main(argc - 1, argv + 1);
#else
    std::fprintf(stderr, "veilfs: xray not built\n");
    return 1;
#endif
  }
  return veil::fuse::mount_main(argc, argv);
}
