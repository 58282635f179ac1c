#!/usr/bin/env bash
# One command: install dependencies, build, and run every test, in a Release build and again under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -e /dev/fuse ]; then
  echo "!!! WARNING: /dev/fuse is missing: the tests that mount a volume will be SKIPPED !!!" >&2
fi
echo "== clang-format check"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
for kind in release asan; do
  echo "== $kind build"
  bash scripts/build.sh "$kind"
  echo "== $kind tests"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd "build-$kind" && ctest --output-on-failure -j2 --timeout 900)
done
echo "== fuzzing (libFuzzer, clang, ASan+UBSan): every parser of untrusted bytes, ${FUZZ_SECONDS:-15} s each"
bash tests/fuzz/run.sh "${FUZZ_SECONDS:-15}"
echo "== all tests passed (release, asan, fuzzing)"
