// SIGKILL in the middle of config changes while the volume is mounted and being written, and SIGKILL of the
// daemon during that writing. Several seeded rounds on one volume; each round:
//   - mounts the volume with a passphrase that opens it now;
//   - two writers create, write, fsync and close files through the mount, renaming every third one;
//   - meanwhile `veilkey passwd` / `slot add` / `slot remove` run on the same cipher dir, and each is SIGKILLed
//     at a stage it reports (VEILKEY_TEST_PAUSE_AT holds it there), after a seeded random delay, or not at all;
//   - the daemon is SIGKILLed while the writers are busy and veilkey may still be working.
// After each veilkey run the config must load and open with the old secret or the new one, exactly the one that
// the stages veilkey reported imply; after each round the volume must remount, every fsynced file must read back
// exactly, no file may read as garbage, and fsck may report only the files under way at the kill (and the temp
// config a killed veilkey can leave behind, which the next veilkey sweeps).
#include <poll.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "fsck/checker.hpp"
#include "stress_util.hpp"
#include "veilfs/format/config.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::stress {
namespace {

constexpr std::string_view kTempPrefix = "veilfs.conf.tmp.";
const std::vector<std::string> kStages = {"locked", "unlocked", "after-temp", "after-rename", "saved"};

uint32_t base_seed() {
  const char* s = std::getenv("VEILFS_STRESS_SEED");
  return s && *s ? static_cast<uint32_t>(std::strtoul(s, nullptr, 10)) : 20261121u;
}

// ---- veilkey as a child process, killed at a chosen moment ----------------------------------------------------

enum class Kill { AtStage, AfterDelay, Never };

struct KillPlan {
  Kill how = Kill::Never;
  std::string stage;                   // AtStage
  std::chrono::microseconds delay{0};  // AfterDelay
  std::string describe() const {
    switch (how) {
      case Kill::AtStage:
        return "SIGKILL at " + stage;
      case Kill::AfterDelay:
        return "SIGKILL after " + std::to_string(delay.count()) + " us";
      case Kill::Never:
        break;
    }
    return "run to completion";
  }
};

struct KeyRun {
  int status = -1;                  // exit code, or 128 + signal
  std::vector<std::string> stages;  // what it reported before it ended, in order
  std::string err;                  // its standard error
  bool reported(std::string_view s) const { return std::find(stages.begin(), stages.end(), s) != stages.end(); }
  bool killed() const { return status == 128 + SIGKILL; }
};

struct Pipe {
  int rd = -1, wr = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    rd = fds[0];
    wr = fds[1];
  }
  ~Pipe() {
    close_rd();
    close_wr();
  }
  void close_rd() {
    if (rd >= 0) ::close(rd);
    rd = -1;
  }
  void close_wr() {
    if (wr >= 0) ::close(wr);
    wr = -1;
  }
};

// Reads stage lines from fd into out until `until` arrives (returns true) or EOF / the deadline (false).
bool read_stages(int fd, std::string& buf, std::vector<std::string>& out, const std::string& until,
                 Clock::time_point deadline) {
  for (;;) {
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
      out.push_back(buf.substr(0, nl));
      buf.erase(0, nl + 1);
      if (!until.empty() && out.back() == until) return true;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char chunk[256];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // EOF: the child is gone
    buf.append(chunk, static_cast<size_t>(n));
  }
}

