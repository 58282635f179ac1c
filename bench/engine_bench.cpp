// Content-engine micro-benchmark: sequential 1 MiB writes and reads through veil::ContentFile against raw
// libsodium AEAD on 4 KiB messages with the same cipher, in one run, so the ratio engine/raw is meaningful on a
// noisy shared machine (issue 2, "Performance").
//
// The engine is measured twice, each time in a forked child so that its worker pool is created under the
// affinity we give it: pinned to one CPU ("1 core": what one thread of the daemon can do), and on every CPU
// ("N cores": the parallel path). Each child also measures raw AEAD (single-threaded, before and after the
// engine) and plain I/O, so that each ratio compares figures taken under the same affinity and load.
// The backing file lives on tmpfs by default so that the disk is not what is measured.
#include <fcntl.h>
#include <sched.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "veilfs/content/content_file.hpp"
#include "veilfs/crypto/aead.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/crypto/secret.hpp"
#include "veilfs/crypto/sodium.hpp"
#include "veilfs/format/block_layout.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kRawMessage = 4096;

struct Options {
  std::string dir = "/dev/shm";
  size_t engine_mib = 256;
  size_t raw_mib = 512;
  int reps = 3;
  std::vector<veil::CipherId> ciphers;
  std::string csv;  // optional machine-readable output for bench/run.sh
  bool engine_only = false;
  int only_cpus = 0;  // with --engine-only: 1 = pinned, otherwise all
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// ---- raw libsodium, one thread, 4 KiB messages, the same associated-data length as a veilfs block ----

struct RawResult {
  double enc_mbs = 0, dec_mbs = 0;
};

RawResult raw_aead(veil::CipherId id, size_t total_mib) {
  const bool aes = id == veil::CipherId::Aes256Gcm;
  const size_t ns = veil::nonce_size(id);
  const size_t count = total_mib * kMiB / kRawMessage;
  constexpr size_t kRing = 64;  // distinct ciphertexts to decrypt, so the loop is not one cached message
  std::vector<uint8_t> key(crypto_aead_aes256gcm_KEYBYTES), plain(kRawMessage), ad(veil::format::kBlockAadSize);
  std::vector<uint8_t> nonces(kRing * ns), cts(kRing * (kRawMessage + crypto_aead_aes256gcm_ABYTES));
  randombytes_buf(key.data(), key.size());
  randombytes_buf(plain.data(), plain.size());
  randombytes_buf(ad.data(), ad.size());
  randombytes_buf(nonces.data(), nonces.size());
  auto st = std::make_unique<crypto_aead_aes256gcm_state>();
  if (aes) crypto_aead_aes256gcm_beforenm(st.get(), key.data());
  const size_t clen_max = kRawMessage + crypto_aead_aes256gcm_ABYTES;

  auto enc = [&](size_t i, uint8_t* out) {
    unsigned long long clen = 0;
    const uint8_t* n = nonces.data() + (i % kRing) * ns;
    if (aes)
      crypto_aead_aes256gcm_encrypt_afternm(out, &clen, plain.data(), plain.size(), ad.data(), ad.size(), nullptr, n,
                                            st.get());
    else
      crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, plain.data(), plain.size(), ad.data(), ad.size(), nullptr,
                                                 n, key.data());
  };
  RawResult r;
  std::vector<uint8_t> out(clen_max);
  auto t0 = Clock::now();
  for (size_t i = 0; i < count; ++i) enc(i, out.data());
  r.enc_mbs = double(count * kRawMessage) / 1e6 / seconds_since(t0);

  for (size_t i = 0; i < kRing; ++i) enc(i, cts.data() + i * clen_max);
  size_t bad = 0;
  t0 = Clock::now();
  for (size_t i = 0; i < count; ++i) {
    unsigned long long mlen = 0;
    const uint8_t* n = nonces.data() + (i % kRing) * ns;
    const uint8_t* c = cts.data() + (i % kRing) * clen_max;
    int rc = aes ? crypto_aead_aes256gcm_decrypt_afternm(out.data(), &mlen, nullptr, c, clen_max, ad.data(), ad.size(),
                                                         n, st.get())
                 : crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &mlen, nullptr, c, clen_max, ad.data(),
                                                              ad.size(), n, key.data());
    bad += rc != 0;
  }
  r.dec_mbs = double(count * kRawMessage) / 1e6 / seconds_since(t0);
  sodium_memzero(key.data(), key.size());
  sodium_memzero(st.get(), sizeof *st);
  if (bad) {
    std::fprintf(stderr, "raw AEAD: %zu messages failed to decrypt\n", bad);
    std::exit(1);
  }
  return r;
}

