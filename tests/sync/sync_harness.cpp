#include "sync_harness.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

namespace veilsync {

using json = nlohmann::json;
using veiltest::err_name;
using veiltest::read_file;
using veiltest::run;
using veiltest::RunOptions;
using veiltest::write_file;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool wait_fd(int fd, std::chrono::milliseconds limit) {
  struct pollfd p {
    fd, POLLIN, 0
  };
  auto deadline = Clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

std::string slurp_or_empty(const std::string& p) {
  try {
    return read_file(p);
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

void print_loud_note(const std::string& what) {
  std::fprintf(stderr,
               "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
               "!!! %s\n"
               "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n",
               what.c_str());
}

std::string missing_program(const std::vector<std::string>& programs) {
  for (const auto& p : programs) {
    auto r = veiltest::sh("command -v '" + p + "' >/dev/null");
    if (r.status != 0) return "NOT RUN: '" + p + "' is not installed (bash scripts/install-deps.sh installs it)";
  }
  return "";
}

// ---- features ----

bool have_shared_storage() {
  static const bool yes = [] {
    auto r = run({veiltest::veilfs_binary(), "--help"});
    return r.output.find("shared-storage") != std::string::npos;
  }();
  return yes;
}

std::vector<std::string> probe_renamed_backing(const std::string& form_name,
                                               const std::function<std::string(const std::string&)>& rename_backing) {
  static std::mutex mu;
  static std::map<std::string, std::vector<std::string>> cache;
  std::lock_guard lock(mu);
  if (auto it = cache.find(form_name); it != cache.end()) return it->second;
  std::vector<std::string> out;
  try {
    VolumeDir vol("probe");
    if (!vol.create().empty()) throw std::runtime_error("mkvol");
    const std::string content = "veilfs conflict-copy probe\n";
    {
      Mount m(vol);
      if (!m.ok()) throw std::runtime_error("mount: " + m.error());
      write_file(vol.mnt + "/probe.txt", content);
    }
    std::string enc;
    for (const auto& n : veiltest::list_dir(vol.cipher))
      if (n.rfind("veilfs.", 0) != 0) enc = n;
    if (enc.empty()) throw std::runtime_error("no backing file");
    std::string to = rename_backing(enc);
    if (::rename((vol.cipher + "/" + enc).c_str(), (vol.cipher + "/" + to).c_str()) != 0)
      throw std::runtime_error("rename: " + err_name(errno));
    Mount m(vol);
    if (!m.ok()) throw std::runtime_error("mount: " + m.error());
    for (const auto& n : veiltest::list_dir(vol.mnt)) {
      std::string got;
      try {
        got = read_file(vol.mnt + "/" + n);
      } catch (const std::exception&) {
      }
      if (got == content) out.push_back(n);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[veilsync] probe %s failed: %s\n", form_name.c_str(), e.what());
  }
  std::fprintf(stderr, "[veilsync] probe %s: %s\n", form_name.c_str(),
               out.empty() ? "the renamed copy is INVISIBLE in the plain view" : ("shown as '" + out[0] + "'").c_str());
  cache[form_name] = out;
  return out;
}

std::vector<std::string> probe_syncthing_conflict() {
  return probe_renamed_backing("syncthing",
                               [](const std::string& e) { return e + ".sync-conflict-20261202-101500-ABCDEFG"; });
}
std::vector<std::string> probe_unison_conflict() {
  return probe_renamed_backing("unison", [](const std::string& e) { return e + " (conflict_on_2026-12-02)"; });
}
std::vector<std::string> probe_unison_deleted_conflict() {
  return probe_renamed_backing("unison-was-deleted",
                               [](const std::string& e) { return e + " (conflict_on_2026-12-02_was_deleted)"; });
}
std::vector<std::string> probe_rsync_backup() {
  return probe_renamed_backing("rsync", [](const std::string& e) { return e + "~"; });
}

// ---- trees ----

namespace {
void walk(const std::string& root, const std::string& rel, const std::function<bool(const std::string&)>& skip,
          Tree& out) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    out[rel.empty() ? "." : rel] = Node{'e', 0, "opendir: " + err_name(errno)};
    return;
  }
  std::vector<std::string> names;
  while (auto* e = ::readdir(d))
    if (std::string_view n = e->d_name; n != "." && n != "..") names.emplace_back(n);
  ::closedir(d);
  for (const auto& n : names) {
    if (skip && skip(n)) continue;
    std::string r = rel.empty() ? n : rel + "/" + n;
    std::string p = root + "/" + r;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // went away while listing (a tool's temporary file)
      out[r] = Node{'e', 0, "lstat: " + err_name(errno)};
      continue;
    }
    unsigned mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      out[r] = Node{'d', mode, ""};
      walk(root, r, skip, out);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[8192];
      ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
      out[r] = k < 0 ? Node{'e', 0, "readlink: " + err_name(errno)} : Node{'l', mode, std::string(buf, size_t(k))};
    } else if (S_ISREG(st.st_mode)) {
      try {
        out[r] = Node{'f', mode, read_file(p)};
      } catch (const std::exception& e) {
        out[r] = Node{'e', 0, e.what()};
      }
    } else {
      out[r] = Node{'o', mode, ""};
    }
  }
}

std::string describe(const Node& n) {
  std::ostringstream s;
  s << n.type << " mode " << std::oct << n.mode << std::dec;
  if (n.type == 'f') s << ", " << n.data.size() << " bytes";
  if (n.type == 'l' || n.type == 'e') s << ", '" << n.data.substr(0, 200) << "'";
  return s.str();
}
}  // namespace

Tree snapshot(const std::string& root, const std::function<bool(const std::string&)>& skip) {
  Tree t;
  walk(root, "", skip, t);
  return t;
}

std::string tree_difference(const Tree& a, const Tree& b, const std::string& na, const std::string& nb,
                            size_t max_lines) {
  std::vector<std::string> lines;
  for (const auto& [p, n] : a) {
    auto it = b.find(p);
    if (it == b.end())
      lines.push_back("only in " + na + ": " + p + " (" + describe(n) + ")");
    else if (!(it->second == n)) {
      std::string d = "differs: " + p + ": " + na + " " + describe(n) + ", " + nb + " " + describe(it->second);
      if (n.type == 'f' && it->second.type == 'f')
        d += " (" + veiltest::first_difference(n.data, it->second.data) + ")";
      lines.push_back(d);
    }
  }
  for (const auto& [p, n] : b)
    if (!a.count(p)) lines.push_back("only in " + nb + ": " + p + " (" + describe(n) + ")");
  std::string out;
  for (size_t i = 0; i < lines.size() && i < max_lines; ++i) out += "  " + lines[i] + "\n";
  if (lines.size() > max_lines) out += "  ... and " + std::to_string(lines.size() - max_lines) + " more\n";
  return out;
}

std::string basename_of(const std::string& path) {
  auto s = path.rfind('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

std::vector<std::string> matching(const Tree& t, const std::regex& re) {
  std::vector<std::string> out;
  for (const auto& [p, n] : t)
    if (std::regex_match(basename_of(p), re)) out.push_back(p);
  return out;
}

std::vector<std::string> holding(const Tree& t, const std::string& content) {
  std::vector<std::string> out;
  for (const auto& [p, n] : t)
    if (n.type == 'f' && n.data == content) out.push_back(p);
  return out;
}

std::optional<std::chrono::milliseconds> eventually(const std::function<bool()>& pred,
                                                    std::chrono::milliseconds limit) {
  auto t0 = Clock::now();
  for (;;) {
    if (pred()) return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    if (Clock::now() - t0 > limit) return std::nullopt;
    std::this_thread::sleep_for(20ms);
  }
}

// ---- fsck ----

FsckOutcome run_fsck(const std::string& cipher, const std::string& passfile) {
  RunOptions o;
  o.timeout = std::chrono::seconds(120 * kSlowdown);
  auto r = run({veiltest::veilfs_binary(), "fsck", cipher, "--passfile", passfile}, o);
  FsckOutcome f;
  f.code = r.status;
  f.output = r.output;
  std::istringstream in(r.output);
  std::string line;
  static const std::regex problem(R"(^[a-z][a-z-]+ /.*)");
  while (std::getline(in, line))
    if (std::regex_match(line, problem)) f.problems.push_back(line);
  return f;
}

std::string fsck_damage(const std::string& cipher, const std::string& passfile,
                        const std::vector<std::regex>& tolerated) {
  auto f = run_fsck(cipher, passfile);
  if (f.code == 0) return "";
  if (f.code != 26) return "veilfs fsck " + cipher + " exited " + std::to_string(f.code) + ":\n" + tail(f.output, 3000);
  std::string bad;
  for (const auto& p : f.problems) {
    // Notices, not damage: fsck's exit status does not count them.
    if (p.rfind("conflict-copy ", 0) == 0 || p.rfind("sync-file ", 0) == 0 || p.rfind("dir-iv-shared ", 0) == 0)
      continue;
    bool ok = false;
    for (const auto& re : tolerated) ok = ok || std::regex_search(p, re);
    if (ok)
      print_loud_note("TOLERATED fsck finding (a sync tool's own file, reported as damage): " + p);
    else
      bad += "  " + p + "\n";
  }
  if (bad.empty() && f.problems.empty()) return "veilfs fsck exited 26 without problem lines:\n" + tail(f.output, 3000);
  return bad.empty() ? "" : "veilfs fsck " + cipher + " found damage:\n" + bad;
}

// ---- ports, HTTP ----

int free_tcp_port() {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t len = sizeof a;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

HttpResponse http(const std::string& method, int port, const std::string& target, const std::string& api_key,
                  const std::string& body) {
  HttpResponse r;
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{60, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    r.error = "connect 127.0.0.1:" + std::to_string(port) + ": " + err_name(errno);
    return r;
  }
  std::string req =
      method + " " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\n";
  if (!api_key.empty()) req += "X-API-Key: " + api_key + "\r\n";
  req += "\r\n" + body;
  if (::send(s.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    r.error = "send: " + err_name(errno);
    return r;
  }
  std::string resp;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.error = "recv: " + err_name(errno);
      return r;
    }
    if (n == 0) break;
    resp.append(buf, size_t(n));
  }
  auto sp = resp.find(' ');
  auto hdr_end = resp.find("\r\n\r\n");
  if (sp == std::string::npos || hdr_end == std::string::npos) {
    r.error = "malformed HTTP response: " + resp.substr(0, 200);
    return r;
  }
  r.status = std::atoi(resp.c_str() + sp + 1);
  r.body = resp.substr(hdr_end + 4);
  return r;
}

// ---- Child ----

Child::Child(const std::vector<std::string>& argv, const std::string& log_path, const std::vector<std::string>& env)
    : log_path_(log_path) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  UniqueFd logfd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive a test process that died
    ::setpgid(0, 0);
    ::dup2(devnull.get(), 0);
    ::dup2(logfd.get(), 1);
    ::dup2(logfd.get(), 2);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::execvp(cargv[0], cargv.data());
    _exit(127);
  }
  if (pid_ > 0) pidfd_.reset(pidfd_open(pid_));
}

bool Child::running() { return pid_ > 0 && !wait_fd(pidfd_.get(), 0ms); }

int Child::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return status_;
  ::kill(pid_, SIGTERM);
  if (!wait_fd(pidfd_.get(), grace)) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
  }
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  status_ = decode_status(st);
  return status_;
}

