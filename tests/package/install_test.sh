#!/usr/bin/env bash
# Usage: tests/package/install_test.sh [BUILD_DIR]   (default build-release; scripts/test.sh's "package" phase)
#
# Builds the Debian package from BUILD_DIR with CPack, checks it (contents, Depends, lintian), installs it with
# apt-get, and runs the mount bar against the INSTALLED files only: veilkey init, a mount through an fstab line
# with `mount -a` (mount.fuse3 -> /usr/bin/veilfs, passphrase from a passfile), a write, the unmount, veilfs
# fsck, a remount that reads it back; then the installed man pages (man, lexgrog, mandoc -T lint), the bash and
# zsh completions, and the systemd user unit (systemd-analyze verify, and its ExecStart run as systemd would run
# it, stopped with SIGTERM as systemd stops it). Finally it purges the package: the machine is left as found.
# /etc/fstab is never touched: `mount -a -T FILE` reads a temporary fstab instead.
# Every step prints "-- STEP"; the first one that fails stops the run with "!!! FAILED: STEP".
set -euo pipefail
script=$(realpath "$0")
cd "$(dirname "$script")/../.."
repo=$PWD
build=$(realpath "${1:-build-release}")

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || {
    echo "!!! FAILED: installing a package and mounting from an fstab need root (and there is no sudo)" >&2
    exit 1
  }
  exec sudo -E bash "$script" "$build"
fi

current=''
step() {
  current=$*
  echo "-- $current"
}
fail() {
  echo "!!! FAILED: $current: $*" >&2
  exit 1
}
trap 'rc=$?; ((rc)) && echo "!!! FAILED: ${current:-setup} (exit $rc)" >&2' ERR

tmp=''
installed=0
daemons=()
cleanup() {
  local rc=$? m p
  set +e
  for m in "$tmp/plain" "$tmp/unit"; do
    if [ -n "$tmp" ] && mountpoint -q "$m" 2>/dev/null; then
      fusermount3 -u "$m" 2>/dev/null || umount -l "$m"
    fi
  done
  for p in "${daemons[@]}"; do
    kill -0 "$p" 2>/dev/null && kill "$p"
  done
  if ((installed)); then
    echo "-- cleanup: purging the package"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq veilfs >/dev/null || dpkg --purge veilfs
  fi
  # Never remove a directory that is still a mount: rm would delete through it.
  if [ -n "$tmp" ] && ! mountpoint -q "$tmp/plain" 2>/dev/null && ! mountpoint -q "$tmp/unit" 2>/dev/null; then
    rm -rf "$tmp"
  fi
  exit $rc
}
trap cleanup EXIT

# The pid of the veilfs daemon serving MOUNTPOINT, found by executable (so it is /usr/bin/veilfs) and argument.
daemon_of() {
  local p args
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = /usr/bin/veilfs ] || continue
    args=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ " $args " == *" $1 "* ]] && echo "${p#/proc/}"
  done
  return 0
}

T0=$SECONDS
step "preconditions"
[ -f "$build/CMakeCache.txt" ] || fail "$build is not a configured build tree (run scripts/build.sh release)"
if dpkg-query -W -f='${Status}' veilfs 2>/dev/null | grep -q "installed"; then
  fail "a veilfs package is already installed; this test installs and purges its own, so remove that one first"
fi
for f in /usr/bin/veilfs /usr/bin/veilkey /usr/local/bin/veilfs /usr/local/bin/veilkey; do
  # mount.fuse3 runs `veilfs` from the standard PATH, where /usr/local/bin comes first.
  [ ! -e "$f" ] || fail "$f exists outside any package: the test could not tell which veilfs it runs"
done
tmp=$(mktemp -d /tmp/veilfs-package-test.XXXXXX)
chmod 755 "$tmp"

