#!/usr/bin/env bash
# Usage: scripts/build.sh [release|asan|tsan]  -> build-release/, build-asan/ or build-tsan/
#   release  everything, -O3 (what users get, plus bench/ so that it keeps compiling)
#   asan     ASan+UBSan, -O1 -g1, everything but bench/
#   tsan     ThreadSanitizer, -O1 -g, only what the TSan run needs: the daemon, the fault tests (they drive the
#            daemon), the unit tests (the content engine's own concurrency tests) and the fuse tests (EngineCache)
# -O1 is what the sanitizers' authors recommend, and -g1 (line tables, no variables) is all a sanitizer report needs
# for file:line stacks: together they halve the ASan build's compile time against -O2 -g.
# Ninja when it is installed (less overhead per step than make on 2 cores), make otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
dir="build-$kind"
# A tree configured earlier with the other generator cannot be reused: start that one afresh.
if [ -f "$dir/CMakeCache.txt" ]; then
  want=$([ ${#gen[@]} -gt 0 ] && echo Ninja || echo "Unix Makefiles")
  grep -q "^CMAKE_GENERATOR:INTERNAL=$want\$" "$dir/CMakeCache.txt" || rm -rf "$dir"
fi
targets=()
case "$kind" in
  release) cmake "${gen[@]}" -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null ;;
  asan)
    cmake "${gen[@]}" -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
      -DVEILFS_SANITIZE=ON -DVEILFS_BUILD_BENCH=OFF >/dev/null
    ;;
  tsan)
    cmake "${gen[@]}" -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG" \
      -DVEILFS_TSAN=ON -DVEILFS_BUILD_BENCH=OFF >/dev/null
    targets=(--target veilfs veilfs_fault_tests veilfs_unit_tests veilfs_fuse_tests)
    ;;
  *)
    echo "usage: $0 [release|asan|tsan]" >&2
    exit 2
    ;;
esac
cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
