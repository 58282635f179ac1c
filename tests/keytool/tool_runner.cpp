#include "tool_runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace veil::test {

namespace {

int make_memfd(const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
  return fd;
}

std::string slurp(int fd) {
  std::string s;
  char buf[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

}  // namespace

const char* veilkey_path() { return VEILKEY_BIN; }

Child::Child(const std::vector<std::string>& args, const RunOptions& opt) : Child(VEILKEY_BIN, args, opt) {}

Child::Child(const std::string& program, const std::vector<std::string>& args, const RunOptions& opt) {
  int in = make_memfd("stdin");
  if (::write(in, opt.stdin_data.data(), opt.stdin_data.size()) != static_cast<ssize_t>(opt.stdin_data.size()))
    throw std::runtime_error("write stdin");
  ::lseek(in, 0, SEEK_SET);
  out_ = make_memfd("stdout");
  err_ = make_memfd("stderr");

  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "VEILKEY_", 8) != 0) env_strings.emplace_back(*e);
  for (const auto& [k, v] : opt.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    ::dup2(in, STDIN_FILENO);
    ::dup2(out_, STDOUT_FILENO);
    ::dup2(err_, STDERR_FILENO);
    for (int fd : opt.inherit_fds) ::fcntl(fd, F_SETFD, 0);
    if (opt.max_file_size >= 0) {
      ::signal(SIGXFSZ, SIG_IGN);  // an ignored disposition survives exec
      rlimit rl{static_cast<rlim_t>(opt.max_file_size), static_cast<rlim_t>(opt.max_file_size)};
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(in);
}

Child::~Child() {
  // Only reached with a live child when a test failed early: never leave it paused at a hook forever.
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait();
  }
  if (out_ >= 0) ::close(out_);
  if (err_ >= 0) ::close(err_);
}

RunResult Child::wait() {
  RunResult r;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out_);
  r.err = slurp(err_);
  return r;
}

RunResult run_veilkey(const std::vector<std::string>& args, const RunOptions& opt) {
  Child c(args, opt);
  return c.wait();
}

RunResult run_program(const std::string& program, const std::vector<std::string>& args, const RunOptions& opt) {
  Child c(program, args, opt);
  return c.wait();
}

}  // namespace veil::test
