// `veilfs xray`: backing paths to plain paths and back (veilfs/path_map.hpp), and its command line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>

#include "test_volume.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/path_map.hpp"

namespace veil::fsck {
namespace {

using testing::pattern;
using testing::read_all;
using testing::TestVolume;
using testing::write_all;

const std::string kLong = std::string(200, 'L');  // stored as veilfs.longname.<hash> plus its sidecar

void populate(TestVolume& v) {
  v.mkdir("/docs");
  v.mkdir("/docs/" + kLong);
  v.write_file("/docs/report.txt", pattern(100, 1));
  v.write_file("/docs/" + kLong + "/inner", pattern(10, 2));
  v.symlink("/docs/link", std::string(3500, 't'));  // its target in a sidecar
}

// Without following a symlink (a long target's symlink points nowhere: its target is in the sidecar).
bool present(const std::string& path) { return std::filesystem::exists(std::filesystem::symlink_status(path)); }

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return ErrorKind::Io;
}

TEST(Xray, EveryPlainPathMapsToItsBackingFilesAndBack) {
  TestVolume v;
  populate(v);
  const std::vector<std::string> plain{"/docs", "/docs/report.txt", "/docs/" + kLong, "/docs/" + kLong + "/inner",
                                       "/docs/link"};
  for (const std::string& p : plain) {
    SCOPED_TRACE(p.substr(0, 40));
    const auto c = cipher_paths_of(v.vol(), p);
    ASSERT_FALSE(c.empty());
    EXPECT_EQ(c[0], v.cipher_path(p));
    EXPECT_TRUE(present(v.abs(c[0])));
    EXPECT_EQ(plain_path_of(v.vol(), c[0]).path, p);
    EXPECT_EQ(plain_path_of(v.vol(), c[0]).role, "");
    // Every file listed exists, and each of veilfs's own files names the entry it belongs to.
    for (size_t i = 1; i < c.size(); ++i) {
      EXPECT_TRUE(present(v.abs(c[i]))) << c[i];
      PlainPath own = plain_path_of(v.vol(), c[i]);
      EXPECT_EQ(own.path, p);
      EXPECT_NE(own.role, "");
    }
  }
  EXPECT_EQ(cipher_paths_of(v.vol(), "/docs/" + kLong).size(), 3u) << "entry, long-name sidecar, IV file";
  EXPECT_EQ(cipher_paths_of(v.vol(), "/docs/link").size(), 2u) << "entry, target sidecar";
  EXPECT_EQ(cipher_paths_of(v.vol(), "docs/report.txt"), cipher_paths_of(v.vol(), "/docs/report.txt"));
  EXPECT_EQ(plain_path_of(v.vol(), "").path, "/");
  EXPECT_EQ(plain_path_of(v.vol(), "veilfs.conf").role, "the volume's config");
  EXPECT_EQ(plain_path_of(v.vol(), v.cipher_path("/docs") + "/veilfs.diriv").role, "its directory IV file");
}

TEST(Xray, AnEntryNotMadeYetGetsTheNameItWouldHave) {
  TestVolume v;
  populate(v);
  const auto c = cipher_paths_of(v.vol(), "/docs/not-yet.txt");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_FALSE(present(v.abs(c[0])));
  v.write_file("/docs/not-yet.txt", pattern(5, 3));
  EXPECT_EQ(c[0], v.cipher_path("/docs/not-yet.txt"));
}

TEST(Xray, WhatCannotBeTranslatedIsAnErrorNamingTheCipherSide) {
  TestVolume v;
  populate(v);
  const std::string docs = v.cipher_path("/docs");
  EXPECT_EQ(kind_of([&] { plain_path_of(v.vol(), docs + "/nosuchfile"); }), ErrorKind::NotFound);
  EXPECT_EQ(kind_of([&] { cipher_paths_of(v.vol(), "/nosuchdir/file"); }), ErrorKind::NotFound);
  EXPECT_EQ(kind_of([&] { plain_path_of(v.vol(), docs + "/../veilfs.conf"); }), ErrorKind::InvalidArgument);
  write_all(v.abs(docs + "/stray.txt"), pattern(3, 4));  // not a name of this volume
  try {
    plain_path_of(v.vol(), docs + "/stray.txt");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Corrupt);
    EXPECT_NE(std::string(e.what()).find(docs + "/stray.txt"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("docs/"), std::string::npos) << "a plain name in " << e.what();
  }
}

struct CliRun {
  int code = -1;
  std::string out, err;
};

CliRun run_xray(const std::vector<std::string>& args) {
  char tmpl[] = "/tmp/veilfs-xray-cli-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  const std::string t = tmpl;
  const std::string pass = "fsck test passphrase\n";
  write_all(t + "/in", std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pass.data()), pass.size()));
  std::string cmd = std::string("'") + VEILFS_FSCK_DRIVER + "' xray";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " <'" + t + "/in' >'" + t + "/out' 2>'" + t + "/err'";
  const int st = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto o = read_all(t + "/out"), e = read_all(t + "/err");
  r.out.assign(o.begin(), o.end());
  r.err.assign(e.begin(), e.end());
  std::filesystem::remove_all(t);
  return r;
}

TEST(Xray, CommandLineBothWays) {
  TestVolume v;
  populate(v);
  const std::string file = v.cipher_path("/docs/report.txt");
  // Relative to the cipher dir, or absolute inside it.
  CliRun r = run_xray({v.dir(), file, v.abs(file)});
  EXPECT_EQ(r.code, cli::kExitOk) << r.err;
  EXPECT_EQ(r.out, "/docs/report.txt\n/docs/report.txt\n");
  const std::string side = v.cipher_path("/docs/" + kLong) + ".name";
  r = run_xray({v.dir(), side});
  EXPECT_EQ(r.code, cli::kExitOk) << r.err;
  EXPECT_EQ(r.out, "/docs/" + kLong + " (its long-name sidecar)\n");
  r = run_xray({"--to-cipher", v.dir(), "docs/" + kLong});
  EXPECT_EQ(r.code, cli::kExitOk) << r.err;
  const std::string base = v.dir() + "/" + v.cipher_path("/docs/" + kLong);
  EXPECT_EQ(r.out, base + "\n" + base + ".name\n" + base + "/veilfs.diriv\n");
  // A path that fails is said so, the others still print; exit 1.
  r = run_xray({v.dir(), "nosuch", file});
  EXPECT_EQ(r.code, cli::kExitError);
  EXPECT_EQ(r.out, "/docs/report.txt\n");
  EXPECT_NE(r.err.find("veilfs xray: nosuch: No such file or directory"), std::string::npos) << r.err;
  r = run_xray({v.dir(), "/etc/passwd"});
  EXPECT_EQ(r.code, cli::kExitError);
  EXPECT_NE(r.err.find("not inside the cipher dir"), std::string::npos) << r.err;
  EXPECT_EQ(run_xray({v.dir()}).code, cli::kExitUsage);
  EXPECT_EQ(run_xray({"--bogus", v.dir(), file}).code, cli::kExitUsage);
}

}  // namespace
}  // namespace veil::fsck
