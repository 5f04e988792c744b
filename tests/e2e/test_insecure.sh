#!/bin/bash
# test_insecure.sh - a daemon that listens on a network address refuses to
# start without peer authentication (no psk-file, no tls = x509) unless
# told --insecure (or `insecure = true`); when told, it says so loudly: a
# warning in its log, "insecure": true in query-migrate, a WARNING row in
# `postcopy-migrate status`.  Loopback listeners and keyed daemons start
# as before.  Real daemons in a network namespace made here.  Prints TAP.
#
#   tests/e2e/test_insecure.sh --build build
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

pcd_test_args "$@"

TESTS=(
    "network address, no key: refused at start, the log names --insecure"
    "wildcard address 0.0.0.0, no key: refused at start"
    "network address, no key, --insecure: starts, warns, query-migrate and status say insecure"
    "network address, insecure = true in the config file: starts"
    "network address with a psk-file: starts, not insecure"
    "loopback address, no key: starts, not insecure"
)

pcd_init "$build"
echo "1..${#TESTS[@]}"
pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
NS=$PCD_NS_DST
IP=$PCD_IP_DST

# start_refused TITLE ADDR: postcopyd without a key exits 1 by itself.
start_refused() {
    local title=$1 addr=$2 dir=$PCD_TMP/refused-$n rc why=()
    mkdir -p "$dir"
    ip netns exec "$NS" timeout -k 2 10 "$PCD_BUILD/postcopyd" \
        --config /dev/null --listen "$addr" \
        --control-socket "$dir/control.sock" \
        --attach-socket "$dir/attach.sock" --state-dir "$dir/state" \
        </dev/null >"$dir/log" 2>&1
    rc=$?
    ((rc == 1)) || why+=("exit status $rc, expected 1 (could not start)")
    grep -q -- '--insecure' "$dir/log" || why+=("the log does not name --insecure")
    grep -qF "$addr" "$dir/log" || why+=("the log does not name $addr")
    [ -e "$dir/control.sock" ] && why+=("it made its control socket")
    if ((${#why[@]} == 0)); then
        ok "$title"
        grep -- '--insecure' "$dir/log" | head -1 | diag
    else
        not_ok "$title" "${why[@]}"
        diag <"$dir/log"
    fi
}

# insecure_is NAME true|false: what query-migrate says (JSON), and
# whether the human status has the WARNING row.
insecure_is() {
    local json human
    json=$(pcd_migrate "$1" status --json 2>&1)
    human=$(pcd_migrate "$1" status 2>&1)
    if [ "$2" = true ]; then
        [[ $json == *'"insecure" : true'* || $json == *'"insecure":true'* ]] &&
            [[ $human == *INSECURE* ]]
    else
        [[ $json == *'"insecure" : false'* || $json == *'"insecure":false'* ]] &&
            [[ $human != *INSECURE* ]]
    fi
}

# started TITLE NAME WANT_INSECURE [postcopyd args]: it starts, and says
# (or does not say) insecure.
started() {
    local title=$1 name=$2 want=$3 why=()
    shift 3
    if pcd_daemon_start "$name" "$NS" "$IP" "$@"; then
        insecure_is "$name" "$want" ||
            why+=("status does not say insecure = $want:" \
                "$(pcd_migrate "$name" status --json 2>&1 | tr '\n' ' ')")
        if [ "$want" = true ]; then
            grep -q 'INSECURE: listening on' "$(pcd_daemon_log "$name")" ||
                why+=("no INSECURE warning in the log")
        fi
    else
        why+=("it did not start")
    fi
    if ((${#why[@]} == 0)); then
        ok "$title"
    else
        not_ok "$title" "${why[@]}"
        tail -n 10 "$(pcd_daemon_log "$name")" | diag
    fi
    pcd_stop_pid "$(pcd_daemon_pid "$name")"
}

start_refused "${TESTS[0]}" "$IP:$PCD_PORT"
start_refused "${TESTS[1]}" "0.0.0.0:$PCD_PORT"
started "${TESTS[2]}" d1 true --listen "$IP:$PCD_PORT" --psk-file '' --insecure
printf '[peer]\ninsecure = true\n' >"$PCD_TMP/insecure.conf"
started "${TESTS[3]}" d2 true --config "$PCD_TMP/insecure.conf" --psk-file ''
started "${TESTS[4]}" d3 false
started "${TESTS[5]}" d4 false --listen "127.0.0.1:$PCD_PORT" --psk-file ''

exit $((failed > 0))
