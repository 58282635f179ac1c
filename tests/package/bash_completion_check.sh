#!/usr/bin/env bash
# Checks the INSTALLED bash completions (tests/package/install_test.sh runs it after installing the package):
# bash-completion's on-demand loader finds them for veilfs and veilkey, and they complete commands, options and
# option values. Each case is a command line, the last word being completed, and words the answer must hold.
set -euo pipefail
dir=/usr/share/bash-completion/completions
for f in "$dir/veilfs" "$dir/veilkey"; do
  [ -f "$f" ] || { echo "!!! $f is missing" >&2; exit 1; }
done
if [ -f /usr/share/bash-completion/bash_completion ]; then
  # shellcheck disable=SC1091
  . /usr/share/bash-completion/bash_completion
  __load_completion veilfs && __load_completion veilkey || { echo "!!! bash-completion did not load them" >&2; exit 1; }
else
  echo "!!! WARNING: bash-completion is not installed: sourcing the files directly" >&2
  . "$dir/veilfs"
  . "$dir/veilkey"
fi
[[ $(complete -p veilfs) == *'-F _veilfs veilfs' ]] || { echo "!!! veilfs: $(complete -p veilfs)" >&2; exit 1; }
[[ $(complete -p veilkey) == *'-F _veilkey veilkey' ]] || { echo "!!! veilkey: $(complete -p veilkey)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir cipherdir plaindir
touch passfile 'pass file with blanks'

# complete LINE WANT...: COMP_WORDS as bash splits LINE (at blanks, and '=' a word of its own), the last word
# completed (a LINE ending in a blank completes an empty word); every WANT must be among the answers.
failures=0
complete_line() {
  local line=$1 w func
  shift
  COMP_WORDS=()
  # "\ " (a backslashed blank) stays inside its word: hide it from the split as \x01.
  local hidden=${line//\\ /$'\x01'}
  for w in $hidden; do
    w=${w//$'\x01'/\\ }
    while [[ $w == *=* ]]; do
      [[ -n ${w%%=*} ]] && COMP_WORDS+=("${w%%=*}")
      COMP_WORDS+=("=")
      w=${w#*=}
    done
    [[ -n $w ]] && COMP_WORDS+=("$w")
  done
  [[ $line == *' ' ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE=$line
  COMP_POINT=${#line}
  COMPREPLY=()
  func=$(complete -p "${COMP_WORDS[0]}" | sed 's/.*-F \([^ ]*\) .*/\1/')
  "$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null || true
  for w in "$@"; do
    if [[ " ${COMPREPLY[*]} " != *" $w "* ]]; then
      echo "!!! '$line' -> '${COMPREPLY[*]}': no '$w'" >&2
      failures=$((failures + 1))
      return
    fi
  done
  echo "   '$line' -> ${COMPREPLY[*]}"
}
complete_line 'veilfs ' fsck xray cipherdir
complete_line 'veilfs --re' --recovery-code --recovery-code-file
complete_line 'veilfs --' --config --idle --logfile --syslog --no-syslog
complete_line 'veilfs --config pass' passfile
complete_line 'veilfs -o idle=1m,con' 1m,config=
complete_line 'veilfs xray --' --to-cipher --config --passfile
complete_line 'veilfs xray cipherdir pass' passfile
complete_line 'veilfs --rev' --reverse
complete_line 'veilfs --reverse --exclude-from pass' passfile
complete_line 'veilfs --reverse --excl' --exclude --exclude-from
complete_line 'veilfs --' --foreground --debug --ro --allow-other --nonempty --passfile --extpass --keyfile --options --help --version
complete_line 'veilfs -o ro,non' ro,nonempty
complete_line 'veilfs --passfile pass' passfile
complete_line 'veilfs --passfile=pass' passfile
complete_line 'veilfs --keyfile pass\ f' 'pass file with blanks'
complete_line 'veilfs -o ro,pa' ro,passfile=
complete_line 'veilfs -o passfile=pa' passfile
complete_line 'veilfs cipherdir pl' plaindir
complete_line 'veilfs fsck --' --passfile --extpass --keyfile --repair --quiet --help
complete_line 'veilkey ' init passwd slot info export-key recover help
complete_line 'veilkey --v' --version
complete_line 'veilkey slot ' list add remove
complete_line 'veilkey init cipherdir --' --passfile --cipher --block-size --no-recovery-code --kdf-memory --kdf-ops
complete_line 'veilkey init cipherdir --cipher ' aes256gcm xchacha20poly1305
complete_line 'veilkey init cipherdir --cipher=x' xchacha20poly1305
complete_line 'veilkey passwd cipherdir --new-' --new-passfile --new-extpass --new-keyfile --new-random-keyfile
complete_line 'veilkey init cipherdir --r' --random-keyfile
complete_line 'veilkey init cipherdir --kdf-memory ' 64M 256M 1G
complete_line 'veilkey slot remove cipherdir --' --slot --passfile
complete_line 'veilkey recover cipherdir --' --recovery-code-file --new-passfile
complete_line 'veilkey info ' cipherdir
complete_line 'veilkey info cipherdir --' --json
complete_line 'veilkey passwd cipherdir --co' --config
complete_line 'veilkey init cipherdir --config pass' passfile
complete_line 'veilkey init cipherdir --rev' --reverse
((failures == 0)) || { echo "!!! $failures bash completion case(s) failed" >&2; exit 1; }
