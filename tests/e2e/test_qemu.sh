#!/bin/bash
# test_qemu.sh - postcopyd migrates real, unmodified QEMU VMs (TCG, the test
# guest of tools/testvm) between two "hosts" (network namespaces, lib.sh):
#
#   - hybrid and postcopy, memfd, /dev/shm file and hugetlbfs (2 MiB) RAM:
#     both QEMUs attached by pid (postcopy-migrate attach), RAM moved by
#     postcopyd, device state by QEMU's own stream inside postcopyd's peer
#     channel; the guest's pass stream, read across both QEMUs' serial
#     output, goes on without a gap and with 0 errors after the switchover,
#     the destination QEMU runs and the source QEMU has quit;
#   - the destination daemon killed in precopy: the migration fails, the
#     source QEMU is running again (query-status) and its passes go on;
#   - guest RAM that is not shared (plain -m) is refused at attach with
#     the QEMU option to use; so is a pid that is not the QMP socket's;
#   - the peer connections killed mid-postcopy: both sides pause, the
#     source reconnects, the guest goes on with 0 errors; the destination
#     daemon killed mid-postcopy: restarted and given QEMU again, it takes
#     back the uffd QEMU kept and carries the migration on.
#
# Prints TAP.  Run by tests/run-tests.sh, or by hand:
#   tests/e2e/test_qemu.sh --build build [--keep]
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/lib/qemu.sh
. "$here/../lib/qemu.sh"

pcd_test_args "$@"
export POSTCOPYD_BUILD=$build
export PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-120}
MEM=${QEMU_TEST_MEM:-256}
TESTS=(
    "hybrid, memfd RAM: the guest goes on at the destination, 0 errors"
    "postcopy, /dev/shm file RAM: the guest goes on at the destination, 0 errors"
    "hybrid, hugetlbfs (2 MiB) RAM: the guest goes on at the destination, 0 errors"
    "destination daemon killed in precopy: the source QEMU runs on, 0 errors"
    "RAM not in shared memory: refused at attach with the option to use"
    "a pid that does not own the QMP socket: refused at attach"
    "connections killed mid-postcopy: paused, reconnected, the guest goes on, 0 errors"
    "destination daemon killed mid-postcopy, restarted, QEMU attached again: carries on, 0 errors"
)

pcd_init "$build"
echo "1..${#TESTS[@]}"
command -v "$QEMU_BIN" >/dev/null ||
    skip_all "$QEMU_BIN not installed (./configure --install-deps installs qemu-system-x86)"
[ -r "$(qemu_testvm)" ] || skip_all "$(qemu_testvm) not built"
pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
trap 'qemu_cleanup; pcd_cleanup' EXIT
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"
pcd_ensure_daemons || fail_all "the daemons did not start"

qdir=$PCD_TMP/qemu
mkdir -p "$qdir"
serial() { echo "$qdir/$1.serial"; }
qmp() { echo "$qdir/$1.qmp"; }

# dump NAME...: the QEMUs' serial tails and stderr, and the daemons' logs.
dump() {
    local f
    for f in "$@"; do
        tail -n 3 "$(serial "$f")" "$(serial "$f").err" 2>/dev/null | diag
    done
    pcd_dump_logs "# "
}

# start_vm NAME DAEMON BACKING [--incoming]: a QEMU in DAEMON's namespace.
start_vm() {
    local name=$1 daemon=$2 backing=$3
    shift 3
    qemu_start "$name" "$MEM" "$backing" "$(serial "$name")" "$(qmp "$name")" \
        --netns "${PCD_NS_OF[$daemon]}" --append "share=50" "$@" \
        -- -qmp "unix:$(qmp "$name").mon,server=on,wait=off"
}

# attach NAME DAEMON VM [--incoming]: postcopy-migrate attach, output in
# $qdir/NAME.attach.
attach() {
    local name=$1 daemon=$2 vm=$3
    shift 3
    pcd_migrate "$daemon" attach --pid "${QEMU_PID[$name]}" \
        --qmp "$(qmp "$name")" --name "$vm" "$@" >"$qdir/$name.attach" 2>&1
}

# QEMU serves one client per QMP socket and postcopyd holds the first:
# the test asks through a second monitor (.mon), as an operator's tools
# would.
qemu_status() {
    qmp_cmd "$(qmp "$1").mon" '{"execute":"query-status"}' 5 |
        sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p'
}

