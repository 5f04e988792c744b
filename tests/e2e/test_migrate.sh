#!/bin/bash
# test_migrate.sh - end-to-end postcopy migrations between two "hosts"
# (network namespaces joined by a veth pair), each with a real postcopyd,
# of postcopy-guest VMs whose vCPUs keep writing during the migration.
# Prints TAP.  Run by tests/run-tests.sh (as `test_migrate.sh --tap`, build
# dir in $POSTCOPYD_BUILD) or by hand:
#
#   tests/e2e/test_migrate.sh --build build-g
#
# Each migration test asserts: postcopy-migrate exits 0, the destination
# guest checks every page against the digests taken at the switchover and
# finds 0 mismatches, the destination guest is still running (and silent
# on stderr) 1 s later, and both daemons are still alive.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

pcd_test_args "$@"

SIZE=64M
RATE=64
VCPUS=2
TESTS=(
    "postcopy migration of an anon guest"
    "postcopy migration of a shmem guest"
    "postcopy migration of a hugetlbfs guest"
    "migrate --vm nosuchvm fails with exit 1 and a one-line reason"
    "daemons keep serving: a good migration after the failed one"
    "a daemon refuses a --fault-cpus CPU it may not run on, in one line"
)


pcd_init "$build"
echo "1..${#TESTS[@]}"


pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"

# Both daemons bind their fault path ([peer] fault-cpus) to the last CPU
# this test may run on: the migrations below run that way.
FAULT_CPU=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status |
    tr ',' '\n' | tail -n 1 | sed 's/.*-//')
export PCD_DAEMON_ARGS="${PCD_DAEMON_ARGS:-} --fault-cpus $FAULT_CPU"
pcd_ensure_daemons || fail_all "the daemons did not start"

