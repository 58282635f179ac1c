# Checks the INSTALLED zsh completions (tests/package/install_test.sh runs it after installing the package, as
# `timeout 120 zsh -f THIS`): zsh's default fpath holds _veilfs and _veilkey, compinit binds them, and in an
# interactive zsh (on a pseudo-terminal, zsh/zpty) TAB completes commands, options and option values.
# Each case waits for its expected text, so a completion that never comes ends in the caller's timeout.
emulate -L zsh
setopt err_exit
work=$(mktemp -d)
trap 'zpty -d z 2>/dev/null; rm -rf $work' EXIT
# Never `-d /dev/null`: compinit replaces its dump file by a rename, and /dev/null would become a regular file.
autoload -Uz compinit
compinit -u -D -d $work/zcompdump
local -a found
for f in _veilfs _veilkey; do
  found=(${^fpath}/$f(N))
  (( $#found )) || { print -u2 "!!! $f is not in zsh's fpath ($fpath)"; exit 1 }
done
[[ $_comps[veilfs] == _veilfs && $_comps[veilkey] == _veilkey ]] ||
  { print -u2 "!!! compinit bound veilfs to '$_comps[veilfs]', veilkey to '$_comps[veilkey]'"; exit 1 }
found=(${^fpath}/_veil*(N))
print "   in the fpath: $found"

zmodload zsh/zpty
mkdir $work/cipherdir
zpty z TERM=dumb zsh -f -i
zpty -w z "PS1='%# '; autoload -Uz compinit; compinit -u -D -d $work/zcompdump; unsetopt beep; LISTMAX=0; cd $work"
zpty -w z "print -r -- SET''UP"
zpty -r z out '*SETUP*'
n=0
# expect LINE TEXT: type LINE and TAB; TEXT (not part of LINE) must appear in what zsh shows.
expect() {
  local line=$1 want=$2 out
  (( ++n ))
  print -r -- "   '$line<TAB>' -> waiting for '$want'"
  zpty -w -n z "$line"$'\t'
  zpty -r z out "*${want}*"
  zpty -w -n z $'\C-u'
  zpty -w z "print -r -- DO''NE$n"
  zpty -r z out "*DONE$n*"
}
expect 'veilkey ' export-key
expect 'veilkey slot ' remove
expect 'veilkey init cipherdir --ci' cipher=
expect 'veilkey init cipherdir --cipher=' xchacha20poly1305
expect 'veilfs -' allow-other
expect 'veilfs fsck --rep' repair
expect 'veilfs fsck --ren' rename-conflicts
expect 'veilfs -o ro,pa' passfile=
expect 'veilfs ' 'check a volume'
expect 'veilfs ' 'translate backing paths'
expect 'veilfs --recovery-code-f' recovery-code-file=
expect 'veilfs xray --to' to-cipher
expect 'veilkey passwd cipherdir --con' config=
expect 'veilfs --rev' reverse
expect 'veilkey init cipherdir --rev' reverse
print "   zsh completion: $n cases"
