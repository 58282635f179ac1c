#!/usr/bin/env bash
# Usage: scripts/chroot-test.sh [SUITE] [CTEST_ARGS...]     (as root; SUITE: trixie (default) or testing)
#
# Builds veilfs and runs its Release suite in a Debian SUITE environment made from Debian's packages with
# mmdebstrap (Debian 13 "trixie": libfuse 3.17, GCC 14; testing: libfuse 3.18), so that newer libfuse and
# compilers are tried on this Debian 12 machine. /dev/fuse is bound in, so the mount tests are real tests.
# The environment is cached as /var/tmp/veilfs-chroots/SUITE.tar (rebuilt when older than a week); the source
# is the committed tree (git archive HEAD), built in a fresh directory each run.
# Extra arguments go to ctest (default: everything but the long crash, sync and stress labels).
set -euo pipefail
suite=${1:-trixie}
shift || true
cd "$(dirname "$0")/.."
repo=$PWD
[ "$(id -u)" = 0 ] || { echo "!!! scripts/chroot-test.sh needs root (mmdebstrap, mounts)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null

cache=/var/tmp/veilfs-chroots
mkdir -p "$cache"
tarball=$cache/$suite.tar
pkgs=g++,cmake,ninja-build,pkg-config,libfuse3-dev,fuse3,libsodium-dev,libboost-program-options-dev,libgtest-dev
pkgs+=,googletest,nlohmann-json3-dev,rsync,sqlite3,git,tar,attr,python3,e2fsprogs,ca-certificates,procps,util-linux
if [ ! -s "$tarball" ] || [ -n "$(find "$tarball" -mtime +7)" ]; then
  echo "== making a Debian $suite environment (mmdebstrap)"
  # The output's name must end in .tar: mmdebstrap picks the format from it.
  rm -rf "$cache/$suite.tmp.tar" "$tarball"
  mmdebstrap --variant=apt --include="$pkgs" "$suite" "$cache/$suite.tmp.tar" http://deb.debian.org/debian
  mv "$cache/$suite.tmp.tar" "$tarball"
fi

root=$(mktemp -d /var/tmp/veilfs-chroot-"$suite".XXXXXX)
mounted=()
cleanup() {
  local m
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  # Never remove through a mount that is still there.
  if ! grep -q " $root/" /proc/self/mounts; then rm -rf "$root"; fi
}
trap cleanup EXIT
tar -xf "$tarball" -C "$root"
for d in proc sys dev dev/pts; do
  mkdir -p "$root/$d"
  mount --rbind "/$d" "$root/$d"
  mount --make-rslave "$root/$d"
  mounted+=("$root/$d")
done
mkdir -p "$root/src"
git archive HEAD | tar -x -C "$root/src"
echo "== Debian $suite: $(chroot "$root" sh -c 'cat /etc/debian_version; pkg-config --modversion fuse3; g++ --version | head -1' | tr '\n' ' ')"
t0=$SECONDS
chroot "$root" bash -c "cd /src && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DVEILFS_BUILD_BENCH=OFF \
  >/dev/null && ninja -C build >/dev/null" || {
  chroot "$root" bash -c "ninja -C /src/build -k 0 2>&1 | grep -E 'error|FAILED' | head -40" >&2
  echo "!!! Debian $suite: the build failed" >&2
  exit 1
}
echo "== Debian $suite: built in $((SECONDS - t0)) s"
ctest_args=("$@")
((${#ctest_args[@]})) || ctest_args=(-LE 'crash|sync|stress')
chroot "$root" bash -c "cd /src/build && ctest -j2 --output-on-failure --timeout 900 --no-tests=error ${ctest_args[*]@Q}"
echo "== Debian $suite: the suite passed"