// ---- the I/O floor: the same backing bytes written and read with plain pwrite/pread, no crypto ----
// One thread doing crypto then I/O can reach at best 1 / (1/raw + 1/io): that ceiling shows how much of the gap
// to raw is the kernel's copy and how much is the engine itself.

struct IoResult {
  double write_mbs = 0, read_mbs = 0;  // in plaintext MB/s, so that they compare with the engine's
};

IoResult io_floor(veil::CipherId id, const Options& opt) {
  veil::format::BlockLayout layout(id, veil::format::kDefaultBlockSize);
  const size_t chunk = kMiB / layout.block_size() * layout.slot_size();
  std::vector<uint8_t> buf(chunk);
  veil::random_fill(buf);
  std::string path = opt.dir + "/veilfs-io-bench." + std::to_string(::getpid());
  IoResult r;
  veil::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) veil::throw_errno("open " + path);
  auto t0 = Clock::now();
  for (size_t i = 0; i < opt.engine_mib; ++i)
    veil::pwrite_full(fd.get(), buf, veil::format::kFileHeaderSize + uint64_t{i} * chunk);
  r.write_mbs = double(opt.engine_mib * kMiB) / 1e6 / seconds_since(t0);
  t0 = Clock::now();
  for (size_t i = 0; i < opt.engine_mib; ++i)
    if (veil::pread_full(fd.get(), buf, veil::format::kFileHeaderSize + uint64_t{i} * chunk) != chunk)
      throw std::runtime_error("short read from " + path);
  r.read_mbs = double(opt.engine_mib * kMiB) / 1e6 / seconds_since(t0);
  ::unlink(path.c_str());
  return r;
}

// ---- the engine ----

struct EngineResult {
  double write_mbs = 0, read_mbs = 0;
  // Measured in the same child just before and after the engine (mean), so that the ratio engine/raw compares
  // figures taken under the same affinity and the same load.
  double raw_enc_mbs = 0, raw_dec_mbs = 0, io_write_mbs = 0, io_read_mbs = 0;
  int ok = 0;
};

EngineResult engine_run(veil::CipherId id, const Options& opt) {
  auto cipher = std::make_shared<const veil::ContentCipher>(id, veil::format::kDefaultBlockSize,
                                                            veil::SecretBytes::random(veil::kAeadKeySize));
  std::string path = opt.dir + "/veilfs-engine-bench." + std::to_string(::getpid());
  std::vector<uint8_t> buf(kMiB), back(kMiB);
  veil::random_fill(buf);
  EngineResult r;
  try {
    {
      veil::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      if (!fd) veil::throw_errno("open " + path);
      veil::ContentFile f(cipher, std::move(fd), "bench");
      double t = 0;
      for (size_t i = 0; i < opt.engine_mib; ++i) {
        std::memcpy(buf.data(), &i, sizeof i);  // every MiB differs, so a misplaced block is caught on read
        auto t0 = Clock::now();
        f.write(uint64_t{i} * kMiB, buf);
        t += seconds_since(t0);
      }
      r.write_mbs = double(opt.engine_mib * kMiB) / 1e6 / t;
    }
    {
      // A new ContentFile, as after reopening: the header and per-file key are loaded again.
      veil::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) veil::throw_errno("open " + path);
      veil::ContentFile f(cipher, std::move(fd), "bench");
      if (f.size() != opt.engine_mib * kMiB) throw std::runtime_error("engine file has the wrong size");
      double t = 0;
      for (size_t i = 0; i < opt.engine_mib; ++i) {
        auto t0 = Clock::now();
        size_t got = f.read(uint64_t{i} * kMiB, back);
        t += seconds_since(t0);
        std::memcpy(buf.data(), &i, sizeof i);
        if (got != kMiB || std::memcmp(buf.data(), back.data(), kMiB) != 0)
          throw std::runtime_error("engine read back different bytes");
      }
      r.read_mbs = double(opt.engine_mib * kMiB) / 1e6 / t;
    }
    r.ok = 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "engine benchmark failed: %s\n", e.what());
  }
  ::unlink(path.c_str());
  return r;
}

