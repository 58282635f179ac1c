#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and runs each for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     default: 20 s for every target
#   FUZZ_JOBS=N   targets run N at a time (default 2: one per core)
#   FUZZ_MERGE=1  afterwards, merge new interesting inputs into the checked-in corpus (tests/fuzz/corpus/<target>/)
#
# New inputs go to build-fuzz/work/<target>/, never into the checked-in corpus unless FUZZ_MERGE=1, so a CI run
# leaves the tree clean. A crash leaves its reproducer in build-fuzz/artifacts/ and fails the script; replay it
# with build-fuzz/tests/fuzz/fuzz_<target> <file> (or add it to the corpus: the gcc build's ctest replays it).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
shift || true
ALL=(config file_header block_decode name_decrypt link_decrypt xattr base64url sidecar fsck_tree)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")
JOBS=${FUZZ_JOBS:-2}
B=build-fuzz

command -v clang++ >/dev/null || { echo "clang++ is missing (scripts/install-deps.sh installs clang)" >&2; exit 1; }
# -O1 -gline-tables-only: OSS-Fuzz's flags; enough for symbolized crash stacks, half the compile time of -O2 -g.
# Ninja when it is installed (as scripts/build.sh); a tree made with the other generator is started afresh.
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ -f "$B/CMakeCache.txt" ]; then
  want=$([ ${#gen[@]} -gt 0 ] && echo Ninja || echo "Unix Makefiles")
  grep -q "^CMAKE_GENERATOR:INTERNAL=$want\$" "$B/CMakeCache.txt" || rm -rf "$B"
fi
cmake "${gen[@]}" -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DVEILFS_FUZZ=ON -DVEILFS_BUILD_TESTS=ON \
  -DVEILFS_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$B" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${TARGETS[@]}") >/dev/null

mkdir -p "$B/artifacts"
# Scratch volumes of the targets that run fsck over a tree: tmpfs when there is one, removed at the end.
SCRATCH=$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )/veilfs-fuzz-run-$$
export VEILFS_FUZZ_SCRATCH=$SCRATCH
trap 'rm -rf "$SCRATCH"' EXIT
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_one() {
  local t=$1 log="$B/work/$1.log"
  mkdir -p "$B/work/$t" tests/fuzz/corpus/"$t"
  rm -f "$B/artifacts/$t-"*
  # -max_len: the largest input each parser can meaningfully see (a config is at most 64 KiB).
  local maxlen=4096
  case $t in config | block_decode | fsck_tree) maxlen=65536 ;; esac
  if "$B/tests/fuzz/fuzz_$t" "$B/work/$t" "tests/fuzz/corpus/$t" -max_total_time="$SECS" -timeout=10 \
    -rss_limit_mb=2048 -max_len="$maxlen" -artifact_prefix="$B/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz $t: ok ($(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$') runs in ${SECS}s)"
  else
    echo "fuzz $t: FAILED; reproducer(s): $(ls "$B/artifacts/$t-"* 2>/dev/null | tr '\n' ' ')" >&2
    grep -E 'ERROR|SUMMARY|#0|#1|#2|#3' "$log" | head -20 >&2
    return 1
  fi
}
fail=0
pids=()
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  pids+=($!)
  if ((${#pids[@]} >= JOBS)); then
    wait "${pids[0]}" || fail=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done

if [ "${FUZZ_MERGE:-0}" = 1 ]; then
  for t in "${TARGETS[@]}"; do
    "$B/tests/fuzz/fuzz_$t" -merge=1 -timeout=10 "tests/fuzz/corpus/$t" "$B/work/$t" >"$B/work/$t.merge.log" 2>&1 ||
      echo "merge of $t failed (see $B/work/$t.merge.log)" >&2
  done
  echo "merged new inputs into tests/fuzz/corpus/"
fi
exit $fail
