// Runs the real veilkey binary as a child process: arguments, stdin bytes, extra environment, inherited fds.
// Standard input is never a terminal here, so veilkey reads secrets line by line from it.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace veil::test {

struct RunOptions {
  std::string stdin_data;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<int> inherit_fds;  // kept open (without FD_CLOEXEC) in the child
  long max_file_size = -1;       // RLIMIT_FSIZE for the child (with SIGXFSZ ignored, so writes fail with EFBIG)
};

inline RunOptions with_stdin(std::string data) {
  RunOptions o;
  o.stdin_data = std::move(data);
  return o;
}

struct RunResult {
  int code = -1;  // exit status, or 128 + signal
  std::string out, err;
};

class Child {
 public:
  // Runs veilkey with args.
  Child(const std::vector<std::string>& args, const RunOptions& opt);
  // Runs any program (absolute path).
  Child(const std::string& program, const std::vector<std::string>& args, const RunOptions& opt);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();
  RunResult wait();

 private:
  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
};

// The veilkey under test (its path comes from CMake).
RunResult run_veilkey(const std::vector<std::string>& args, const RunOptions& opt = {});
RunResult run_program(const std::string& program, const std::vector<std::string>& args, const RunOptions& opt = {});
const char* veilkey_path();

}  // namespace veil::test
