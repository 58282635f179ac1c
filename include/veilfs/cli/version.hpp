// `veilfs --version` and `veilkey --version`: the program's version and what it was built from.
#pragma once

#include <string>

namespace veil::cli {

// "PROGRAM 0.1.0", then the on-disk format versions, libsodium (run time) and libfuse: runtime_libfuse is the
// version the running program loaded (veilfs), or null for a program that does not use libfuse (veilkey), which
// then names the version it was built alongside.
std::string version_text(const std::string& program, const char* runtime_libfuse);

}  // namespace veil::cli
