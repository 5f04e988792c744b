#!/bin/bash
# test_activation.sh - socket activation as postcopyd.socket does it: the
# control and attach sockets listen before the daemon runs, the first
# client starts it, it takes both with sd_listen_fds() instead of making
# them, serves them, and leaves them to their owner when it stops.
# systemd-socket-activate stands in for systemd.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_activation.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
n=0 failed=0
TESTS=("the first control client starts the daemon, which takes both sockets"
    "a VMM attaches on the handed-over attach socket"
    "SIGTERM: exit 0, the sockets stay with their owner")
echo "1..${#TESTS[@]}"

tmp=$(mktemp -d /tmp/pcd-activation.XXXXXX) || exit 1
pid= guest=
cleanup() {
    [ -n "$guest" ] && kill -KILL "$guest" 2>/dev/null
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
command -v systemd-socket-activate >/dev/null ||
    skip_all "systemd-socket-activate is not installed (package systemd)"

log=$tmp/log
port=$((20000 + RANDOM % 20000))
systemd-socket-activate -l "$tmp/control.sock" -l "$tmp/attach.sock" \
    "$build/postcopyd" --config /dev/null --listen "127.0.0.1:$port" \
    --state-dir "$tmp/state" --control-socket "$tmp/control.sock" \
    --attach-socket "$tmp/attach.sock" >"$log" 2>&1 &
pid=$!

wait_for() { # FILE PATTERN: a line matching it within 5 s
    for _ in $(seq 50); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
for _ in $(seq 50); do
    [ -S "$tmp/control.sock" ] && [ -S "$tmp/attach.sock" ] && break
    sleep 0.1
done

t=${TESTS[0]}
"$build/postcopy-migrate" --socket "$tmp/control.sock" status --json \
    >"$tmp/status" 2>&1
if wait_for "$log" "ready: control socket" &&
    grep -q "info: control socket $tmp/control.sock: from systemd" "$log" &&
    grep -q "info: attach socket $tmp/attach.sock: from systemd" "$log" &&
    grep -q '"status"\|"error"' "$tmp/status"; then
    ok "$t"
else
    not_ok "$t" "log:" "$(cat "$log")" "status:" "$(cat "$tmp/status")"
fi

t=${TESTS[1]}
"$build/postcopy-guest" --attach "$tmp/attach.sock" --name g1 --size 16M \
    --workload idle >"$tmp/guest" 2>&1 &
guest=$!
if wait_for "$log" "vm g1: attached"; then
    ok "$t"
else
    not_ok "$t" "log:" "$(cat "$log")" "guest:" "$(cat "$tmp/guest")"
fi

t=${TESTS[2]}
kill -TERM "$pid"
for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
wait "$pid"
rc=$?
pid=
if [ "$rc" = 0 ] && [ -S "$tmp/control.sock" ] && [ -S "$tmp/attach.sock" ]; then
    ok "$t"
else
    not_ok "$t" "exit $rc; sockets: $(ls "$tmp")" "$(cat "$log")"
fi
exit $((failed > 0))