# migrate_vm TITLE MODE BACKING: the whole scenario of the first tests.
migrate_vm() {
    local title=$1 mode=$2 backing=$3 vm=vm-$2-$3 why=() got last st
    if ! start_vm "$vm-src" src "$backing" ||
        ! start_vm "$vm-dst" dst "$backing" --incoming; then
        not_ok "$title" "QEMU did not start"
        dump "$vm-src" "$vm-dst"
        return
    fi
    if ! serial_wait_passes "$(serial "$vm-src")" 3 60 "${QEMU_PID[$vm-src]}" >/dev/null; then
        why+=("the source guest did not reach pass 3")
    elif ! attach "$vm-src" src "$vm"; then
        why+=("attach at the source failed: $(cat "$qdir/$vm-src.attach")")
    elif ! attach "$vm-dst" dst "$vm" --incoming; then
        why+=("attach at the destination failed: $(cat "$qdir/$vm-dst.attach")")
    elif ! pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode "$mode" >"$qdir/$vm.migrate" 2>&1; then
        why+=("postcopy-migrate migrate failed:" "$(tail -n 5 "$qdir/$vm.migrate")")
    fi
    if [ ${#why[@]} -eq 0 ]; then
        last=$(serial_last_pass "$(serial "$vm-src")")
        # 20 passes at the destination: every page read back, many times.
        if ! got=$(serial_wait_passes "$(serial "$vm-dst")" $((${last%% *} + 20)) 60 \
            "${QEMU_PID[$vm-dst]}"); then
            why+=("the destination guest did not run 20 passes past ${last%% *}: $got")
        elif ! got=$(serial_stream_ok "$(serial "$vm-src")" "$(serial "$vm-dst")"); then
            why+=("the guest's pass stream: $got")
        fi
        st=$(qemu_status "$vm-dst")
        [ "$st" = running ] || why+=("destination QEMU status '$st', not running")
        for _ in $(seq 50); do qemu_alive "$vm-src" || break; sleep 0.1; done
        qemu_alive "$vm-src" && why+=("the source QEMU did not quit after the migration")
    fi
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $got; source stopped at pass ${last%% *}; $(grep -m1 -E '^(downtime|total time)' "$qdir/$vm.migrate")"
    else
        not_ok "$title" "${why[@]}"
        dump "$vm-src" "$vm-dst"
    fi
    qemu_stop "$vm-src"
    qemu_stop "$vm-dst"
    pcd_ensure_daemons >/dev/null || fail_all "the daemons did not come back"
}

migrate_vm "${TESTS[0]}" hybrid memfd
migrate_vm "${TESTS[1]}" postcopy shm
# Huge pages for both QEMUs, on a hugetlbfs mount of our own.
hugetlbfs=$PCD_TMP/hugetlbfs
if ! pcd_hugepages_reserve $((2 * MEM / 2)); then
    not_ok "${TESTS[2]}" "cannot reserve huge pages: $PCD_SKIP_REASON"
elif ! mkdir -p "$hugetlbfs" || ! mount -t hugetlbfs none "$hugetlbfs"; then
    not_ok "${TESTS[2]}" "cannot mount hugetlbfs on $hugetlbfs"
else
    QEMU_HUGETLBFS=$hugetlbfs migrate_vm "${TESTS[2]}" hybrid hugetlbfs
    umount "$hugetlbfs"
    pcd_hugepages_release
fi

# The destination daemon dies while precopy runs.  The link is throttled
# so that round 1 alone lasts seconds: with write-protect tracking slowing
# this guest's writes, precopy of it can converge within a second on a
# fast link, before the kill.
kill_in_precopy() {
    local title=$1 vm=vm-kill why=() last got st if_src=pcs$$
    if ! ip netns exec "$PCD_NS_SRC" tc qdisc replace dev "$if_src" root \
        tbf rate 400mbit burst 64k latency 50ms 2>/dev/null; then
        skip "$title" "cannot throttle the link (tc tbf): precopy could end before the kill"
        return
    fi
    if ! start_vm "$vm-src" src memfd || ! start_vm "$vm-dst" dst memfd --incoming; then
        ip netns exec "$PCD_NS_SRC" tc qdisc del dev "$if_src" root 2>/dev/null
        not_ok "$title" "QEMU did not start"
        return
    fi
    if ! serial_wait_passes "$(serial "$vm-src")" 3 60 "${QEMU_PID[$vm-src]}" >/dev/null ||
        ! attach "$vm-src" src "$vm" || ! attach "$vm-dst" dst "$vm" --incoming; then
        ip netns exec "$PCD_NS_SRC" tc qdisc del dev "$if_src" root 2>/dev/null
        not_ok "$title" "set-up failed: $(cat "$qdir"/$vm-*.attach)"
        dump "$vm-src"
        return
    fi
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --mode precopy \
        --max-precopy-time 60000 --max-rounds 1000 >"$qdir/$vm.migrate" 2>&1 &
    local cli=$!
    pcd_wait_line "$(pcd_daemon_log src)" "migration .* \\($vm, .*\\): setup -> active" 30 >/dev/null ||
        why+=("the migration never became active")
    sleep 1 # a round or so of precopy
    kill -KILL "$(pcd_daemon_pid dst)"
    wait "$(pcd_daemon_pid dst)" 2>/dev/null # no job-control noise
    wait "$cli" && why+=("postcopy-migrate migrate succeeded with the destination killed")
    ip netns exec "$PCD_NS_SRC" tc qdisc del dev "$if_src" root 2>/dev/null
    st=$(qemu_status "$vm-src")
    [ "$st" = running ] || why+=("source QEMU status '$st', not running")
    last=$(serial_last_pass "$(serial "$vm-src")")
    if ! got=$(serial_wait_passes "$(serial "$vm-src")" $((${last%% *} + 10)) 30 \
        "${QEMU_PID[$vm-src]}"); then
        why+=("the source guest did not go on past pass ${last%% *}: $got")
    elif ! got=$(serial_stream_ok "$(serial "$vm-src")"); then
        why+=("the source guest's pass stream: $got")
    fi
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $(grep -m1 '^postcopy-migrate:' "$qdir/$vm.migrate"); source guest $got"
    else
        not_ok "$title" "${why[@]}"
        dump "$vm-src"
    fi
    qemu_stop "$vm-src"
    qemu_stop "$vm-dst"
    pcd_ensure_daemons >/dev/null || fail_all "the daemons did not come back"
}
kill_in_precopy "${TESTS[3]}"

# QEMU with plain -m: its RAM is anonymous private memory.
refuse_private() {
    local title=$1 vm=vm-private
    ip netns exec "$PCD_NS_SRC" "$QEMU_BIN" -accel tcg -machine pc -nodefaults \
        -display none -vga none -no-reboot -m 64 -kernel "$(qemu_testvm)" \
        -serial "file:$(serial $vm)" -qmp "unix:$(qmp $vm),server=on,wait=off" \
        -qmp "unix:$(qmp $vm).mon,server=on,wait=off" \
        </dev/null >/dev/null 2>&1 &
    QEMU_PID[$vm]=$!
    pcd_wait_socket "$(qmp $vm)" "${QEMU_PID[$vm]}" 10
    if attach "$vm" src "$vm"; then
        not_ok "$title" "attach succeeded: $(cat "$qdir/$vm.attach")"
    elif ! grep -q "share=on" "$qdir/$vm.attach" ||
        [ "$(wc -l <"$qdir/$vm.attach")" -ne 1 ]; then
        not_ok "$title" "not one line naming share=on: $(cat "$qdir/$vm.attach")"
    elif ! pcd_daemon_alive src || [ "$(qemu_status $vm)" != running ]; then
        not_ok "$title" "the daemon or QEMU did not survive the refusal"
    else
        ok "$title"
        echo "# $(cat "$qdir/$vm.attach")"
    fi
}
refuse_private "${TESTS[4]}"

# The QMP socket of one process named with another's pid.
refuse_wrong_pid() {
    local title=$1 vm=vm-private other
    sleep 60 &
    other=$!
    if pcd_migrate src attach --pid "$other" --qmp "$(qmp $vm)" --name x \
        >"$qdir/wrong.attach" 2>&1; then
        not_ok "$title" "attach succeeded: $(cat "$qdir/wrong.attach")"
    elif ! grep -q "$other" "$qdir/wrong.attach"; then
        not_ok "$title" "the error does not name the pid: $(cat "$qdir/wrong.attach")"
    elif ! pcd_daemon_alive src; then
        not_ok "$title" "the daemon died"
    else
        ok "$title"
        echo "# $(cat "$qdir/wrong.attach")"
    fi
    kill "$other" 2>/dev/null
    wait "$other" 2>/dev/null
    qemu_stop "$vm"
}
refuse_wrong_pid "${TESTS[5]}"

# Postcopy with the peer connections killed (ss -K) in the middle: both
# sides pause, the source reconnects, the destination asks again for what
# it still lacks; the guest, blocked meanwhile on the pages it lacks, goes
# on with every page right.  The link is throttled so postcopy lasts.
recover_after_kill() {
    local title=$1 how=$2 vm=vm-$2 why=() cli last got st if_src=pcs$$
    if ! ip netns exec "$PCD_NS_SRC" tc qdisc replace dev "$if_src" root \
        tbf rate 400mbit burst 64k latency 50ms 2>/dev/null; then
        skip "$title" "cannot throttle the link (tc tbf): postcopy would end before the cut"
        return
    fi
    start_vm "$vm-src" src memfd && start_vm "$vm-dst" dst memfd --incoming ||
        { not_ok "$title" "QEMU did not start"; return; }
    serial_wait_passes "$(serial "$vm-src")" 3 60 "${QEMU_PID[$vm-src]}" >/dev/null &&
        attach "$vm-src" src "$vm" && attach "$vm-dst" dst "$vm" --incoming ||
        { not_ok "$title" "set-up failed: $(cat "$qdir"/$vm-*.attach)"; dump "$vm-src"; return; }
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --mode postcopy \
        >"$qdir/$vm.migrate" 2>&1 &
    cli=$!
    if ! pcd_wait_line "$(pcd_daemon_log src)" \
        "migration .* \\($vm, source\\): device -> postcopy-active" 30 >/dev/null; then
        why+=("postcopy never started")
    else
        sleep 0.3
        case "$how" in
        conn-kill)
            ip netns exec "$PCD_NS_SRC" ss -K dst "$PCD_IP_DST" \
                dport = ":$PCD_PORT" >/dev/null 2>"$qdir/ss.err" ||
                why+=("ss -K failed: $(head -n 1 "$qdir/ss.err")")
            ;;
        dst-kill)
            # The guest blocks on the uffd QEMU kept; the restarted daemon
            # takes that uffd back and its page state table.
            kill -KILL "$(pcd_daemon_pid dst)"
            wait "$(pcd_daemon_pid dst)" 2>/dev/null
            sleep 0.5
            pcd_ensure_daemons >/dev/null 2>&1 ||
                why+=("the destination daemon did not restart")
            attach "$vm-dst" dst "$vm" --incoming ||
                why+=("attach after the restart failed: $(cat "$qdir/$vm-dst.attach")")
            ;;
        esac
    fi
    wait "$cli" || why+=("postcopy-migrate migrate failed:" "$(tail -n 3 "$qdir/$vm.migrate")")
    ip netns exec "$PCD_NS_SRC" tc qdisc del dev "$if_src" root 2>/dev/null
    grep -qE "\\($vm, source\\): postcopy-active -> postcopy-paused" "$(pcd_daemon_log src)" ||
        why+=("the source never went postcopy-paused: the cut missed postcopy")
    grep -qE "reconnected to" "$(pcd_daemon_log src)" ||
        why+=("the source log has no 'reconnected to' line")
    [ "$how" = dst-kill ] && ! grep -q "carried on" "$qdir/$vm-dst.attach" &&
        why+=("the second attach did not carry the migration on: $(cat "$qdir/$vm-dst.attach")")
    last=$(serial_last_pass "$(serial "$vm-src")")
    if ! got=$(serial_wait_passes "$(serial "$vm-dst")" $((${last%% *} + 20)) 60 \
        "${QEMU_PID[$vm-dst]}"); then
        why+=("the destination guest did not run 20 passes past ${last%% *}: $got")
    elif ! got=$(serial_stream_ok "$(serial "$vm-src")" "$(serial "$vm-dst")"); then
        why+=("the guest's pass stream: $got")
    fi
    st=$(qemu_status "$vm-dst")
    [ "$st" = running ] || why+=("destination QEMU status '$st', not running")
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $got; $(grep -m1 -E '^total time' "$qdir/$vm.migrate")"
    else
        not_ok "$title" "${why[@]}"
        dump "$vm-src" "$vm-dst"
    fi
    qemu_stop "$vm-src"
    qemu_stop "$vm-dst"
}
recover_after_kill "${TESTS[6]}" conn-kill
recover_after_kill "${TESTS[7]}" dst-kill

exit $((failed > 0))
