#include "veilfs/cli/secret_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::cli {

namespace {

constexpr size_t kMaxSecret = 64 * 1024;

// Reads from fd into secure memory until newline (if stop_at_newline) or EOF.
SecretBytes read_fd(int fd, bool stop_at_newline) {
  SecretBytes buf(kMaxSecret);
  size_t n = 0;
  while (n < kMaxSecret) {
    ssize_t r = ::read(fd, buf.data() + n, stop_at_newline ? 1 : kMaxSecret - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read secret");
    }
    if (r == 0) break;
    if (stop_at_newline && buf.data()[n] == '\n') break;
    n += static_cast<size_t>(r);
  }
  if (n == kMaxSecret) throw_invalid("secret is longer than 64 KiB");
  if (stop_at_newline && n > 0 && buf.data()[n - 1] == '\r') --n;
  return SecretBytes(std::span<const uint8_t>(buf.data(), n));
}

SecretBytes first_line_of_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd)
    throw Error(ErrorKind::InvalidArgument, errno, "cannot open passphrase file: " + std::string(strerror(errno)));
  return read_fd(fd.get(), true);
}

SecretBytes whole_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw Error(ErrorKind::InvalidArgument, errno, "cannot open key file: " + std::string(strerror(errno)));
  return read_fd(fd.get(), false);
}

SecretBytes from_program(const std::string& cmd) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw_errno("pipe");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::dup2(wr.get(), STDOUT_FILENO);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  wr.reset();
  SecretBytes s = read_fd(rd.get(), true);
  rd.reset();  // the program may print more; it gets SIGPIPE, which is fine
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(ErrorKind::InvalidArgument, EINVAL, "the external passphrase program failed");
  return s;
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
    s = read_fd(in, true);
  } catch (...) {
    if (have_term) ::tcsetattr(in, TCSAFLUSH, &old);
    throw;
  }
  if (have_term) ::tcsetattr(in, TCSAFLUSH, &old);
  (void)!::write(out, "\n", 1);
  return s;
}

}  // namespace

bool stdin_is_terminal() { return ::isatty(STDIN_FILENO) == 1; }

SecretBytes read_secret(const SecretSource& src, std::string_view prompt, bool confirm) {
  SecretBytes s;
  if (src.keyfile) {
    s = whole_file(*src.keyfile);
    if (s.empty()) throw_invalid("key file is empty");
    return s;
  }
  if (src.passfile)
    s = first_line_of_file(*src.passfile);
  else if (src.extpass)
    s = from_program(*src.extpass);
  else if (!stdin_is_terminal())
    s = read_fd(STDIN_FILENO, true);
  else {
    s = prompt_tty(prompt);
    if (confirm) {
      SecretBytes again = prompt_tty("Repeat: ");
      if (!s.equals(again.span())) throw_invalid("the passphrases do not match");
    }
  }
  if (s.empty()) throw_invalid("empty passphrase");
  return s;
}

}  // namespace veil::cli