void pin_to_one_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(c, &one);
      if (sched_setaffinity(0, sizeof one, &one) != 0) std::perror("sched_setaffinity");
      return;
    }
  }
}

// Runs the engine in a child so that its thread pool starts under the affinity we set here, not the parent's.
EngineResult engine_in_child(veil::CipherId id, const Options& opt, bool one_cpu) {
  int p[2];
  if (::pipe(p) != 0) veil::throw_errno("pipe");
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) veil::throw_errno("fork");
  if (pid == 0) {
    ::close(p[0]);
    if (one_cpu) pin_to_one_cpu();
    Options half = opt;
    half.raw_mib = std::max<size_t>(1, opt.raw_mib / 2);
    RawResult before = raw_aead(id, half.raw_mib);
    IoResult io{};
    try {
      io = io_floor(id, opt);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "I/O floor failed: %s\n", e.what());
    }
    EngineResult r = engine_run(id, opt);
    RawResult after = raw_aead(id, half.raw_mib);
    r.raw_enc_mbs = (before.enc_mbs + after.enc_mbs) / 2;
    r.raw_dec_mbs = (before.dec_mbs + after.dec_mbs) / 2;
    r.io_write_mbs = io.write_mbs;
    r.io_read_mbs = io.read_mbs;
    ssize_t w = ::write(p[1], &r, sizeof r);
    _exit(w == sizeof r ? 0 : 1);
  }
  ::close(p[1]);
  EngineResult r;
  ssize_t got = ::read(p[0], &r, sizeof r);
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (got != sizeof r) r = EngineResult{};
  return r;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: veilfs_engine_bench [--dir DIR] [--mib N] [--raw-mib N] [--reps N]\n"
               "                           [--cipher aes256gcm|xchacha20poly1305|all] [--csv FILE]\n"
               "                           [--engine-only 1|all]   (one engine pass in-process, for a profiler)\n"
               "Sequential 1 MiB writes/reads through ContentFile (file in DIR, default /dev/shm) vs raw libsodium\n"
               "AEAD on 4 KiB messages, one core and all cores; medians of --reps runs (default 3).\n");
  std::exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  std::string cipher = "all";
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--dir")
      o.dir = next();
    else if (a == "--mib")
      o.engine_mib = std::stoul(next());
    else if (a == "--raw-mib")
      o.raw_mib = std::stoul(next());
    else if (a == "--reps")
      o.reps = std::max(1, std::stoi(next()));
    else if (a == "--cipher")
      cipher = next();
    else if (a == "--csv")
      o.csv = next();
    else if (a == "--engine-only") {
      o.engine_only = true;
      o.only_cpus = next() == "1" ? 1 : 0;
    } else if (a == "-h" || a == "--help")
      usage(0);
    else
      usage(2);
  }
  if (o.engine_mib == 0 || o.raw_mib == 0) usage(2);
  if (cipher == "all") {
    if (veil::aes256gcm_available())
      o.ciphers.push_back(veil::CipherId::Aes256Gcm);
    else
      std::printf("AES-256-GCM: not available on this CPU (no AES-NI/PCLMUL), skipped\n");
    o.ciphers.push_back(veil::CipherId::XChaCha20Poly1305);
  } else if (auto c = veil::cipher_from_name(cipher)) {
    o.ciphers.push_back(*c);
  } else {
    usage(2);
  }
  return o;
}

const char* verdict(bool met) { return met ? "met" : "NOT met"; }

}  // namespace