// Runs veilkey with args, killing it as planned. Everything the child needs is prepared before fork(): other
// threads of this process are writing through the mount, and only async-signal-safe calls are allowed between
// fork and exec in a multithreaded process.
KeyRun run_veilkey(const std::vector<std::string>& args, const KillPlan& plan, const std::string& err_path) {
  Pipe events, resume;
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (!std::string_view(*e).starts_with("VEILKEY_")) env_strings.emplace_back(*e);
  env_strings.push_back("VEILKEY_TEST_EVENT_FD=" + std::to_string(events.wr));
  if (plan.how == Kill::AtStage) {
    env_strings.push_back("VEILKEY_TEST_PAUSE_AT=" + plan.stage);
    env_strings.push_back("VEILKEY_TEST_RESUME_FD=" + std::to_string(resume.rd));
  }
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string prog = VEILKEY_BIN;
  std::vector<std::string> arg_strings = args;
  argv.push_back(prog.data());
  for (auto& a : arg_strings) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int in = ::open("/dev/null", O_RDONLY);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || err < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(err, 1);
    ::dup2(err, 2);
    ::fcntl(events.wr, F_SETFD, 0);  // inherited across exec: the hooks' descriptors
    ::fcntl(resume.rd, F_SETFD, 0);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  events.close_wr();
  resume.close_rd();

  KeyRun r;
  std::string buf;
  const auto deadline = Clock::now() + std::chrono::seconds(kSanitized ? 60 : 20);
  if (plan.how == Kill::AtStage) {
    if (!read_stages(events.rd, buf, r.stages, plan.stage, deadline))
      ADD_FAILURE() << "veilkey " << args[0] << " never reached stage " << plan.stage;
    ::kill(pid, SIGKILL);
  } else if (plan.how == Kill::AfterDelay) {
    std::this_thread::sleep_for(plan.delay);  // the fault's timing, not synchronisation: any moment is fair
    ::kill(pid, SIGKILL);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  read_stages(events.rd, buf, r.stages, "", Clock::now() + std::chrono::seconds(10));  // the rest, up to EOF
  std::ifstream in(err_path);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

// What the config must hold after a run: the change (New), not the change (Old), or either (killed between
// reporting "after-temp" and reporting "after-rename": the rename may or may not have happened).
enum class Outcome { Old, New, Either };
const char* outcome_name(Outcome o) { return o == Outcome::Old ? "old" : o == Outcome::New ? "new" : "either"; }

Outcome implied_outcome(const KeyRun& r) {
  if (r.status == 0 || r.reported("after-rename") || r.reported("saved")) return Outcome::New;
  if (!r.reported("after-temp")) return Outcome::Old;  // the rename follows "after-temp"
  return Outcome::Either;
}

// ---- the volume's key slots, read directly ---------------------------------------------------------------------

format::VolumeConfig load_config(const std::string& cipher) {
  UniqueFd d(::open(cipher.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) throw std::runtime_error("open cipher dir");
  return layout::load_config(d.get());  // throws Corrupt for a torn or half-written config
}

// The master key that pass opens, or nullopt if it opens no slot; the slot id through *slot.
std::optional<SecretBytes> try_open(const format::VolumeConfig& cfg, const std::string& pass,
                                    std::optional<uint32_t>* slot = nullptr) {
  try {
    return cfg.unlock(bytes_of(pass), slot);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::WrongSecret) return std::nullopt;
    throw;
  }
}

std::vector<std::string> temp_configs(const std::string& cipher) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(cipher))
    if (e.path().filename().string().starts_with(kTempPrefix)) out.push_back(e.path().string());
  return out;
}

// ---- the test ------------------------------------------------------------------------------------------------

struct FileLedger {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, uint32_t> committed;  // plain name -> content seed: fsynced, closed, renamed
  std::map<std::string, uint32_t> in_flight;  // being written or renamed at some kill (kept for good)
  size_t committed_this_round = 0;
  size_t key_runs_this_round = 0;
};

size_t size_of(uint32_t seed) { return static_cast<size_t>(seed * 7919u % (96 * 1024)) + 1; }

class ConfigKill : public ::testing::Test {
 protected:
  void SetUp() override {
    passes_.push_back("first passphrase");
    s_ = std::make_unique<Scratch>(passes_[0]);
    auto cfg = load_config(s_->cipher);
    master_ = std::move(*try_open(cfg, passes_[0]));
    open_set_ = {passes_[0]};
  }

  std::string passfile(const std::string& pass) {
    std::string p = s_->base + "/pass-" + std::to_string(std::hash<std::string>()(pass));
    if (!fs::exists(p)) write_text(p, pass + "\n");
    return p;
  }

