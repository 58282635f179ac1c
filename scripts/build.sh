#!/usr/bin/env bash
# Usage: scripts/build.sh [release|asan]  -> build-release/ or build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case "$kind" in
  release) cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null ;;
  asan) cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVEILFS_SANITIZE=ON >/dev/null ;;
  *) echo "usage: $0 [release|asan]" >&2; exit 2 ;;
esac
cmake --build "build-$kind" -j"$(nproc)"
