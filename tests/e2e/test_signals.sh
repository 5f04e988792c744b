#!/bin/bash
# test_signals.sh - postcopyd under the signals an operator and systemd
# send: SIGHUP reloads the configuration (a bad file changes nothing),
# SIGTERM stops it with status 0; every exit, a failed start-up too,
# removes the sockets it made and says why in one line.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_signals.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
n=0 failed=0
echo "1..4"

tmp=$(mktemp -d /tmp/pcd-signals.XXXXXX) || exit 1
pid= hold=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    [ -n "$hold" ] && kill "$hold" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
conf=$tmp/postcopyd.conf
log=$tmp/log

# start_daemon PORT: postcopyd on its own sockets in $tmp, log in $log.
start_daemon() {
    "$build/postcopyd" --config "$conf" --listen "127.0.0.1:$1" \
        --state-dir "$tmp/state" --control-socket "$tmp/control.sock" \
        --attach-socket "$tmp/attach.sock" 2>"$log" &
    pid=$!
}

# wait_for PATTERN: a log line matching it within 5 s.
wait_for() {
    for _ in $(seq 50); do
        grep -q "$1" "$log" && return 0
        sleep 0.1
    done
    return 1
}

# A daemon is gone within 5 s; its exit status in $rc.
wait_exit() {
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid"
    rc=$?
    pid=
}

printf '[daemon]\nlog-level = info\n' >"$conf"
start_daemon "$port"
wait_for "ready: control socket" || pcd_die "postcopyd did not start: $(cat "$log")"

t="SIGHUP reloads the configuration: log-level now, the rest named for a restart"
printf '[daemon]\nlog-level = debug\n[peer]\nkeepalive = 7\n' >"$conf"
kill -HUP "$pid"
if wait_for "SIGHUP: configuration reloaded.*log-level debug; in effect after a restart: peer.keepalive$" &&
    kill -0 "$pid" 2>/dev/null && [ -S "$tmp/control.sock" ]; then
    ok "$t"
else
    not_ok "$t" "alive: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no)" "$(cat "$log")"
fi

t="SIGHUP with a bad file keeps the running configuration and the daemon"
printf '[daemon]\nlog-level = loud\n' >"$conf"
kill -HUP "$pid"
if wait_for "warning: SIGHUP: configuration not reloaded, the running one stays: .*loud" &&
    sleep 0.2 && kill -0 "$pid" 2>/dev/null; then
    ok "$t"
else
    not_ok "$t" "$(cat "$log")"
fi

t="SIGTERM: exit 0, says so, removes the control and attach sockets"
printf '[daemon]\nlog-level = info\n' >"$conf"
kill -TERM "$pid"
wait_exit
left=$(ls "$tmp"/*.sock 2>/dev/null)
if [ "$rc" = 0 ] && [ -z "$left" ] && grep -qx "postcopyd: info: stopping: SIGTERM" "$log"; then
    ok "$t"
else
    not_ok "$t" "exit $rc; left: $left" "$(cat "$log")"
fi

# The peer port is taken: the daemon made its control and attach sockets
# before it found out.
t="a failed start-up (port in use): exit 1, one line why, no socket left"
socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" - >/dev/null 2>&1 &
hold=$!
sleep 0.3
start_daemon "$port"
wait_exit
left=$(ls "$tmp"/*.sock 2>/dev/null)
last=$(tail -n 1 "$log")
if [ "$rc" = 1 ] && [ -z "$left" ] &&
    [[ $last == "postcopyd: "*"127.0.0.1:$port"*"Address already in use" ]] &&
    [ "$(grep -c "Address already in use" "$log")" = 1 ]; then
    ok "$t"
else
    not_ok "$t" "exit $rc; left: $left" "$(cat "$log")"
fi
exit $((failed > 0))