std::string Child::log() const { return slurp_or_empty(log_path_); }

// ---- Syncthing ----

namespace {
std::string random_key() {
  std::random_device rd;
  std::string k;
  const char* al = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  for (int i = 0; i < 32; ++i) k += al[rd() % 62];
  return k;
}
}  // namespace

Syncthing::Syncthing(const std::string& workdir, const std::vector<std::string>& folders) {
  for (size_t i = 0; i < folders.size(); ++i) {
    NodeConf n;
    n.home = workdir + "/syncthing-" + std::to_string(i);
    n.folder = folders[i];
    n.api_key = random_key();
    n.log = workdir + "/syncthing-" + std::to_string(i) + ".log";
    ::mkdir((n.folder + "/.stfolder").c_str(), 0755);
    // Keys and certificate; the device ID is printed on the last line.
    auto r = run({"env", "STNODEFAULTFOLDER=1", "syncthing", "generate", "--home=" + n.home, "--no-default-folder"});
    std::smatch m;
    static const std::regex id_re("Device ID: ([A-Z0-9-]{63})");
    if (r.status != 0 || !std::regex_search(r.output, m, id_re))
      throw std::runtime_error("syncthing generate failed: " + r.output);
    n.id = m[1];
    n.port = free_tcp_port();
    n.gui_port = free_tcp_port();
    nodes_.push_back(std::move(n));
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto& n = nodes_[i];
    std::ostringstream c;
    c << "<configuration version=\"36\">\n"
      << "  <folder id=\"veil\" label=\"veil\" path=\"" << n.folder
      << "\" type=\"sendreceive\" rescanIntervalS=\"10\" fsWatcherEnabled=\"true\" fsWatcherDelayS=\"1\" "
         "ignorePerms=\"false\" autoNormalize=\"true\">\n"
      << "    <filesystemType>basic</filesystemType>\n";
    for (const auto& o : nodes_) c << "    <device id=\"" << o.id << "\" introducedBy=\"\"></device>\n";
    c << "    <maxConflicts>10</maxConflicts>\n    <markerName>.stfolder</markerName>\n  </folder>\n";
    for (size_t j = 0; j < nodes_.size(); ++j) {
      const auto& o = nodes_[j];
      c << "  <device id=\"" << o.id << "\" name=\"node" << j << "\" compression=\"metadata\" introducer=\"false\">\n"
        << "    <address>" << (i == j ? std::string("dynamic") : "tcp://127.0.0.1:" + std::to_string(o.port))
        << "</address>\n    <paused>false</paused>\n  </device>\n";
    }
    c << "  <gui enabled=\"true\" tls=\"false\">\n    <address>127.0.0.1:" << n.gui_port << "</address>\n    <apikey>"
      << n.api_key << "</apikey>\n  </gui>\n"
      << "  <options>\n"
      << "    <listenAddress>tcp://127.0.0.1:" << n.port << "</listenAddress>\n"
      << "    <globalAnnounceEnabled>false</globalAnnounceEnabled>\n"
      << "    <localAnnounceEnabled>false</localAnnounceEnabled>\n"
      << "    <relaysEnabled>false</relaysEnabled>\n"
      << "    <natEnabled>false</natEnabled>\n"
      << "    <urAccepted>-1</urAccepted>\n    <urSeen>3</urSeen>\n"
      << "    <autoUpgradeIntervalH>0</autoUpgradeIntervalH>\n"
      << "    <crashReportingEnabled>false</crashReportingEnabled>\n"
      << "    <startBrowser>false</startBrowser>\n"
      << "    <announceLANAddresses>false</announceLANAddresses>\n"
      << "    <reconnectionIntervalS>1</reconnectionIntervalS>\n"
      << "    <progressUpdateIntervalS>1</progressUpdateIntervalS>\n"
      << "  </options>\n</configuration>\n";
    write_file(n.home + "/config.xml", c.str(), 0600);
  }
}