step "build the package (cpack -G DEB from $build)"
cmake --build "$build" --target veilfs veilkey veilfs_man >/dev/null
(cd "$build" && cpack -G DEB -B "$tmp/cpack" >"$tmp/cpack.log") || {
  cat "$tmp/cpack.log" >&2
  fail "cpack"
}
debs=("$tmp"/cpack/veilfs_*.deb)
[ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] || fail "expected one veilfs_*.deb, found: ${debs[*]}"
deb=${debs[0]}
echo "   $(basename "$deb"), $(stat -c %s "$deb") bytes"

step "package metadata: Depends (from dpkg-shlibdeps, plus fuse3), Maintainer"
depends=$(dpkg-deb -f "$deb" Depends)
echo "   Depends: $depends"
for want in fuse3 libfuse3-3 libsodium23 libboost-program-options1.74.0 libc6 libstdc++6; do
  [[ ", $depends," == *", $want "* || ", $depends," == *", $want,"* ]] || fail "Depends lacks $want"
done
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || fail "no Maintainer"

step "package contents"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | sort >"$tmp/contents"
for f in /usr/bin/veilfs /usr/bin/veilkey /usr/share/man/man1/veilfs.1.gz /usr/share/man/man1/veilkey.1.gz \
  /usr/share/bash-completion/completions/veilfs /usr/share/bash-completion/completions/veilkey \
  /usr/share/zsh/vendor-completions/_veilfs /usr/share/zsh/vendor-completions/_veilkey \
  /usr/lib/systemd/user/veilfs@.service /usr/share/doc/veilfs/copyright /usr/share/doc/veilfs/changelog.Debian.gz; do
  grep -qx "$f" "$tmp/contents" || fail "$f is not in the package"
done
if grep -v -e '^/usr/' -e '^/$' "$tmp/contents"; then fail "files outside /usr (above)"; fi
if grep -e "$repo" -e "$build" "$tmp/contents"; then fail "build-tree paths in the package (above)"; fi

if command -v lintian >/dev/null; then
  step "lintian (no errors or warnings)"
  # lintian objects to running as root; as nobody it needs a readable copy of the package.
  install -m 644 "$deb" "$tmp/lint.deb"
  if id nobody >/dev/null 2>&1 && command -v runuser >/dev/null; then
    runuser -u nobody -- lintian --fail-on error,warning "$tmp/lint.deb" || fail "lintian (above)"
  else
    lintian --fail-on error,warning "$tmp/lint.deb" || fail "lintian (above)"
  fi
else
  echo "!!! WARNING: lintian is not installed: the package's lint check is SKIPPED !!!" >&2
fi

step "install: apt-get install $(basename "$deb")"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >"$tmp/apt.log" 2>&1 || {
  cat "$tmp/apt.log" >&2
  fail "apt-get install"
}
dpkg-query -W -f='${Status} ${Version}\n' veilfs | grep -q "install ok installed" || fail "dpkg does not list veilfs"

# From here on only the installed files are used: a PATH without the build tree, and no file of the repo.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
step "the installed binaries are the package's"
[ "$(command -v veilfs)" = /usr/bin/veilfs ] || fail "veilfs resolves to '$(command -v veilfs)'"
[ "$(command -v veilkey)" = /usr/bin/veilkey ] || fail "veilkey resolves to '$(command -v veilkey)'"
dpkg -S /usr/bin/veilfs | grep -q '^veilfs:' || fail "/usr/bin/veilfs does not belong to the package"
version=$(veilfs --version | awk 'NR == 1 {print $2}')  # the first line; the others name the libraries
[[ $(dpkg-query -W -f='${Version}' veilfs) == "$version"-* ]] || fail "veilfs --version says $version"
veilkey --help >/dev/null || fail "veilkey --help"
cd "$tmp" # nothing of the repo is reachable by a relative path either

