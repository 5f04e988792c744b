#!/bin/bash
# test_journal.sh - postcopyd logs with priorities journald understands.
# Under systemd its stderr is a journald stream; a stream gives every line
# one priority, so the daemon must send its records with their own.  A
# private mount namespace stands in for journald: a stream socket at
# /run/systemd/journal/stdout (what g_log_writer_is_journald() recognises)
# and the native datagram socket /run/systemd/journal/socket, on a tmpfs
# only this test sees.  Elsewhere stderr keeps "postcopyd: LEVEL: text".
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_journal.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
n=0 failed=0
TESTS=("a warning reaches the journal at priority 4, info at 5, nothing through the stream"
    "a start-up failure reaches the journal at priority 3"
    "off the journal, stderr keeps 'postcopyd: LEVEL: text'")
echo "1..${#TESTS[@]}"

tmp=$(mktemp -d /tmp/pcd-journal.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# The daemon's own directories, a free port, a notify socket nobody
# listens on (so that it warns: "cannot notify systemd").
daemon_args() {
    echo "--config /dev/null --listen 127.0.0.1:$1 --state-dir $tmp/state \
--control-socket $tmp/control.sock --attach-socket $tmp/attach.sock"
}

# run_in_fake_journal PORT OUT: postcopyd with stderr on the fake journal's
# stream socket, stopped after a second; the records in OUT.dgram, the
# stream's bytes in OUT.stream.
run_in_fake_journal() {
    local port=$1 out=$2
    # socat's EXEC address cannot hold the colons of HOST:PORT.
    printf '#!/bin/sh\nexec %s %s\n' "$build/postcopyd" \
        "$(daemon_args "$port")" >"$tmp/run.sh"
    chmod +x "$tmp/run.sh"
    # shellcheck disable=SC2016
    unshare -m --propagation private bash -c '
        set -u
        mount -t tmpfs tmpfs /run || exit 1
        mkdir -p /run/systemd/journal
        socat -u UNIX-RECV:/run/systemd/journal/socket \
            "OPEN:$2.dgram,creat,append" & dg=$!
        socat -u UNIX-LISTEN:/run/systemd/journal/stdout \
            "OPEN:$2.stream,creat,append" & st=$!
        for _ in $(seq 50); do
            [ -S /run/systemd/journal/stdout ] &&
                [ -S /run/systemd/journal/socket ] && break
            sleep 0.1
        done
        NOTIFY_SOCKET=/nonexistent/notify timeout -s TERM 1 \
            socat UNIX-CONNECT:/run/systemd/journal/stdout \
            "EXEC:$3,nofork,stderr"
        sleep 0.3
        kill $dg $st 2>/dev/null
        wait
    ' sh "$port" "$out" "$tmp/run.sh"
}

if [ "$(id -u)" != 0 ]; then
    skip_all "needs root (a private mount namespace for the fake journal)"
fi
for tool in unshare socat; do
    command -v $tool >/dev/null || skip_all "$tool is not installed"
done

port=$((20000 + RANDOM % 20000))
run_in_fake_journal "$port" "$tmp/ok"
t=${TESTS[0]}
why=()
grep -qa "^MESSAGE=cannot notify systemd" "$tmp/ok.dgram" 2>/dev/null ||
    why+=("no 'cannot notify systemd' record")
grep -qa "^PRIORITY=4" "$tmp/ok.dgram" 2>/dev/null || why+=("no PRIORITY=4 record")
grep -qa "^PRIORITY=5" "$tmp/ok.dgram" 2>/dev/null || why+=("no PRIORITY=5 record")
grep -qa "postcopyd: " "$tmp/ok.stream" 2>/dev/null &&
    why+=("lines on the stream too:" "$(grep -a "postcopyd: " "$tmp/ok.stream" | head -3)")
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

# The port is taken: the daemon cannot start.
t=${TESTS[1]}
exec {hold}< <(socat -u TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr - 2>/dev/null)
sleep 0.3
rm -f "$tmp"/*.sock
run_in_fake_journal "$port" "$tmp/fail"
exec {hold}<&-
if grep -qa "^PRIORITY=3" "$tmp/fail.dgram" 2>/dev/null &&
    grep -qa "^MESSAGE=.*Address already in use" "$tmp/fail.dgram"; then
    ok "$t"
else
    not_ok "$t" "records:" "$(tr '\n' ' ' <"$tmp/fail.dgram" 2>/dev/null)" \
        "stream:" "$(cat "$tmp/fail.stream" 2>/dev/null)"
fi

t=${TESTS[2]}
rm -f "$tmp"/*.sock
port=$((port + 1))
# shellcheck disable=SC2046
NOTIFY_SOCKET=/nonexistent/notify timeout -s TERM 1 "$build/postcopyd" \
    $(daemon_args "$port") 2>"$tmp/stderr"
if grep -qx "postcopyd: warning: cannot notify systemd (READY=1): .*" "$tmp/stderr" &&
    grep -qx "postcopyd: info: ready: control socket $tmp/control.sock" "$tmp/stderr"; then
    ok "$t"
else
    not_ok "$t" "stderr:" "$(cat "$tmp/stderr")"
fi
exit $((failed > 0))