int main(int argc, char** argv) {
  if (sodium_init() < 0) {
    std::fprintf(stderr, "libsodium failed to initialise\n");
    return 1;
  }
  Options opt = parse(argc, argv);
  long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);

  if (opt.engine_only) {
    if (opt.only_cpus == 1) pin_to_one_cpu();
    for (auto id : opt.ciphers) {
      EngineResult e = engine_run(id, opt);
      std::printf("%s engine (%s): write %.0f MB/s, read %.0f MB/s\n", std::string(veil::cipher_name(id)).c_str(),
                  opt.only_cpus == 1 ? "1 core" : "all cores", e.write_mbs, e.read_mbs);
      if (!e.ok) return 1;
    }
    return 0;
  }

  std::printf(
      "veilfs content engine vs raw libsodium %s AEAD: %zu MiB of 1 MiB sequential I/O in %s, raw AEAD on %zu MiB "
      "of 4 KiB messages, median of %d runs, %ld CPUs.\n"
      "plain I/O = the same backing bytes with pwrite/pread and no crypto; ceiling = 1/(1/raw + 1/io), the best one "
      "thread doing crypto then I/O can do.\n\n",
      sodium_version_string(), opt.engine_mib, opt.dir.c_str(), opt.raw_mib, opt.reps, ncpu);
  std::printf(
      "| cipher | op | raw AEAD MB/s | plain I/O MB/s | 1-core ceiling MB/s | engine 1 core MB/s | /raw | /ceiling "
      "| engine %ld cores MB/s | /raw |\n",
      ncpu);
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::FILE* csv = opt.csv.empty() ? nullptr : std::fopen(opt.csv.c_str(), "w");
  if (!opt.csv.empty() && !csv) {
    std::perror(opt.csv.c_str());
    return 1;
  }
  if (csv)
    std::fprintf(csv,
                 "cipher,op,raw_aead_mbs,plain_io_mbs,ceiling_1core_mbs,engine_1core_mbs,ratio_1core,"
                 "engine_ncore_mbs,ratio_ncore,cpus\n");

  bool all_ok = true;
  std::vector<std::string> verdicts;
  for (auto id : opt.ciphers) {
    std::vector<double> re, rd, iw, ir, w1, r1, wn, rn, wn_raw, rn_raw;
    for (int rep = 0; rep < opt.reps; ++rep) {
      // Each child measures raw AEAD and plain I/O around its engine run, so that a noisy neighbour hurts
      // every column of one row alike.
      EngineResult one = engine_in_child(id, opt, true);
      EngineResult all = engine_in_child(id, opt, false);
      if (!one.ok || !all.ok) {
        all_ok = false;
        break;
      }
      re.push_back(one.raw_enc_mbs);
      rd.push_back(one.raw_dec_mbs);
      iw.push_back(one.io_write_mbs);
      ir.push_back(one.io_read_mbs);
      w1.push_back(one.write_mbs);
      r1.push_back(one.read_mbs);
      wn_raw.push_back(all.raw_enc_mbs);
      rn_raw.push_back(all.raw_dec_mbs);
      wn.push_back(all.write_mbs);
      rn.push_back(all.read_mbs);
    }
    const std::string name(veil::cipher_name(id));
    if (w1.empty()) {
      std::printf("| %s | engine failed | | | | | | | | |\n", name.c_str());
      continue;
    }
    // Ratios are taken per run (engine and raw from the same child), then the median.
    auto ratios = [](const std::vector<double>& a, const std::vector<double>& b) {
      std::vector<double> r;
      for (size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
      return median(r);
    };
    struct Row {
      const char* op;
      double raw, io, one, one_ratio, n, n_ratio;
    } rows[] = {{"write (encrypt)", median(re), median(iw), median(w1), ratios(w1, re), median(wn), ratios(wn, wn_raw)},
                {"read (decrypt)", median(rd), median(ir), median(r1), ratios(r1, rd), median(rn), ratios(rn, rn_raw)}};
    for (const Row& r : rows) {
      double ceiling = 1 / (1 / r.raw + 1 / r.io);
      std::printf("| %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f%% | %.0f%% | %.0f | %.0f%% |\n", name.c_str(), r.op,
                  r.raw, r.io, ceiling, r.one, 100 * r.one_ratio, 100 * r.one / ceiling, r.n, 100 * r.n_ratio);
      if (csv)
        std::fprintf(csv, "%s,%s,%.1f,%.1f,%.1f,%.1f,%.3f,%.1f,%.3f,%ld\n", name.c_str(),
                     r.op[0] == 'w' ? "write" : "read", r.raw, r.io, ceiling, r.one, r.one_ratio, r.n, r.n_ratio, ncpu);
      char line[256];
      std::snprintf(line, sizeof line, "- %s %s: 1 core >= 80%% of raw: %s; %ld cores > raw: %s", name.c_str(), r.op,
                    verdict(r.one_ratio >= 0.8), ncpu, verdict(r.n_ratio > 1));
      verdicts.push_back(line);
    }
  }
  std::printf("\nTargets (issue 2):\n");
  for (auto& v : verdicts) std::printf("%s\n", v.c_str());
  if (csv) std::fclose(csv);
  return all_ok ? 0 : 1;
}
