#!/usr/bin/env bash
# One command: install dependencies, build, create a demo volume, mount it and show it working.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
BIN=$PWD/build-release
DEMO=${DEMO_DIR:-/tmp/veilfs-demo}
fusermount3 -u "$DEMO/plain" 2>/dev/null || true
rm -rf "$DEMO" && mkdir -p "$DEMO/cipher" "$DEMO/plain"
echo "demo passphrase" > "$DEMO/passfile"
echo "== veilkey init (fast KDF settings for the demo)"
"$BIN/keytool/veilkey" init "$DEMO/cipher" --passfile "$DEMO/passfile" --no-recovery-code --kdf-memory 65536 --kdf-ops 2
echo "== mount"
"$BIN/veilfs" --passfile "$DEMO/passfile" "$DEMO/cipher" "$DEMO/plain"
trap 'fusermount3 -u "$DEMO/plain" 2>/dev/null || true' EXIT
mkdir -p "$DEMO/plain/Documents/secret plans"
echo "The treasure is under the old oak tree." > "$DEMO/plain/Documents/secret plans/treasure.txt"
head -c 5000000 /dev/urandom > "$DEMO/plain/Documents/photo.bin"
ln -s "secret plans/treasure.txt" "$DEMO/plain/Documents/link"
echo "== plain view"
ls -laR "$DEMO/plain"
cat "$DEMO/plain/Documents/link"
echo "== cipher dir (what is on disk)"
ls -laR "$DEMO/cipher"
echo "== searching the cipher dir for the plaintext: (no output below means nothing leaked)"
grep -rl "treasure" "$DEMO/cipher" || true
sum1=$(sha256sum < "$DEMO/plain/Documents/photo.bin")
fusermount3 -u "$DEMO/plain"
echo "== remount and verify"
"$BIN/veilfs" --passfile "$DEMO/passfile" "$DEMO/cipher" "$DEMO/plain"
sum2=$(sha256sum < "$DEMO/plain/Documents/photo.bin")
[ "$sum1" = "$sum2" ] && echo "photo.bin reads back identically after remount"
cat "$DEMO/plain/Documents/secret plans/treasure.txt"
fusermount3 -u "$DEMO/plain"
trap - EXIT
echo "== demo done; the volume stays in $DEMO"
