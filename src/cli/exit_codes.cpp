#include "veilfs/cli/exit_codes.hpp"

#include <cstdio>
#include <exception>

#include "veilfs/format/recovery_code.hpp"
#include "veilfs/util/error.hpp"

namespace veil::cli {

int run_guarded(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const format::RecoveryCodeError& e) {
    // Its own exit code: a script (or a person) can tell "retype the code" from "wrong volume".
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return kExitCodeTypo;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    switch (e.kind()) {
      case ErrorKind::WrongSecret:
        return kExitWrongSecret;
      case ErrorKind::NotFound:
        return kExitNotVolume;
      case ErrorKind::Unsupported:
        return kExitUnsupported;
      case ErrorKind::Corrupt:
      case ErrorKind::Auth:
        return kExitCorrupt;
      case ErrorKind::Io:
        return kExitIo;
      case ErrorKind::InvalidArgument:
      case ErrorKind::NameTooLong:
        return kExitUsage;
    }
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return kExitError;
  }
}

}  // namespace veil::cli