Syncthing::~Syncthing() { stop(); }

void Syncthing::stop() {
  for (auto& n : nodes_)
    if (n.proc) {
      n.proc->stop();
      n.proc.reset();
    }
}

HttpResponse Syncthing::api(size_t i, const std::string& method, const std::string& target,
                            const std::string& body) const {
  return http(method, nodes_[i].gui_port, target, nodes_[i].api_key, body);
}

std::string Syncthing::start() {
  for (auto& n : nodes_)
    n.proc = std::make_unique<Child>(
        std::vector<std::string>{"syncthing", "serve", "--home=" + n.home, "--no-browser", "--no-restart",
                                 "--no-upgrade", "--no-default-folder", "--logflags=3"},
        n.log, std::vector<std::string>{"STNORESTART=1", "STNOUPGRADE=1", "STNODEFAULTFOLDER=1"});
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto ok = eventually(
        [&] {
          auto r = api(i, "GET", "/rest/system/ping");
          return r.status == 200;
        },
        std::chrono::milliseconds(30000 * kSlowdown));
    if (!ok)
      return "syncthing " + std::to_string(i) + " REST API did not come up:\n" + tail(nodes_[i].proc->log(), 3000);
  }
  return connections_all(true, std::chrono::seconds(60));
}

std::string Syncthing::connections_all(bool want, std::chrono::seconds limit) {
  std::string last;
  auto ok = eventually(
      [&] {
        for (size_t i = 0; i < nodes_.size(); ++i) {
          auto r = api(i, "GET", "/rest/system/connections");
          if (r.status != 200) {
            last = "connections of " + std::to_string(i) + ": " + r.error + r.body;
            return false;
          }
          auto j = json::parse(r.body, nullptr, false);
          if (j.is_discarded()) return false;
          for (size_t k = 0; k < nodes_.size(); ++k) {
            if (k == i) continue;
            auto& c = j["connections"][nodes_[k].id];
            if (c.is_null() || c.value("connected", false) != want) {
              last = "node " + std::to_string(i) + " to node " + std::to_string(k) + " not yet " +
                     (want ? "connected" : "disconnected");
              return false;
            }
          }
        }
        return true;
      },
      limit);
  return ok ? "" : last + "\n" + logs_tail();
}

