// `veilfs xray CIPHERDIR PATH...` (backing path -> plain path) and `veilfs xray --to-cipher CIPHERDIR PLAIN...`
// (plain path -> its backing files). Called by veilfs's main with argv[0] == "xray". The translation itself is
// veilfs/path_map.hpp.
#pragma once

namespace veil::fsck {
int xray_main(int argc, char** argv);
}  // namespace veil::fsck