  // One veilkey command, killed per plan; then the config is judged against what veilkey reported.
  void change_config(std::mt19937& rng, const KillPlan& plan) {
    std::vector<std::string> args;
    std::string op, old_pass, new_pass, victim;
    const size_t n = open_set_.size();
    const unsigned pick = rng() % 3;
    if (n >= 3 || (n >= 2 && pick == 0)) {
      op = "slot remove";
      victim = open_set_[rng() % n];
      do old_pass = open_set_[rng() % n];
      while (old_pass == victim);
      std::optional<uint32_t> id;
      ASSERT_TRUE(try_open(load_config(s_->cipher), victim, &id));
      args = {"slot", "remove", s_->cipher, "--slot", std::to_string(*id), "--passfile", passfile(old_pass)};
    } else {
      old_pass = open_set_[rng() % n];
      new_pass = "passphrase " + std::to_string(passes_.size()) + "-" + std::to_string(rng() % 100000);
      passes_.push_back(new_pass);
      if (pick == 1) {
        op = "slot add";
        args = {
            "slot",         "add",  s_->cipher,  "--passfile", passfile(old_pass), "--new-passfile", passfile(new_pass),
            "--kdf-memory", "8192", "--kdf-ops", "1"};
      } else {
        op = "passwd";  // the new slot keeps the old slot's (test-sized) KDF parameters
        args = {"passwd", s_->cipher, "--passfile", passfile(old_pass), "--new-passfile", passfile(new_pass)};
      }
    }
    const KeyRun r = run_veilkey(args, plan, s_->base + "/veilkey.err");
    const Outcome want = implied_outcome(r);
    std::string last = r.stages.empty() ? "(none)" : r.stages.back();
    const std::string what = "veilkey " + op + " (" + plan.describe() + "; exit " + std::to_string(r.status) +
                             ", last stage reported: " + last + ", so " + outcome_name(want) + ")";
    ++stage_hist_[r.status == 0 ? "completed" : last];
    if (!r.killed()) {
      ASSERT_EQ(r.status, 0) << what << ": " << r.err;
      EXPECT_EQ(r.stages.back(), "saved") << what;
    }

    // The config loads (never torn, never half-written) and every secret opens the same master key or none.
    format::VolumeConfig cfg;
    ASSERT_NO_THROW(cfg = load_config(s_->cipher)) << what << ": the config no longer loads";
    std::vector<std::string> now;
    for (const auto& p : passes_) {
      auto m = try_open(cfg, p);
      if (!m) continue;
      EXPECT_TRUE(m->equals(master_.span())) << what << ": a slot opens a different master key";
      now.push_back(p);
    }
    auto opens = [&](const std::string& p) { return std::find(now.begin(), now.end(), p) != now.end(); };
    // Secrets the command did not touch keep working.
    for (const auto& p : open_set_)
      if (p != old_pass && p != victim) {
        EXPECT_TRUE(opens(p)) << what << ": an unrelated slot was lost";
      }
    bool changed;
    if (op == "passwd") {
      EXPECT_NE(opens(old_pass), opens(new_pass)) << what << ": exactly one of old and new must open";
      changed = opens(new_pass);
    } else if (op == "slot add") {
      EXPECT_TRUE(opens(old_pass)) << what;
      changed = opens(new_pass);
    } else {
      EXPECT_TRUE(opens(old_pass)) << what;
      changed = !opens(victim);
    }
    if (want != Outcome::Either) {
      EXPECT_EQ(changed, want == Outcome::New) << what;
    }
    ASSERT_FALSE(now.empty()) << what << ": no secret opens the volume any more";
    open_set_ = now;

    // A completed run swept the temp configs that killed runs left; a killed one may leave its own, holding no
    // secret in any form a passphrase could be read from.
    if (r.status == 0) {
      kills_since_sweep_ = 0;
      EXPECT_EQ(temp_configs(s_->cipher), std::vector<std::string>{}) << what << ": stale temp config not swept";
    } else {
      ++kills_since_sweep_;
    }
    for (const auto& t : temp_configs(s_->cipher)) {
      std::ifstream in(t, std::ios::binary);
      std::string bytes(std::istreambuf_iterator<char>(in), {});
      for (const auto& p : passes_) EXPECT_EQ(bytes.find(p), std::string::npos) << t << " holds a passphrase";
    }
  }

