# bash completion for veilfs(1): mounting (veilfs [options] CIPHERDIR MOUNTPOINT), veilfs fsck and veilfs xray.
# Installed as share/bash-completion/completions/veilfs; needs nothing from the bash-completion package.

# _veilfs_words: COMP_WORDS with "OPTION" "=" "VALUE" (bash splits at '=') joined again, into _vw; the index of
# the word being completed in it, into _vc.
_veilfs_words() {
  _vw=()
  _vc=0
  local i
  for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
    if ((i > 0 && ${#_vw[@]})) && [[ ${COMP_WORDS[i]} == = || ${COMP_WORDS[i - 1]} == = ]]; then
      _vw[${#_vw[@]} - 1]+=${COMP_WORDS[i]}
    else
      _vw+=("${COMP_WORDS[i]}")
    fi
    ((i == COMP_CWORD)) && _vc=$((${#_vw[@]} - 1))
  done
}

_veilfs_mount_options='passfile= extpass= keyfile= recovery_code_file= config= idle= logfile= allow_other ro debug
nonempty shared_storage badname= default_permissions noatime nodiratime nodev nosuid noexec fsname= subtype='

# _veilfs_paths -f|-d WORD: files or directories completing WORD as typed (a leading quote and backslashed
# blanks taken out, as bash's filename quoting puts them in).
_veilfs_paths() {
  local w=${2#[\"\']}
  w=${w//\\ / }
  mapfile -t COMPREPLY < <(compgen "$1" -- "$w")
  compopt -o filenames 2>/dev/null
}

_veilfs() {
  local _vw _vc i
  _veilfs_words
  # cur: what bash replaces (after a '='); word: the whole word, OPTION=VALUE included; prev: the word before.
  local cur=${COMP_WORDS[COMP_CWORD]} word=${_vw[_vc]} prev=''
  [[ $cur == = ]] && cur=''
  ((_vc > 0)) && prev=${_vw[_vc - 1]}

  # fsck=1: veilfs fsck, fsck=2: veilfs xray (the offline commands; no -o).
  local fsck=0
  for ((i = 1; i < _vc; i++)); do
    if [[ ${_vw[i]} == fsck ]]; then
      fsck=1
      break
    elif [[ ${_vw[i]} == xray ]]; then
      fsck=2
      break
    elif [[ ${_vw[i]} != -* ]]; then
      break
    fi
  done

  # The option whose value is being completed: --passfile FILE, --passfile=FILE, -o LIST.
  local opt=''
  if [[ $word == --*=* ]]; then
    opt=${word%%=*}
  elif [[ $prev == -* ]]; then
    opt=$prev
  fi
  case $opt in
    --passfile | --keyfile | --recovery-code-file | --config | --logfile | --exclude-from)
      _veilfs_paths -f "$cur"
      return
      ;;
    --idle | --badname | --exclude) return ;;
    --extpass)
      mapfile -t COMPREPLY < <(compgen -c -- "$cur")
      return
      ;;
    -o | --options)
      ((fsck)) && return
      local last=${word##*,}
      case $last in
        passfile=* | keyfile=* | recovery_code_file=* | config=* | logfile=*)
          _veilfs_paths -f "$cur"
          return
          ;;
        *=*) return ;;
      esac
      # Comma-separated: complete the option after the last comma, keep what precedes it.
      local head='' o
      [[ $cur == *,* ]] && head=${cur%,*},
      COMPREPLY=()
      for o in $_veilfs_mount_options; do
        [[ $o == "$last"* ]] && COMPREPLY+=("$head$o")
      done
      compopt -o nospace 2>/dev/null
      return
      ;;
  esac

  if [[ $cur == -* ]]; then
    if ((fsck == 1)); then
      mapfile -t COMPREPLY < <(compgen -W '--passfile --extpass --keyfile --config --repair --delete-orphans
        --rename-conflicts -q --quiet -h --help' -- "$cur")
    elif ((fsck == 2)); then
      mapfile -t COMPREPLY < <(compgen -W '--to-cipher -c --passfile --extpass --keyfile --config -h --help' -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W '-f --foreground -d --debug --ro --allow-other --shared-storage --badname
        --nonempty --passfile --extpass --keyfile --recovery-code --recovery-code-file --config --idle --logfile
        --syslog --no-syslog --reverse --exclude --exclude-from -o --options -h --help -V --version' -- "$cur")
    fi
    return
  fi

  # Positionals: the word 'fsck' or 'xray' first, then directories (CIPHERDIR, then MOUNTPOINT); xray's PATHs
  # are files in the cipher dir (or plain paths, which a shell cannot know).
  local npos=0
  for ((i = 1; i < _vc; i++)); do
    case ${_vw[i]} in
      --passfile | --keyfile | --extpass | --recovery-code-file | --config | --idle | --logfile | --badname | \
        --exclude | --exclude-from | -o | --options) ((i++)) ;;
      -*) ;;
      *) ((npos++)) ;;
    esac
  done
  if ((fsck == 2 && npos >= 2)); then
    _veilfs_paths -f "$cur"
    return
  fi
  ((npos >= 2)) && return # CIPHERDIR MOUNTPOINT, or fsck CIPHERDIR, are all there
  _veilfs_paths -d "$cur"
  if ((npos == 0)); then
    [[ fsck == "$cur"* ]] && COMPREPLY+=(fsck)
    [[ xray == "$cur"* ]] && COMPREPLY+=(xray)
  fi
}
complete -F _veilfs veilfs