if [ -e /dev/fuse ]; then
  step "veilkey init (cheap KDF for the test)"
  mkdir cipher plain
  printf 'correct horse battery staple\n' >pass
  chmod 600 pass
  veilkey init "$tmp/cipher" --passfile "$tmp/pass" --kdf-memory 8192 --kdf-ops 1 --no-recovery-code
  [ -f cipher/veilfs.conf ] && [ -f cipher/veilfs.diriv ] || fail "no veilfs.conf / veilfs.diriv"

  step "mount -a with a temporary fstab (type fuse.veilfs, passfile=)"
  printf '%s %s fuse.veilfs passfile=%s,noatime 0 0\n' "$tmp/cipher" "$tmp/plain" "$tmp/pass" >fstab
  cat fstab
  mount -a -T "$tmp/fstab" || fail "mount -a -T fstab (exit $?)"
  mountpoint -q plain || fail "nothing mounted on $tmp/plain"
  [ "$(findmnt -n -o FSTYPE --mountpoint "$tmp/plain")" = fuse.veilfs ] || fail "wrong type: $(findmnt "$tmp/plain")"
  pid=$(daemon_of "$tmp/plain")
  [[ $pid =~ ^[0-9]+$ ]] || fail "no single /usr/bin/veilfs daemon for $tmp/plain: $(ps -eo pid,args | grep "[v]eilfs")"
  daemons+=("$pid")
  echo "   daemon $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"

  step "write through the mount"
  secret_text="the plain text that must not reach the cipher dir"
  echo "$secret_text" >plain/hello.txt
  mkdir plain/dir
  head -c 3000000 /dev/urandom >plain/dir/blob
  ln -s hello.txt plain/link
  sum=$(sha256sum <plain/dir/blob)
  [ "$(cat plain/hello.txt)" = "$secret_text" ] || fail "read back hello.txt"
  if grep -rq "hello" cipher; then fail "a plain name or text is visible in the cipher dir"; fi
  if grep -rqF "$secret_text" cipher; then fail "plain text in the cipher dir"; fi
  # veilfs.conf, veilfs.params, veilfs.diriv and the three entries.
  [ "$(find cipher -mindepth 1 -maxdepth 1 | wc -l)" = 6 ] || fail "cipher dir: $(ls -a cipher)"

  step "unmount (fusermount3 -u); the daemon exits"
  fusermount3 -u "$tmp/plain"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$pid" 2>/dev/null || fail "daemon $pid still running 10 s after the unmount"
  ! mountpoint -q plain || fail "still mounted"

  step "veilfs fsck (clean: exit 0)"
  veilfs fsck "$tmp/cipher" --passfile "$tmp/pass" || fail "fsck exit $?"

  step "remount from the fstab by mountpoint, read back, umount"
  mount -T "$tmp/fstab" "$tmp/plain" || fail "mount -T fstab MOUNTPOINT (exit $?)"
  [ "$(cat plain/hello.txt)" = "$secret_text" ] || fail "hello.txt after the remount"
  [ "$(sha256sum <plain/dir/blob)" = "$sum" ] || fail "blob differs after the remount"
  [ "$(readlink plain/link)" = hello.txt ] || fail "symlink after the remount"

  step "mount -o remount,ro and back to rw (mount(8) -> mount.fuse3 -> veilfs -o remount)"
  mount -o remount,ro "$tmp/plain" || fail "mount -o remount,ro (exit $?)"
  [[ $(findmnt -n -o OPTIONS --mountpoint "$tmp/plain") == ro,* ]] || fail "not read-only: $(findmnt "$tmp/plain")"
  if (echo x >plain/ro-test) 2>/dev/null; then fail "a write succeeded on the read-only mount"; fi
  [ "$(cat plain/hello.txt)" = "$secret_text" ] || fail "read on the read-only mount"
  mount -o remount,rw "$tmp/plain" || fail "mount -o remount,rw (exit $?)"
  echo x >plain/rw-test || fail "write after remount,rw"
  rm plain/rw-test
  umount "$tmp/plain"
  for _ in $(seq 100); do mountpoint -q plain || break; sleep 0.1; done
  ! mountpoint -q plain || fail "still mounted after umount"

  step "a wrong passphrase through mount(8) fails, and mounts nothing"
  printf 'wrong\n' >wrongpass
  printf '%s %s fuse.veilfs passfile=%s 0 0\n' "$tmp/cipher" "$tmp/plain" "$tmp/wrongpass" >fstab.wrong
  if mount -a -T "$tmp/fstab.wrong" 2>"$tmp/wrong.err"; then fail "mounted with a wrong passphrase"; fi
  cat wrong.err
  ! mountpoint -q plain || fail "mounted with a wrong passphrase"
