#!/usr/bin/env bash
# One command for the side-by-side benchmark (see bench/README.md):
#   bench/run.sh [--quick] [--build-dir DIR] [any option of bench/run.py]
# Installs what it needs, builds veilfs and the bench tools, runs bench/run.py, and leaves
# bench/results/<timestamp>/{results.md,results.csv,chart.png,engine.txt,log.txt}.
set -uo pipefail
cd "$(dirname "$0")/.."

loud() { echo "!!! $*" >&2; }
if [ "$(id -u)" != 0 ]; then
  echo "bench/run.sh must run as root (it mounts, drops the page cache and installs packages)" >&2
  exit 1
fi

build_dir=build-release
args=()
while (($#)); do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

# 1. Packages: the build's own, then the workload tools, then each peer on its own so that one that fails to
#    install is skipped (loudly, and again in results.md) instead of stopping the run.
bash scripts/install-deps.sh || { loud "scripts/install-deps.sh failed"; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
updated=0
install_pkg() {
  installed "$1" && return 0
  if ((updated == 0)); then apt-get update -qq || loud "apt-get update failed"; updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
for p in fio sqlite3 gnuplot-nox fuse3 tar findutils; do
  install_pkg "$p" || loud "could not install $p: the workloads that need it will fail"
done
for p in gocryptfs securefs cryfs encfs; do
  install_pkg "$p" || loud "could not install $p: $p will be SKIPPED"
done

# 2. Build. A target that fails to build is skipped by run.py rather than benchmarked from a stale binary.
targets=(veilfs veilkey veilfs_bench_passthrough veilfs_engine_bench veilfs_bench_fsx)
broken=()
if [ "$build_dir" = build-release ]; then
  bash scripts/build.sh release || loud "scripts/build.sh release failed; building the benchmark's targets one by one"
else
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null || { loud "cmake failed"; exit 1; }
fi
for t in "${targets[@]}"; do
  if ! cmake --build "$build_dir" -j"$(nproc)" --target "$t" >/dev/null 2>"$build_dir/bench-build-$t.log"; then
    loud "target $t did not build (see $build_dir/bench-build-$t.log)"
    broken+=("$t")
  fi
done

# 3. Run.
broken_csv=$(IFS=,; echo "${broken[*]:-}")
exec python3 bench/run.py --build-dir "$build_dir" --broken "$broken_csv" "${args[@]}"
