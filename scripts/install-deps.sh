#!/usr/bin/env bash
# Installs everything veilfs needs to build, test and benchmark, from Debian's packages only.
set -euo pipefail
PKGS=(g++ cmake make pkg-config libfuse3-dev fuse3 libsodium-dev libboost-program-options-dev
      googletest libgtest-dev nlohmann-json3-dev clang-format
      # programs the integration tests drive on a mounted volume
      sqlite3 rsync git tar attr python3 e2fsprogs
      # the sync suite (tests/sync): real sync tools and a cipher dir on sshfs over a local sshd
      syncthing unison sshfs openssh-server
      # libFuzzer targets (tests/fuzz/run.sh): clang 14 and its runtime, which holds libFuzzer
      clang libclang-rt-14-dev
      # builds: ninja (scripts/build.sh and tests/fuzz/run.sh fall back to make without it)
      ninja-build
      # the Debian package and its test (tests/package/install_test.sh): dpkg-shlibdeps, lintian, the man page
      # checks (man, lexgrog, mandoc -T lint), the completions' shells, systemd-analyze for the user unit
      dpkg-dev lintian man-db mandoc bash-completion zsh systemd
      # the Debian 13 phase (scripts/chroot-test.sh): an environment made from Debian's packages
      mmdebstrap)
missing=()
for p in "${PKGS[@]}" ${EXTRA_PKGS:-}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
