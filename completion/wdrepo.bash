# wdrepo.bash - bash completion of wdrepo: commands, each command's options,
# option values (--strategy, --dtype, --format-version), references (names
# and short ids from `wdrepo log --oneline`) where a command takes a REF, and
# file names elsewhere. Installed by `make install` as
# $(PREFIX)/share/bash-completion/completions/wdrepo; or: . completion/wdrepo.bash

_wdrepo_refs()
{
    # -R given earlier on the line names the repository to ask
    local repo=() i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -R | --repo) repo=(-R "${COMP_WORDS[i + 1]}") ;;
        --repo=*) repo=(-R "${COMP_WORDS[i]#--repo=}") ;;
        esac
    done
    # id, names (comma-separated, "-" when none), kind, parent
    wdrepo "${repo[@]}" -q log --oneline 2>/dev/null |
        while read -r id names _; do
            printf '%s\n' "$id"
            [ "$names" = - ] || printf '%s\n' ${names//,/ }
        done
}

_wdrepo()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi
    local commands="init add-base commit checkout log inspect diff show stats sql import export tag hash rm gc save-delta load-delta fsck remote push fetch pull clone help"
    local globals="-R --repo -q --quiet -j --jobs --level -h --help"

    # the command: the first word that is not an option or an option's value
    local cmd="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        -R | --repo | -j | --jobs | --level) ((i++)) ;;
        -*) ;;
        *) cmd=${words[i]}; break ;;
        esac
    done

    case $prev in
    -R | --repo) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    -j | --jobs | --level | -n | --max-count | --wait | --sparsity | --outlier-fraction | --quality | -m | --message | --name | --exclude | --only) return ;;
    --strategy)
        if [ "$cmd" = commit ]; then
            COMPREPLY=($(compgen -W "lossless sparse quantized int4 lowbit" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "sparse quantized int4" -- "$cur"))
        fi
        return ;;
    --dtype) COMPREPLY=($(compgen -W "float32 bfloat16 float16" -- "$cur")); return ;;
    --format-version) COMPREPLY=($(compgen -W "1 2" -- "$cur")); return ;;
    --on) COMPREPLY=($(compgen -W "$(_wdrepo_refs)" -- "$cur")); return ;;
    esac

    if [ -z "$cmd" ]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$globals --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    local opts="" args=files
    case $cmd in
    init) args=none ;;
    add-base) opts="--name --exclude --json --level"; args=dirs ;;
    commit) opts="--on --strategy --sparsity --outlier-fraction --quality -m --message --name --exclude --json --level"; args=dirs ;;
    checkout) opts="-f --force --dtype --only"; args=ref-then-dirs ;;
    diff) opts="--json --exit-code"; args=refs ;;
    show) args=refs ;;
    stats) opts="--json"; args=none ;;
    sql) opts="--json"; args=none ;;
    log) opts="-n --max-count --oneline --json"; args=refs ;;
    inspect) opts="--json"; args=refs-and-files ;;
    import) opts="--name --json"; args=files ;;
    export) opts="-f --force --format-version --strategy --sparsity --outlier-fraction"; args=ref-then-files ;;
    tag) opts="-d --delete -l --list --json"; args=refs ;;
    hash) opts="--json"; args=dirs ;;
    rm) opts="-r --recursive --json"; args=refs ;;
    gc) opts="-n --dry-run --json --wait"; args=none ;;
    save-delta) opts="--strategy --sparsity --outlier-fraction --format-version -f --force"; args=files ;;
    load-delta) opts="--dtype -f --force --no-verify"; args=files ;;
    fsck) opts="--full --json"; args=none ;;
    remote) opts="-v --verbose"; args=none ;;
    push) opts="-f --force --json"; args=refs ;;
    fetch | pull) opts="--json"; args=none ;;
    clone) opts="--lazy --json"; args=dirs ;;
    help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
    *) return ;;
    esac
    case $cmd in hash | save-delta | load-delta) ;; *) opts="$opts -R --repo" ;; esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts -q --quiet -j --jobs -h --help" -- "$cur"))
        return
    fi

    # how many positional arguments come before this word
    local npos=0
    for ((i = i + 1; i < cword; i++)); do
        case ${words[i]} in
        -R | --repo | -j | --jobs | --level | --on | --strategy | --sparsity | --outlier-fraction | --quality | \
            -m | --message | --name | --dtype | --format-version | -n | --max-count | --wait | --exclude | --only) ((i++)) ;;
        -*) ;;
        *) ((npos++)) ;;
        esac
    done
    case $args in
    none) ;;
    dirs) COMPREPLY=($(compgen -d -- "$cur")) ;;
    files) COMPREPLY=($(compgen -f -- "$cur")) ;;
    refs) COMPREPLY=($(compgen -W "$(_wdrepo_refs)" -- "$cur")) ;;
    refs-and-files) COMPREPLY=($(compgen -W "$(_wdrepo_refs)" -- "$cur") $(compgen -f -X '!*.wdelta' -- "$cur")) ;;
    ref-then-dirs)
        if ((npos == 0)); then COMPREPLY=($(compgen -W "$(_wdrepo_refs)" -- "$cur")); else COMPREPLY=($(compgen -d -- "$cur")); fi ;;
    ref-then-files)
        if ((npos == 0)); then COMPREPLY=($(compgen -W "$(_wdrepo_refs)" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi ;;
    esac
}
complete -F _wdrepo wdrepo