else
  echo "!!! WARNING: /dev/fuse is missing: the mount bar (fstab mount, write, unmount, fsck) is SKIPPED !!!" >&2
fi

step "man pages: man -l and man by name render without warnings, lexgrog, mandoc -T lint"
for page in veilfs veilkey; do
  f=/usr/share/man/man1/$page.1.gz
  [ -f "$f" ] || fail "$f missing"
  MANWIDTH=80 man --warnings -l "$f" 2>"$tmp/man.err" >"$tmp/man.out"
  [ ! -s "$tmp/man.err" ] || fail "man -l $f: $(cat "$tmp/man.err")"
  grep -q "EXIT STATUS" "$tmp/man.out" && grep -q "EXAMPLES" "$tmp/man.out" && grep -q "FILES" "$tmp/man.out" ||
    fail "$page(1) lacks EXIT STATUS, FILES or EXAMPLES"
  MANWIDTH=80 man --warnings 1 "$page" 2>"$tmp/man.err" >/dev/null || fail "man 1 $page (not in the man path?)"
  [ ! -s "$tmp/man.err" ] || fail "man 1 $page: $(cat "$tmp/man.err")"
  lexgrog "$f" || fail "lexgrog $f"
  if command -v mandoc >/dev/null; then
    # Without a mandoc.db (man-db systems have none) mandoc notes each cross-reference it found only as a file:
    # "outdated mandoc.db lacks X entry". Everything else it says, down to style, is a finding.
    mandoc -T lint -W style "$f" 2>&1 | grep -v 'outdated mandoc.db lacks' >"$tmp/lint" || true
    [ ! -s "$tmp/lint" ] || fail "mandoc -T lint $f: $(cat "$tmp/lint")"
  else
    echo "!!! WARNING: mandoc is not installed: mandoc -T lint is SKIPPED !!!" >&2
  fi
done
grep -q "26" <(MANWIDTH=80 man 1 veilfs) || fail "veilfs(1) does not list exit code 26"

step "bash completion: loaded on demand by bash-completion, and completes commands and options"
bash "$repo/tests/package/bash_completion_check.sh" || fail "bash completion (above)"

if command -v zsh >/dev/null; then
  step "zsh completion: in the default fpath, and completes commands and options"
  timeout 120 zsh -f "$repo/tests/package/zsh_completion_check.zsh" || fail "zsh completion (exit $?, above)"
  [ -c /dev/null ] || fail "/dev/null is no longer a character device after the zsh check"
else
  echo "!!! WARNING: zsh is not installed: the zsh completion check is SKIPPED !!!" >&2
fi

unit=/usr/lib/systemd/user/veilfs@.service
step "systemd user unit: systemd-analyze --user verify"
[ -f "$unit" ] || fail "$unit missing"
grep -qx 'ExecStart=/usr/bin/veilfs .*' "$unit" || fail "ExecStart does not run /usr/bin/veilfs: $(grep ExecStart "$unit")"
if command -v systemd-analyze >/dev/null; then
  mkdir "$tmp/xdg-runtime" "$tmp/units"
  chmod 700 "$tmp/xdg-runtime"
  ln -s "$unit" "$tmp/units/veilfs@test.service"
  XDG_RUNTIME_DIR=$tmp/xdg-runtime systemd-analyze --user verify "$tmp/units/veilfs@test.service" >"$tmp/verify" 2>&1 ||
    fail "$(cat "$tmp/verify")"
  [ ! -s "$tmp/verify" ] || fail "systemd-analyze verify: $(cat "$tmp/verify")"