// Pausing a device closes its connection at once. Resuming it alone leaves the reconnection to Syncthing's dial
// loop, which may sleep for up to a minute; a change of the device's addresses in the same configuration change
// makes it dial at once (connections/service.go, checkAndSignalConnectLoopOnUpdatedDevices), so each reconnect
// alternates the peer's address between the equivalent tcp:// and tcp4:// forms.
std::string Syncthing::disconnect() {
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (size_t k = 0; k < nodes_.size(); ++k)
      if (k != i) {
        auto r = api(i, "PATCH", "/rest/config/devices/" + nodes_[k].id, R"({"paused": true})");
        if (r.status != 200) return "pause: " + r.error + r.body;
      }
  return connections_all(false, std::chrono::seconds(30));
}

std::string Syncthing::reconnect() {
  ++reconnects_;
  // First every pause lifted, then (so that the dial is not refused by a peer still pausing us) the addresses.
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (size_t k = 0; k < nodes_.size(); ++k)
      if (k != i) {
        auto r = api(i, "PATCH", "/rest/config/devices/" + nodes_[k].id, R"({"paused": false})");
        if (r.status != 200) return "resume: " + r.error + r.body;
      }
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (size_t k = 0; k < nodes_.size(); ++k)
      if (k != i) {
        std::string addr =
            std::string(reconnects_ % 2 ? "tcp4" : "tcp") + "://127.0.0.1:" + std::to_string(nodes_[k].port);
        auto r = api(i, "PATCH", "/rest/config/devices/" + nodes_[k].id, R"({"addresses": [")" + addr + R"("]})");
        if (r.status != 200) return "resume: " + r.error + r.body;
      }
  return connections_all(true, std::chrono::seconds(60));
}

