#!/usr/bin/env bash
# One command: install dependencies, build, and run every test: in a Release build, again under ASan+UBSan, the
# concurrency tests under ThreadSanitizer (the daemon included), then every fuzz target for a bounded time.
# Each phase prints "== phase: NAME N s" so that a slow CI run says where its time went.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
# phase NAME CMD...: runs CMD and prints how long it took (also when it fails, before the failure stops the run).
phase() {
  local name=$1 t=$SECONDS rc=0
  shift
  echo "== $name"
  "$@" || rc=$?
  echo "== phase: $name $((SECONDS - t)) s$( ((rc)) && echo " (FAILED, exit $rc)")"
  return $rc
}
phase "install deps" bash scripts/install-deps.sh
if [ ! -e /dev/fuse ]; then
  echo "!!! WARNING: /dev/fuse is missing: the tests that mount a volume will be SKIPPED !!!" >&2
fi
phase "clang-format check" bash -c "git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for kind in release asan; do
  phase "$kind build" bash scripts/build.sh "$kind"
  phase "$kind tests" bash -c "cd build-$kind && ctest --output-on-failure -j2 --timeout 900"
done

# ThreadSanitizer: the content engine's concurrency and round-trip unit tests (large reads and writes go through
# parallel_for's worker pool), EngineCache's concurrent churn, and the fault tests, which drive the TSan-built daemon with several processes
# writing, renaming and listing at once (and SIGKILL it mid-write). A race in a test binary aborts it
# (halt_on_error); a race in the daemon ends up in its log, which the fault tests scan ("Sanitizer") so that it
# fails the test even when the daemon is killed before its exit status could tell.
# tests/tsan.supp: false positives inside uninstrumented libraries only, each with its reason.
TSAN_TESTS='Concurrency|ContentRoundTrip|Faults\.|EngineCache'
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$PWD/tests/tsan.supp"
phase "tsan build" bash scripts/build.sh tsan
phase "tsan tests" bash -c "cd build-tsan && ctest --output-on-failure -j2 --timeout 900 --no-tests=error -R '$TSAN_TESTS'"

phase "fuzzing (libFuzzer, clang, ASan+UBSan): every parser of untrusted bytes, ${FUZZ_SECONDS:-15} s each" \
  bash tests/fuzz/run.sh "${FUZZ_SECONDS:-15}"
# The Debian package built from build-release with CPack, installed with apt-get; the mount bar (init, mount -a
# from an fstab line, write, unmount, fsck), man pages, completions and systemd unit checked on the INSTALLED
# files; then purged again.
phase "package: build .deb, install, mount bar" bash tests/package/install_test.sh build-release
# Debian 13 (libfuse 3.17, GCC 14, CMake 3.31): the same tree built and its Release suite run (all but the crash,
# sync and stress labels, which the Debian 12 phases above run) in an environment made with mmdebstrap.
if [ "$(id -u)" = 0 ]; then
  phase "debian 13: build and Release tests (libfuse 3.17, GCC 14)" bash scripts/chroot-test.sh trixie
else
  phase "debian 13: build and Release tests (libfuse 3.17, GCC 14)" sudo -E bash scripts/chroot-test.sh trixie
fi
# Every example of README.md and of the man pages, run as written (as root, in a private mount namespace; it
# installs the package as README says and purges it again).
if [ "$(id -u)" = 0 ]; then
  phase "docs: every example of README and the man pages" python3 tests/package/doc_examples.py
else
  phase "docs: every example of README and the man pages" sudo -E python3 tests/package/doc_examples.py
fi
echo "== all tests passed (release, asan, tsan, fuzzing, package, debian 13, docs) in $((SECONDS - T0)) s"
