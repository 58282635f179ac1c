// `veilfs CIPHERDIR MOUNTPOINT`: unlock, mount, detach, serve.
#pragma once

namespace veil::fuse {

int mount_main(int argc, char** argv);

}  // namespace veil::fuse