std::string Syncthing::scan_all() {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto r = api(i, "POST", "/rest/db/scan?folder=veil");
    if (r.status != 200) return "scan on node " + std::to_string(i) + ": " + r.error + r.body;
  }
  return "";
}

std::string Syncthing::wait_in_sync(std::chrono::seconds limit) {
  if (auto e = scan_all(); !e.empty()) return e;
  std::string last;
  int good = 0;
  auto ok = eventually(
      [&] {
        std::string global;
        for (size_t i = 0; i < nodes_.size(); ++i) {
          auto r = api(i, "GET", "/rest/db/status?folder=veil");
          auto s = json::parse(r.body, nullptr, false);
          if (r.status != 200 || s.is_discarded()) {
            last = "db/status " + std::to_string(i) + ": " + r.error + r.body;
            return good = 0, false;
          }
          if (s.value("state", "") != "idle" || s.value("needTotalItems", -1) != 0) {
            last = "node " + std::to_string(i) + " status: " + s.dump();
            return good = 0, false;
          }
          std::string g = s["globalFiles"].dump() + "/" + s["globalDirectories"].dump() + "/" +
                          s["globalSymlinks"].dump() + "/" + s["globalDeleted"].dump() + "/" + s["globalBytes"].dump();
          if (i == 0) global = g;
          if (g != global) {
            last = "global state differs: node 0 " + global + ", node " + std::to_string(i) + " " + g;
            return good = 0, false;
          }
          for (size_t k = 0; k < nodes_.size(); ++k) {
            if (k == i) continue;
            auto c = api(i, "GET", "/rest/db/completion?folder=veil&device=" + nodes_[k].id);
            auto cj = json::parse(c.body, nullptr, false);
            if (c.status != 200 || cj.is_discarded() || cj.value("completion", 0.0) < 100.0 ||
                cj.value("needItems", -1) != 0 || cj.value("needDeletes", -1) != 0) {
              last = "node " + std::to_string(i) + " sees node " + std::to_string(k) + " at " + c.body;
              return good = 0, false;
            }
          }
        }
        // Twice in a row, 20 ms apart: a scan that had just started is not mistaken for the end.
        return ++good >= 2;
      },
      limit);
  if (ok) return "";
  std::string errs;
  for (size_t i = 0; i < nodes_.size(); ++i)
    errs += "folder errors on node " + std::to_string(i) + ": " +
            api(i, "GET", "/rest/folder/errors?folder=veil").body + "\n";
  return "not in sync after " + std::to_string(limit.count()) + " s: " + last + "\n" + errs + logs_tail();
}

std::string Syncthing::logs_tail() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i)
    out += "--- syncthing " + std::to_string(i) + " log (tail):\n" + tail(slurp_or_empty(nodes_[i].log), 2500) + "\n";
  return out;
}

// ---- unison, rsync ----

