# bash completion for postcopy-migrate(1); installed by make install into
# $(PREFIX)/share/bash-completion/completions/postcopy-migrate.
# The options and their choices are those of `postcopy-migrate COMMAND --help`.

_postcopy_migrate() {
    local cur prev words cword cmd i opts
    _init_completion 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }

    case $prev in
    --mode) mapfile -t COMPREPLY < <(compgen -W "precopy hybrid postcopy" -- "$cur"); return ;;
    --dirty-tracking) mapfile -t COMPREPLY < <(compgen -W "auto async-wp sync-wp soft-dirty" -- "$cur"); return ;;
    --postcopy-bulk) mapfile -t COMPREPLY < <(compgen -W "on off" -- "$cur"); return ;;
    --uffd) mapfile -t COMPREPLY < <(compgen -W "syscall device" -- "$cur"); return ;;
    -s | --socket | --qmp | --dest-socket) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --vm | --id | --name | --to | --pid | --downtime-limit | --max-rounds | \
        --max-precopy-time | --streams | --max-bandwidth | --domain | \
        --connect | --dest-connect) return ;;
    esac

    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        -s | --socket) ((i++)) ;;
        -*) ;;
        *) cmd=${words[i]}; break ;;
        esac
    done

    case ${cmd-} in
    "") opts="attach expect migrate list status set start-postcopy metrics
        cancel incoming recover --socket --version --help" ;;
    attach) opts="--pid --qmp --domain --connect --name --incoming --uffd" ;;
    expect) opts="--domain --connect --name" ;;
    migrate) opts="--vm --domain --to --connect --dest-connect --dest-socket
        --no-wait --mode --downtime-limit --max-rounds --max-precopy-time
        --postcopy-bulk --streams --max-bandwidth --dirty-tracking" ;;
    list | metrics) opts="" ;;
    status) opts="--vm --id --watch" ;;
    set) opts="--vm --id max-bandwidth= downtime-limit=" ;;
    start-postcopy | cancel | incoming | recover) opts="--vm --id" ;;
    *) return ;;
    esac
    [ -n "${cmd-}" ] && opts="$opts --socket --json --help"
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    # set's NAME=VALUE words: no space after the '='.
    [[ ${COMPREPLY[0]-} == *= ]] && type compopt &>/dev/null && compopt -o nospace
}
complete -F _postcopy_migrate postcopy-migrate
