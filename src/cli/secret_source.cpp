#include "veilfs/cli/secret_source.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::cli {

namespace {

constexpr size_t kMaxSecret = 64 * 1024;

[[noreturn]] void fail(const std::string& message, int err = EINVAL) {
  throw Error(ErrorKind::InvalidArgument, err, message);
}

struct ReadResult {
  SecretBytes secret;
  bool nothing = false;  // end of input before a single byte (an empty file, a program that printed nothing)
};

// Reads from fd into secure memory until newline (if stop_at_newline) or EOF. `where` starts every message.
ReadResult read_fd(int fd, bool stop_at_newline, const std::string& where) {
  SecretBytes buf(kMaxSecret);
  size_t n = 0;
  bool any = false;
  while (n < kMaxSecret) {
    ssize_t r = ::read(fd, buf.data() + n, stop_at_newline ? 1 : kMaxSecret - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(where + ": " + std::strerror(errno), errno);
    }
    if (r == 0) break;
    any = true;
    if (stop_at_newline && buf.data()[n] == '\n') break;
    n += static_cast<size_t>(r);
  }
  if (n == kMaxSecret) fail(where + ": longer than 64 KiB");
  if (stop_at_newline && n > 0 && buf.data()[n - 1] == '\r') --n;
  return {SecretBytes(std::span<const uint8_t>(buf.data(), n)), !any};
}

// "--passfile /x" and, for a path that cannot be opened, why: strerror, plus what a dangling symlink is.
SecretBytes read_file(const std::string& option, const std::string& path, bool first_line, const std::string& what) {
  const std::string where = option + (option.back() == '=' ? "" : " ") + path;  // "--passfile F", "-o passfile=F"
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    std::string why = std::strerror(err);
    struct stat st {};
    if (err == ENOENT && ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      why += " (a symlink to a missing file)";
    fail(where + ": " + why, err);
  }
  ReadResult r = read_fd(fd.get(), first_line, where);
  if (r.nothing) fail(where + ": the file is empty");
  if (r.secret.empty()) fail(where + ": the first line is empty (no " + what + ")");
  return std::move(r.secret);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code == 127) return "could not be run (the shell's exit status 127: command not found)";
    if (code == 126) return "could not be run (the shell's exit status 126: not executable)";
    return "exited with status " + std::to_string(code);
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : std::string());
  }
  return "ended with wait status " + std::to_string(status);
}

// The command itself is never printed: it may hold a secret of its own (a password manager's entry name, ...).
SecretBytes from_program(const std::string& option, const std::string& cmd, const std::string& what) {
  const std::string where = "the " + option + " program";
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw_errno(option + ": pipe");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno(option + ": fork");
  if (pid == 0) {
    ::dup2(wr.get(), STDOUT_FILENO);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  wr.reset();
  ReadResult r;
  std::optional<Error> read_error;
  try {
    r = read_fd(rd.get(), true, where);
  } catch (const Error& e) {
    read_error = e;
  }
  rd.reset();  // the program may print more; it gets SIGPIPE, which is fine once a line was read
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const bool ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                  (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE && !r.nothing && !read_error);
  if (!ok) fail(where + " failed: it " + describe_status(status));
  if (read_error) throw *read_error;
  if (r.nothing) fail(where + " printed nothing (no " + what + ")");
  if (r.secret.empty()) fail(where + " printed an empty first line (no " + what + ")");
  return std::move(r.secret);
}

SecretBytes prompt_tty(std::string_view prompt) {
  UniqueFd tty(::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
  int in = tty ? tty.get() : STDIN_FILENO;
  int out = tty ? tty.get() : STDERR_FILENO;
  (void)!::write(out, prompt.data(), prompt.size());
  termios old{};
  bool have_term = ::tcgetattr(in, &old) == 0;
  if (have_term) {
    termios noecho = old;
    noecho.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(in, TCSAFLUSH, &noecho);
  }
  SecretBytes s;
  try {
    s = read_fd(in, true, "the terminal").secret;
  } catch (...) {
    if (have_term) ::tcsetattr(in, TCSAFLUSH, &old);
    throw;
  }
  if (have_term) ::tcsetattr(in, TCSAFLUSH, &old);
  (void)!::write(out, "\n", 1);
  return s;
}

}  // namespace

void SecretSource::name_as_new() {
  keyfile_option = "--new-keyfile";
  passfile_option = "--new-passfile";
  extpass_option = "--new-extpass";
  what = "new " + what;
}

void check_single_source(const SecretSource& src) {
  std::vector<std::string> given;
  if (src.keyfile) given.push_back(src.keyfile_option);
  if (src.passfile) given.push_back(src.passfile_option);
  if (src.extpass) given.push_back(src.extpass_option);
  if (given.size() > 1) fail(given[0] + " and " + given[1] + " cannot be combined: give one source of the " + src.what);
}

bool stdin_is_terminal() { return ::isatty(STDIN_FILENO) == 1; }

SecretBytes read_secret(const SecretSource& src, std::string_view prompt, bool confirm) {
  check_single_source(src);
  if (src.keyfile) return read_file(src.keyfile_option, *src.keyfile, false, src.what);
  if (src.passfile) return read_file(src.passfile_option, *src.passfile, true, src.what);
  if (src.extpass) return from_program(src.extpass_option, *src.extpass, src.what);
  if (!stdin_is_terminal()) {
    ReadResult r = read_fd(STDIN_FILENO, true, "standard input");
    if (r.nothing) fail("standard input ended before the " + src.what + " was read");
    if (r.secret.empty()) fail("empty " + src.what + " on standard input");
    return std::move(r.secret);
  }
  SecretBytes s = prompt_tty(prompt);
  if (s.empty()) fail("empty " + src.what);  // refused before asking for the repeat
  if (confirm) {
    SecretBytes again = prompt_tty("Repeat: ");
    if (!s.equals(again.span())) fail("the " + src.what + "s do not match");
  }
  return s;
}

}  // namespace veil::cli