  std::unique_ptr<Scratch> s_;
  SecretBytes master_;
  std::vector<std::string> passes_;    // every passphrase ever used
  std::vector<std::string> open_set_;  // those that open the volume now
  size_t kills_since_sweep_ = 0;
  std::map<std::string, int> stage_hist_;  // how veilkey runs ended: last stage reported, or "completed"
  FileLedger files_;
};

TEST_F(ConfigKill, SigkillOfVeilkeyAndDaemonWhileMountedLosesNoSecretAndNothingFsynced) {
  SKIP_WITHOUT_FUSE();
  const uint32_t seed = base_seed();
  std::printf("seed %u (set VEILFS_STRESS_SEED to repeat another)\n", seed);
  constexpr int kRounds = 10, kKeyRunsPerRound = 5;
  const auto t0 = Clock::now();

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + ", seed " + std::to_string(seed));
    std::mt19937 rng(seed * 1000003u + static_cast<uint32_t>(round));
    auto d = std::make_unique<Daemon>(*s_, passfile(open_set_.back()));
    ASSERT_TRUE(d->ok()) << "mount at the start of the round";
    {
      std::lock_guard lk(files_.mu);
      files_.committed_this_round = 0;
      files_.key_runs_this_round = 0;
    }

    std::atomic<bool> stop{false};
    auto writer = [&](int w) {
      for (uint32_t i = 0; !stop; ++i) {
        const uint32_t fseed = static_cast<uint32_t>(round * 10 + w) * 100000u + i;
        const std::string name = "r" + std::to_string(round) + "-w" + std::to_string(w) + "-" + std::to_string(i);
        std::string final_name = i % 3 == 2 ? "m" + name : name;
        {
          std::lock_guard lk(files_.mu);
          files_.in_flight[name] = fseed;
          files_.in_flight[final_name] = fseed;
        }
        if (write_file(s_->mnt + "/" + name, pattern(size_of(fseed), fseed)) != 0) return;  // the daemon is gone
        if (final_name != name && ::rename((s_->mnt + "/" + name).c_str(), (s_->mnt + "/" + final_name).c_str()))
          return;
        std::lock_guard lk(files_.mu);
        files_.in_flight.erase(name);
        files_.in_flight.erase(final_name);
        files_.committed[final_name] = fseed;
        ++files_.committed_this_round;
        files_.cv.notify_all();
      }
    };

    // The plan of this round, drawn up front so that the seed alone decides it.
    std::vector<KillPlan> plans(kKeyRunsPerRound);
    for (auto& p : plans) {
      switch (rng() % 5) {
        case 0:
        case 1:
          p.how = Kill::AtStage;
          p.stage = kStages[rng() % kStages.size()];
          break;
        case 2:
        case 3:
          p.how = Kill::AfterDelay;
          p.delay = std::chrono::microseconds(rng() % (kSanitized ? 60000 : 20000));  // about one veilkey run
          break;
        default:
          p.how = Kill::Never;
      }
    }
    const size_t kill_daemon_after_runs = 1 + rng() % (kKeyRunsPerRound - 1);
    const size_t kill_daemon_after_files = 5 + rng() % 20;

    std::thread w1(writer, 1), w2(writer, 2);
    std::thread keys([&] {
      for (const auto& p : plans) {
        change_config(rng, p);
        std::lock_guard lk(files_.mu);
        ++files_.key_runs_this_round;
        files_.cv.notify_all();
      }
    });
    {
      std::unique_lock lk(files_.mu);
      bool ready = files_.cv.wait_for(lk, std::chrono::seconds(kSanitized ? 150 : 45), [&] {
        return files_.committed_this_round >= kill_daemon_after_files &&
               files_.key_runs_this_round >= kill_daemon_after_runs;
      });
      EXPECT_TRUE(ready) << "too little progress: " << files_.committed_this_round << " files, "
                         << files_.key_runs_this_round << " veilkey runs";
    }
    d->kill9();  // veilkey may still be at work on the cipher dir
    stop = true;
    keys.join();
    w1.join();
    w2.join();
    d.reset();
    if (HasFatalFailure()) return;

    // Whatever temp config the killed runs left does not stop a mount with a secret that opens now.
    EXPECT_LE(temp_configs(s_->cipher).size(), kills_since_sweep_);
    Daemon again(*s_, passfile(open_set_.back()));
    ASSERT_TRUE(again.ok()) << "remount after the kills failed: " << again.log();

    // One child checks every file (a hung mount fails it by its alarm instead of hanging the test).
    std::map<std::string, uint32_t> committed, in_flight;
    {
      std::lock_guard lk(files_.mu);
      committed = files_.committed;
      in_flight = files_.in_flight;
    }
    const std::string report = s_->base + "/check.txt";
    int rc = in_child(
        [&] {
          std::ofstream out(report, std::ios::trunc);
          int bad = 0;
          for (const auto& [name, fseed] : committed) {
            auto expect = pattern(size_of(fseed), fseed);
            if (int e = check_file(s_->mnt + "/" + name, expect)) {
              out << name << " was fsynced but reads " << (e == kMismatch ? "different bytes" : std::strerror(e))
                  << "\n";
              bad = 1;
            }
          }
          // A file under way at the kill may be missing, short or unreadable (EIO), never wrong: each byte is
          // what was written, or zero where a block had not reached the disk.
          for (const auto& [name, fseed] : in_flight) {
            auto expect = pattern(size_of(fseed), fseed);
            std::vector<uint8_t> got;
            int e = read_file(s_->mnt + "/" + name, got, expect.size() + 1);
            if (e == ENOENT || e == EIO) continue;
            bool garbage = e != 0 || got.size() > expect.size();
            for (size_t k = 0; !garbage && k < got.size(); ++k) garbage = got[k] != expect[k] && got[k] != 0;
            if (garbage) {
              out << name << " (under way at a kill) reads as garbage or fails with " << std::strerror(e) << "\n";
              bad = 1;
            }
          }
          return bad;
        },
        kSanitized ? 150 : 60);
    if (rc != 0) {
      std::ifstream in(report);
      ADD_FAILURE() << "file check after round " << round << " (exit " << rc << "):\n"
                    << std::string(std::istreambuf_iterator<char>(in), {});
    }
    EXPECT_EQ(again.unmount(), 0) << again.log();

    fsck::Report rep = fsck::check_volume(s_->cipher, bytes_of(open_set_.back()), {});
    std::printf("round %d: %zu files fsynced in all, %zu ever under way at a kill; fsck: %llu problem(s)\n", round,
                committed.size(), in_flight.size(), static_cast<unsigned long long>(rep.problem_count));
    for (const auto& p : rep.problems) {
      std::printf("  %s\n", p.line().c_str());
      bool temp = p.kind == fsck::ProblemKind::TempLeftover && p.cipher_path.starts_with(kTempPrefix);
      bool under_way = p.path.size() > 1 && in_flight.count(p.path.substr(1));
      EXPECT_TRUE(temp || under_way) << "fsck reports what was neither under way nor a veilkey temp: " << p.line();
    }
  }

  // One last change that runs to completion sweeps any temp config; then `veilfs fsck` (the command) agrees.
  std::mt19937 rng(seed);
  change_config(rng, KillPlan{});
  if (HasFatalFailure()) return;
  fsck::Report rep = fsck::check_volume(s_->cipher, bytes_of(open_set_.back()), {});
  for (const auto& p : rep.problems)
    EXPECT_TRUE(p.path.size() > 1 && files_.in_flight.count(p.path.substr(1))) << p.line();
  std::string cmd = std::string(VEILFS_BIN) + " fsck --quiet --passfile '" + passfile(open_set_.back()) + "' '" +
                    s_->cipher + "' >/dev/null 2>&1";
  int st = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(st), rep.clean() ? 0 : 26) << "veilfs fsck's exit code";

  std::string hist;
  for (const auto& [k, v] : stage_hist_) hist += " " + k + "=" + std::to_string(v);
  std::printf("veilkey runs ended at:%s\n%zu files fsynced, %zu under way at a kill; %.1f s\n", hist.c_str(),
              files_.committed.size(), files_.in_flight.size(),
              std::chrono::duration<double>(Clock::now() - t0).count());
}

}  // namespace
}  // namespace veil::stress