RunResult unison(const std::string& home, const std::string& a, const std::string& b,
                 const std::vector<std::string>& extra) {
  std::vector<std::string> argv{"env",   "UNISON=" + home, "unison", a,      b,          "-batch",
                                "-auto", "-times",         "-ui",    "text", "-logfile", home + "/unison.log"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  RunOptions o;
  o.timeout = std::chrono::seconds(120 * kSlowdown);
  return run(argv, o);
}

RunResult rsync(const std::string& src, const std::string& dst, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{"rsync", "-a"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(src + "/");
  argv.push_back(dst + "/");
  RunOptions o;
  o.timeout = std::chrono::seconds(120 * kSlowdown);
  return run(argv, o);
}

// ---- sshd, sshfs ----

Sshd::Sshd() : dir_("sshd") {
  const std::string d = dir_.path();
  key_ = d + "/user_key";
  for (const auto& k : {d + "/host_key", key_}) {
    auto r = run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "veilfs-sync-test", "-f", k});
    if (r.status != 0) {
      error_ = "ssh-keygen: " + r.output;
      return;
    }
  }
  try {
    write_file(d + "/authorized_keys", read_file(key_ + ".pub"), 0600);
  } catch (const std::exception& e) {
    error_ = e.what();
    return;
  }
  ::mkdir("/run/sshd", 0755);  // sshd's privilege-separation directory (Debian creates it only at boot)
  port_ = free_tcp_port();
  try {
    std::string host_pub = read_file(d + "/host_key.pub");
    write_file(d + "/known_hosts", "[127.0.0.1]:" + std::to_string(port_) + " " + host_pub, 0600);
  } catch (const std::exception& e) {
    error_ = e.what();
    return;
  }
  std::ostringstream c;
  c << "Port " << port_ << "\nListenAddress 127.0.0.1\nHostKey " << d << "/host_key\nPidFile " << d
    << "/sshd.pid\nAuthorizedKeysFile " << d << "/authorized_keys\nStrictModes no\nPermitRootLogin prohibit-password\n"
    << "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPrintMotd no\nUseDNS no\n"
    << "Subsystem sftp internal-sftp\nLogLevel ERROR\n";
  write_file(d + "/sshd_config", c.str(), 0600);
  auto check = run({"/usr/sbin/sshd", "-t", "-f", d + "/sshd_config"});
  if (check.status != 0) {
    error_ = "sshd -t: " + check.output;
    return;
  }
  proc_ = std::make_unique<Child>(std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", d + "/sshd_config"},
                                  d + "/sshd.log");
  auto up = eventually(
      [&] {
        UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(port_));
        return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      },
      10s);
  if (!up) error_ = "sshd did not listen on 127.0.0.1:" + std::to_string(port_) + ":\n" + proc_->log();
}

Sshd::~Sshd() {
  if (proc_) proc_->stop();
}

Sshfs::Sshfs(const Sshd& sshd, const std::string& remote, const std::string& mnt, bool coherent) : mnt_(mnt) {
  log_ = mnt + ".sshfs.log";
  std::string opts = "IdentityFile=" + sshd.key() +
                     ",StrictHostKeyChecking=yes,UserKnownHostsFile=" + sshd.known_hosts() +
                     ",GlobalKnownHostsFile=" + sshd.known_hosts() + ",UpdateHostKeys=no,BatchMode=yes,LogLevel=ERROR";
  if (coherent) opts += ",dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0";
  proc_ = std::make_unique<Child>(std::vector<std::string>{"sshfs", "-f", "-p", std::to_string(sshd.port()), "-o", opts,
                                                           "root@127.0.0.1:" + remote, mnt},
                                  log_);
  auto up = eventually([&] { return veiltest::is_mountpoint(mnt_) || !proc_->running(); }, 30s);
  ok_ = up && veiltest::is_mountpoint(mnt_);
  if (!ok_) error_ = "sshfs did not mount " + mnt_ + ":\n" + proc_->log();
}

std::string Sshfs::unmount() {
  if (!ok_) return "";
  RunResult r;
  for (int i = 0; i < 100; ++i) {
    r = run({"fusermount3", "-u", mnt_});
    if (r.status == 0) break;
    std::this_thread::sleep_for(50ms);  // EBUSY for a moment after the last close (release is asynchronous)
  }
  std::string err;
  if (r.status != 0) {
    err = "fusermount3 -u " + mnt_ + ": " + r.output;
    run({"fusermount3", "-uz", mnt_});
  }
  ok_ = false;
  proc_->stop();
  return err;
}

Sshfs::~Sshfs() {
  std::string e = unmount();
  if (!e.empty()) ADD_FAILURE() << e;
}

}  // namespace veilsync