# migrate_case BACKING VM: one postcopy migration; prints "ok"/"not ok".
# memfd_allocated PID BYTES: a memfd of process PID has >= BYTES allocated.
memfd_allocated() {
    local f b
    for f in /proc/"$1"/fd/*; do
        [[ $(readlink "$f" 2>/dev/null) == /memfd:* ]] || continue
        b=$(stat -L -c '%b * %B' "$f" 2>/dev/null) || continue
        (($b >= $2)) && return 0
    done
    return 1
}

# fifo_lines DAEMON THREAD: how often THREAD of DAEMON said it is at SCHED_FIFO.
fifo_lines() {
    grep -c "$2: SCHED_FIFO" "$(pcd_daemon_log "$1")" 2>/dev/null
}

# bound_lines DAEMON THREAD: how often THREAD of DAEMON said the kernel
# has it on $FAULT_CPU alone (its affinity read back after binding).
bound_lines() {
    grep -c "$2: CPUs $FAULT_CPU\$" "$(pcd_daemon_log "$1")" 2>/dev/null
}

migrate_case() {
    local title=$1 backing=$2 vm=$3 page pages bytes rc line lat why=() cpu0 cpu1 th
    local out=$PCD_TMP/migrate-$vm.out
    local t0=$SECONDS

    if ! pcd_ensure_daemons; then
        not_ok "$title" "a daemon is down and did not restart"
        return
    fi
    page=$(pcd_page_size "$backing")
    bytes=$(pcd_size_bytes "$SIZE")
    pages=$((bytes / page))
    if [ "$backing" = hugetlbfs ] && ! pcd_hugepages_reserve $((2 * pages)); then
        skip "$title" "$PCD_SKIP_REASON"
        return
    fi
    local common=(--name "$vm" --backing "$backing" --size "$SIZE"
        --vcpus "$VCPUS" --workload random --dirty-rate "$RATE")
    if ! pcd_guest_start "$vm-src" src "${common[@]}" --verify 2>"$out.start" ||
        ! pcd_guest_start "$vm-dst" dst "${common[@]}" --incoming 2>>"$out.start"; then
        not_ok "$title" "a guest did not attach:"
        diag <"$out.start"
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
        pcd_guest_stop "$vm-src"
        pcd_guest_stop "$vm-dst"
        return
    fi
    # A file-backed incoming guest's RAM is allocated when it attaches
    # ([daemon] prealloc = on, the default): the daemon says so, and the
    # guest's memfd really holds its size in blocks before any migration.
    if [ "$backing" != anon ]; then
        pcd_wait_prealloc dst "$vm" 30 >/dev/null ||
            why+=("the destination did not preallocate the incoming guest's RAM")
        [ "$backing" = shmem ] && ! memfd_allocated "$(pcd_guest_pid "$vm-dst")" "$bytes" &&
            why+=("the incoming guest's memfd is not fully allocated after the prealloc")
    fi
    sleep 0.5 & wait $!   # let the workload dirty some pages first
    local -A fifo0 bound0
    for th in src:src-requests dst:dst-faults dst:dst-urgent; do
        fifo0[$th]=$(fifo_lines "${th%%:*}" "${th#*:}")
        bound0[$th]=$(bound_lines "${th%%:*}" "${th#*:}")
    done

    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode postcopy >"$out" 2>&1 &
    wait $!
    rc=$?
    ((rc == 0)) || why+=("postcopy-migrate exited with status $rc")

    line=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify: ' "${PCD_VERIFY_TIMEOUT:-20}" \
        "$(pcd_guest_pid "$vm-dst")")
    if [ -z "$line" ]; then
        why+=("the destination guest printed no verify line")
    elif [[ $line =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
        [ "${BASH_REMATCH[1]}" = "$pages" ] ||
            why+=("verify checked ${BASH_REMATCH[1]} pages, expected $pages")
        [ "${BASH_REMATCH[2]}" = 0 ] ||
            why+=("verify found ${BASH_REMATCH[2]} mismatching pages")
    else
        why+=("unexpected verify line: $line")
    fi
    # The guest's own stall per first touch: every page timed once.
    lat=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify-latency: ' 5 "$(pcd_guest_pid "$vm-dst")")
    if [[ $lat =~ ^verify-latency:\ count\ ([0-9]+)\ .*slow_count\ ([0-9]+)\ .*fast_count\ ([0-9]+) ]]; then
        [ "${BASH_REMATCH[1]}" = "$pages" ] ||
            why+=("verify-latency timed ${BASH_REMATCH[1]} reads, expected $pages")
        ((BASH_REMATCH[2] + BASH_REMATCH[3] == BASH_REMATCH[1])) ||
            why+=("verify-latency: slow + fast reads do not add up: $lat")
    else
        why+=("no verify-latency line after the verify line (got '$lat')")
    fi

    if [ -n "$line" ]; then
        # Still running its workload: alive, and using CPU (the random
        # writes at $RATE MiB/s take ~60 ms a second here).
        cpu0=$(pcd_cpu_ms "$(pcd_guest_pid "$vm-dst")")
        sleep 1 & wait $!
        cpu1=$(pcd_cpu_ms "$(pcd_guest_pid "$vm-dst")")
        if ! pcd_guest_alive "$vm-dst" || [ -z "$cpu0" ] || [ -z "$cpu1" ]; then
            why+=("the destination guest exited after the migration")
        elif ((cpu1 - cpu0 < 10)); then
            why+=("the destination guest is idle after the migration ($((cpu1 - cpu0)) ms CPU in 1 s): workload not running")
        fi
        [ -s "$(pcd_guest_err "$vm-dst")" ] &&
            why+=("the destination guest wrote to stderr")
    fi
    # The threads a faulting vCPU waits for ran at SCHED_FIFO ([peer]
    # fault-priority), or the daemon said why not.
    for th in src:src-requests dst:dst-faults dst:dst-urgent; do
        (($(fifo_lines "${th%%:*}" "${th#*:}") > fifo0[$th])) ||
            grep -q "fault path at normal priority" "$(pcd_daemon_log "${th%%:*}")" ||
            why+=("the ${th%%:*} daemon's ${th#*:} thread did not say it runs at SCHED_FIFO")
        (($(bound_lines "${th%%:*}" "${th#*:}") > bound0[$th])) ||
            why+=("the ${th%%:*} daemon's ${th#*:} thread did not say the kernel has it on CPU $FAULT_CPU")
    done
    pcd_daemon_alive src || why+=("the source daemon died")
    pcd_daemon_alive dst || why+=("the destination daemon died")

    if ((${#why[@]} == 0)); then
        ok "$title"
        echo "#   $lat"
        echo "#   $line; destination guest used $((cpu1 - cpu0)) ms CPU in the next second; $((SECONDS - t0)) s"
        grep -E '^(status|total time|downtime|RAM moved|throughput|postcopy requests|fault latency) ' \
            "$out" | diag
    else
        not_ok "$title" "${why[@]}"
        echo "#   postcopy-migrate output:"
        tail -n 25 "$out" | diag
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
    pcd_guest_stop "$vm-src"
    pcd_guest_stop "$vm-dst"
}

migrate_case "${TESTS[0]}" anon vm-anon
migrate_case "${TESTS[1]}" shmem vm-shmem
migrate_case "${TESTS[2]}" hugetlbfs vm-huge

# report_refusal TITLE OUT: ok with OUT.stderr (the reason) when $why is
# empty, else not ok with OUT's output.
report_refusal() {
    if ((${#why[@]} == 0)); then
        ok "$1"
        diag <"$2.stderr"
    else
        not_ok "$1" "${why[@]}"
        cat "$2.stdout" "$2.stderr" | head -20 | diag
    fi
}

# A migration of a VM the source daemon does not have.
t=${TESTS[3]}
pcd_ensure_daemons
out=$PCD_TMP/migrate-nosuchvm
pcd_migrate src migrate --vm nosuchvm --to "$PCD_IP_DST:$PCD_PORT" \
    --mode postcopy >"$out.stdout" 2>"$out.stderr" &
wait $!
rc=$?
lines=$(grep -c . "$out.stderr")
why=()
((rc == 1)) || why+=("exit status $rc, expected 1")
((lines == 1)) || why+=("$lines lines on stderr, expected one reason")
[ -s "$out.stdout" ] && why+=("it printed on stdout")
report_refusal "$t" "$out"

# The same daemons, untouched since: a good migration still works.
t=${TESTS[4]}
if pcd_daemon_alive src && pcd_daemon_alive dst; then
    migrate_case "$t" shmem vm-after
else
    not_ok "$t" "a daemon died after the failed migration"
    pcd_dump_logs "# " none
fi

# A CPU past the last one this test may run on: refused at start, in one
# line naming it, before the daemon listens.
t=${TESTS[5]}
absent=$((FAULT_CPU + 1))
out=$PCD_TMP/fault-cpus-refused
ip netns exec "$PCD_NS_DST" timeout 10 "$PCD_BUILD/postcopyd" \
    --listen "$PCD_IP_DST:$((PCD_PORT + 1))" --psk-file "$PCD_PSK" \
    --control-socket "$out.control.sock" --attach-socket "$out.attach.sock" \
    --state-dir "$out.state" --fault-cpus "$absent" >"$out.stdout" 2>"$out.stderr"
rc=$?
why=()
((rc == 1)) || why+=("exit status $rc, expected 1")
(($(grep -c . "$out.stderr") == 1)) || why+=("not one line on stderr")
grep -q "fault-cpus: CPU $absent is not one this daemon may run on" "$out.stderr" ||
    why+=("stderr does not name CPU $absent")
[ -e "$out.control.sock" ] && why+=("it created its control socket")
report_refusal "$t" "$out"

exit $((failed > 0))