else
  echo "!!! WARNING: systemd-analyze is missing: the unit's verification is SKIPPED !!!" >&2
fi

if [ -e /dev/fuse ]; then
  # No user manager runs here (systemd is not PID 1), so the unit's ExecStart is run as systemd would run it:
  # the variables of EnvironmentFile= set, the credential in $CREDENTIALS_DIRECTORY, "$VAR" split at blanks
  # and "${VAR}" one word; then stopped as `systemctl stop` does with KillMode=mixed: SIGTERM to the daemon.
  step "systemd user unit: its ExecStart mounts with the credential, SIGTERM unmounts"
  mkdir -p unit creds cfg
  printf 'CIPHERDIR=%s\nMOUNTPOINT=%s\nVEILFS_OPTIONS=--ro -o noatime\n' "$tmp/cipher" "$tmp/unit" >cfg/test.conf
  install -m 400 pass creds/veilfs.passphrase
  exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
  argv=()
  (
    # EnvironmentFile=: KEY=VALUE lines, the value being the rest of the line (quotes around it removed).
    while IFS= read -r line; do
      [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
      key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
      if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
      declare "$key=$value"
    done <cfg/test.conf
    # shellcheck disable=SC2034 # read below through ${!name}
    CREDENTIALS_DIRECTORY=$tmp/creds
    for word in $exec_start; do
      if [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then # $VAR: its value split at blanks
        read -ra split <<<"${!BASH_REMATCH[1]-}"
        ((${#split[@]} == 0)) || printf '%s\n' "${split[@]}"
      elif [[ $word =~ ^([^$]*)\$\{([A-Za-z_][A-Za-z0-9_]*)\}([^$]*)$ ]]; then # ${VAR}: one word
        printf '%s\n' "${BASH_REMATCH[1]}${!BASH_REMATCH[2]-}${BASH_REMATCH[3]}"
      elif [[ $word == *'$'* ]]; then
        echo "ExecStart uses $word, which this emulation does not know"
        exit 1
      else
        printf '%s\n' "$word"
      fi
    done
  ) >argv || fail "$(cat argv)"
  mapfile -t argv <argv
  echo "   ${argv[*]}"
  (cd / && env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$tmp/creds" "${argv[@]}") ||
    fail "ExecStart exited $? (Type=forking: the start would fail)"
  mountpoint -q unit || fail "nothing mounted on $tmp/unit"
  [ "$(cat unit/hello.txt)" = "$secret_text" ] || fail "hello.txt through the unit's mount"
  if touch unit/new 2>/dev/null; then fail "--ro from VEILFS_OPTIONS was not applied"; fi
  pid=$(daemon_of "$tmp/unit")
  [[ $pid =~ ^[0-9]+$ ]] || fail "no single /usr/bin/veilfs daemon for $tmp/unit: $(ps -eo pid,args | grep "[v]eilfs")"
  daemons+=("$pid")
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$pid" 2>/dev/null || fail "daemon $pid still running 10 s after SIGTERM"
  ! mountpoint -q unit || fail "still mounted after SIGTERM"
fi

step "uninstall: apt-get purge veilfs"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq veilfs >/dev/null
installed=0
! dpkg-query -W -f='${Status}' veilfs 2>/dev/null | grep -q "install ok" || fail "still installed"
for f in /usr/bin/veilfs /usr/bin/veilkey /usr/share/man/man1/veilfs.1.gz "$unit"; do
  [ ! -e "$f" ] || fail "$f left behind"
done
current=''
echo "-- package test passed in $((SECONDS - T0)) s"
