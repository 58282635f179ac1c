# bash completion for veilkey(1): veilkey COMMAND CIPHERDIR [options].
# Installed as share/bash-completion/completions/veilkey; needs nothing from the bash-completion package.

# _veilkey_words: COMP_WORDS with "--option" "=" "VALUE" (bash splits at '=') joined again, into _vw; the index
# of the word being completed in it, into _vc.
_veilkey_words() {
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

# _veilkey_paths -f|-d WORD: files or directories completing WORD as typed (a leading quote and backslashed
# blanks taken out, as bash's filename quoting puts them in).
_veilkey_paths() {
  local w=${2#[\"\']}
  w=${w//\\ / }
  mapfile -t COMPREPLY < <(compgen "$1" -- "$w")
  compopt -o filenames 2>/dev/null
}

_veilkey() {
  local _vw _vc i
  _veilkey_words
  local cur=${COMP_WORDS[COMP_CWORD]} word=${_vw[_vc]} prev=''
  [[ $cur == = ]] && cur=''
  ((_vc > 0)) && prev=${_vw[_vc - 1]}
  local valued='--passfile --extpass --keyfile --new-passfile --new-extpass --new-keyfile --new-random-keyfile
    --random-keyfile --cipher --block-size --kdf-memory --kdf-ops --slot --recovery-code-file --config'

  # The command, slot's subcommand, and the first directory given (for --slot's ids).
  local cmd='' sub='' dir='' w
  for ((i = 1; i < _vc; i++)); do
    w=${_vw[i]}
    case $w in
      -*=*) continue ;;
      -*)
        [[ " ${valued//$'\n'/ } " == *" $w "* ]] && ((i++))
        continue
        ;;
    esac
    if [[ -z $cmd ]]; then
      cmd=$w
    elif [[ $cmd == slot && -z $sub ]]; then
      sub=$w
    elif [[ -z $dir ]]; then
      dir=$w
    fi
  done

  local opt=''
  if [[ $word == --*=* ]]; then
    opt=${word%%=*}
  elif [[ $prev == -* ]]; then
    opt=$prev
  fi
  case $opt in
    --passfile | --keyfile | --new-passfile | --new-keyfile | --new-random-keyfile | --random-keyfile | \
      --recovery-code-file | --config)
      _veilkey_paths -f "$cur"
      return
      ;;
    --extpass | --new-extpass)
      mapfile -t COMPREPLY < <(compgen -c -- "$cur")
      return
      ;;
    --cipher)
      mapfile -t COMPREPLY < <(compgen -W 'aes256gcm xchacha20poly1305' -- "$cur")
      return
      ;;
    --block-size)
      mapfile -t COMPREPLY < <(compgen -W '4096 8192 16384 32768 65536 131072 262144 524288 1048576' -- "$cur")
      return
      ;;
    --kdf-memory)
      mapfile -t COMPREPLY < <(compgen -W '64M 256M 1G' -- "$cur")
      return
      ;;
    --kdf-ops)
      mapfile -t COMPREPLY < <(compgen -W '1 2 3 4 8' -- "$cur")
      return
      ;;
    --slot)
      # The ids that `veilkey slot list CIPHERDIR` prints ("slot N: ..."), once a cipher dir was given.
      local ids=''
      if [[ -n $dir && -d $dir ]]; then
        ids=$(veilkey slot list "$dir" 2>/dev/null | sed -n 's/^slot \([0-9]*\):.*/\1/p')
      fi
      mapfile -t COMPREPLY < <(compgen -W "$ids" -- "$cur")
      return
      ;;
  esac

  if [[ -z $cmd ]]; then
    mapfile -t COMPREPLY < <(compgen -W 'init passwd slot info export-key recover help -h --help -V --version' \
      -- "$cur")
    return
  fi
  if [[ $cmd == slot && -z $sub ]]; then
    mapfile -t COMPREPLY < <(compgen -W 'list add remove --help' -- "$cur")
    return
  fi

  if [[ $cur == -* ]]; then
    local secret='--passfile --extpass --keyfile' new='--new-passfile --new-extpass --new-keyfile --new-random-keyfile'
    local kdf='--kdf-memory --kdf-ops' opts=''
    case $cmd${sub:+ $sub} in
      init) opts="$secret --random-keyfile --cipher --block-size --no-recovery-code --reverse $kdf" ;;
      passwd | 'slot add') opts="$secret $new $kdf" ;;
      'slot remove') opts="--slot $secret" ;;
      info) opts='--json' ;;
      export-key) opts=$secret ;;
      recover) opts="--recovery-code-file $new $kdf" ;;
    esac
    [[ -n $cmd && $cmd != help ]] && opts+=' --config'  # every command: a config kept outside the cipher dir
    mapfile -t COMPREPLY < <(compgen -W "$opts -h --help" -- "$cur")
    return
  fi
  [[ $cmd == help || -n $dir ]] && return
  _veilkey_paths -d "$cur"
}
complete -F _veilkey veilkey
