#!/bin/bash
# test_modes.sh - end-to-end precopy and hybrid migrations between two
# "hosts" (network namespaces joined by a veth pair, see lib.sh), of
# postcopy-guest VMs whose vCPUs keep writing during the migration:
#
#   - precopy and hybrid of anon, shmem and hugetlbfs guests (async WP);
#   - hybrid with synchronous uffd-wp forced;
#   - the limits that end precopy when it cannot converge (--max-rounds,
#     --max-precopy-time);
#   - hybrid's downtime traffic is bounded by the dirty bitmap whatever the
#     dirty rate;
#   - a precopy that fails (layout mismatch) leaves the source VM running
#     and intact: a second migration of it succeeds.
#   - a destination VMM that does not answer when asked before the pause
#     fails the migration before the source VM pauses.
#
# Prints TAP.  Run by tests/run-tests.sh (as `test_modes.sh --tap`, build
# dir in $POSTCOPYD_BUILD) or by hand:
#
#   tests/e2e/test_modes.sh --build build-g [--keep]
#
# Each migration asserts: postcopy-migrate --json exits 0 with status
# "completed", the destination guest checks every page against the digests
# taken at the switchover and finds 0 mismatches, the destination guest
# still runs its workload afterwards, and both daemons are alive; then what
# that test is about, from the query-migrate object the CLI printed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

pcd_test_args "$@"

SIZE=64M
RATE=64
VCPUS=2
# Bound every CLI run: a precopy that never converges must fail, not hang.
export PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-30}
TESTS=(
    "precopy migration of an anon guest"
    "precopy migration of a shmem guest"
    "precopy migration of a hugetlbfs guest"
    "hybrid migration of an anon guest"
    "hybrid migration of a shmem guest"
    "hybrid migration of a hugetlbfs guest"
    "hybrid with --dirty-tracking sync-wp, shmem guest"
    "hybrid with --dirty-tracking sync-wp, anon guest"
    "unconverging precopy stops after --max-rounds 3"
    "unconverging precopy stops after --max-precopy-time 300"
    "precopy's round estimates see a full-speed writer; the switchover sends what the last round foresaw"
    "unconverging hybrid goes to postcopy once a round leaves half its pages dirty"
    "hybrid downtime traffic <= dirty bitmap size at 16 MiB/s"
    "hybrid downtime traffic <= dirty bitmap size unthrottled"
    "a precopy failing on a layout mismatch exits 1 with a one-line reason"
    "the failed migration left the source VM running: its workload progresses"
    "the source VM left running migrates intact afterwards"
    "a destination VMM that does not answer before the pause: the migration fails, the source VM runs on"
)


pcd_init "$build"
echo "1..${#TESTS[@]}"


pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"

pcd_ensure_daemons || fail_all "the daemons did not start"

json_get() { pcd_json_get "$@"; }

# ---------------------------------------------------------------- one run

# Results of the last run_migration:
R_WHY=()     # what went wrong (empty: it passed the common checks)
R_JSON=      # the CLI's --json output
R_OUT=       # the CLI's output (stdout + stderr)
R_LINE=      # the destination's verify line
R_MS=0       # wall time of the CLI, ms
R_CPU=       # destination guest CPU ms in the second after verify
R_SKIP=      # non-empty: the test cannot run here (why)

now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

# guest_args BACKING SIZE RATE VCPUS VM
guest_args() {
    G_ARGS=(--name "$5" --backing "$1" --size "$2" --vcpus "$4"
        --workload random --dirty-rate "$3")
}

# start_pair VM BACKING SIZE RATE VCPUS [DST_SIZE]: a running source guest
# with --verify and an incoming destination guest (with DST_EXTRA's
# options); 1 on failure (R_WHY).
DST_EXTRA=()
start_pair() {
    local vm=$1 backing=$2 size=$3 rate=$4 vcpus=$5 dsize=${6:-$3}
    local out=$PCD_TMP/start-$vm

    guest_args "$backing" "$size" "$rate" "$vcpus" "$vm"
    if ! pcd_guest_start "$vm-src" src "${G_ARGS[@]}" --verify 2>"$out"; then
        R_WHY+=("the source guest did not attach:")
        return 1
    fi
    guest_args "$backing" "$dsize" "$rate" "$vcpus" "$vm"
    if ! pcd_guest_start "$vm-dst" dst "${G_ARGS[@]}" --incoming \
        "${DST_EXTRA[@]}" 2>>"$out"; then
        R_WHY+=("the destination guest did not attach:")
        return 1
    fi
    return 0
}

# source_runs_on VM: after a failed migration the source guest is not
# paused: its vCPUs keep writing (R_CPU_MS of CPU in a second), it is
# silent, and both daemons live; R_WHY otherwise.
source_runs_on() {
    local pid cpu0 cpu1

    pid=$(pcd_guest_pid "$1-src")
    cpu0=$(pcd_cpu_ms "$pid")
    sleep 1 & wait $!
    cpu1=$(pcd_cpu_ms "$pid")
    R_CPU_MS=$((${cpu1:-0} - ${cpu0:-0}))
    if [ -z "$cpu0" ] || [ -z "$cpu1" ] || ! pcd_guest_alive "$1-src"; then
        R_WHY+=("the source guest exited")
    elif ((R_CPU_MS < 10)); then
        R_WHY+=("the source guest used $R_CPU_MS ms CPU in 1 s: left paused")
    fi
    [ -s "$(pcd_guest_err "$1-src")" ] && R_WHY+=("the source guest wrote to stderr")
    pcd_daemon_alive src || R_WHY+=("the source daemon died")
    pcd_daemon_alive dst || R_WHY+=("the destination daemon died")
}

# migrate_fails VM PATTERN WHAT: a hybrid migration of VM that must exit 1
# with one line on stderr matching PATTERN (WHAT says what it names);
# R_WHY otherwise.  The CLI's output in $PCD_TMP/migrate-VM.std{out,err}.
migrate_fails() {
    local out=$PCD_TMP/migrate-$1 rc lines

    sleep 0.5 & wait $!
    pcd_migrate src migrate --vm "$1" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode hybrid >"$out.stdout" 2>"$out.stderr" &
    wait $!
    rc=$?
    lines=$(grep -c . "$out.stderr")
    ((rc == 1)) || R_WHY+=("exit status $rc, expected 1")
    ((lines == 1)) || R_WHY+=("$lines lines on stderr, expected one reason")
    grep -q "$2" "$out.stderr" || R_WHY+=("the reason does not name $3")
}

# run_migration VM BACKING SIZE RATE VCPUS MIGRATE_ARGS...: start the
# pair, migrate with --json, check the common assertions (see the top).
# Guests are left running (stop_pair).
run_migration() {
    local vm=$1 backing=$2 size=$3 rate=$4 vcpus=$5 rc t0 page pages bytes
    local cpu0 cpu1 status
    shift 5
    R_WHY=() R_LINE='' R_MS=0 R_CPU='' R_SKIP=''
    R_JSON=$PCD_TMP/migrate-$vm.json
    R_OUT=$PCD_TMP/migrate-$vm.err
    : >"$R_JSON"
    : >"$R_OUT"

    if ! pcd_ensure_daemons; then
        R_WHY+=("a daemon is down and did not restart")
        return
    fi
    page=$(pcd_page_size "$backing")
    bytes=$(pcd_size_bytes "$size")
    pages=$((bytes / page))
    if [ "$backing" = hugetlbfs ] && ! pcd_hugepages_reserve $((2 * pages)); then
        R_SKIP=$PCD_SKIP_REASON
        return
    fi
    if ! start_pair "$vm" "$backing" "$size" "$rate" "$vcpus"; then
        diag <"$PCD_TMP/start-$vm"
        return
    fi
    sleep 0.5 & wait $!   # let the workload dirty some pages first

    t0=$(now_ms)
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --json \
        "$@" >"$R_JSON" 2>"$R_OUT" &
    wait $!
    rc=$?
    R_MS=$(($(now_ms) - t0))
    ((rc == 0)) || R_WHY+=("postcopy-migrate exited with status $rc")
    status=$(json_get "$R_JSON" status)
    [ "$status" = completed ] || R_WHY+=("status '$status', expected completed")

    R_LINE=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify: ' \
        "${PCD_VERIFY_TIMEOUT:-20}" "$(pcd_guest_pid "$vm-dst")")
    if [ -z "$R_LINE" ]; then
        R_WHY+=("the destination guest printed no verify line")
    elif [[ $R_LINE =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
        [ "${BASH_REMATCH[1]}" = "$pages" ] ||
            R_WHY+=("verify checked ${BASH_REMATCH[1]} pages, expected $pages")
        [ "${BASH_REMATCH[2]}" = 0 ] ||
            R_WHY+=("verify found ${BASH_REMATCH[2]} mismatching pages")
    else
        R_WHY+=("unexpected verify line: $R_LINE")
    fi

    if [ -n "$R_LINE" ]; then
        # Still running its workload: alive, and using CPU.
        cpu0=$(pcd_cpu_ms "$(pcd_guest_pid "$vm-dst")")
        sleep 1 & wait $!
        cpu1=$(pcd_cpu_ms "$(pcd_guest_pid "$vm-dst")")
        if ! pcd_guest_alive "$vm-dst" || [ -z "$cpu0" ] || [ -z "$cpu1" ]; then
            R_WHY+=("the destination guest exited after the migration")
        else
            R_CPU=$((cpu1 - cpu0))
            ((R_CPU >= 10)) ||
                R_WHY+=("the destination guest is idle after the migration ($R_CPU ms CPU in 1 s): workload not running")
        fi
        [ -s "$(pcd_guest_err "$vm-dst")" ] &&
            R_WHY+=("the destination guest wrote to stderr")
    fi
    pcd_daemon_alive src || R_WHY+=("the source daemon died")
    pcd_daemon_alive dst || R_WHY+=("the destination daemon died")
}

stop_pair() {
    pcd_guest_stop "$1-src"
    pcd_guest_stop "$1-dst"
}

# expect COND MESSAGE: add MESSAGE to R_WHY unless the arithmetic COND holds.
expect() { (($1)) 2>/dev/null || R_WHY+=("$2"); }
expect_str() { [ "$1" = "$2" ] || R_WHY+=("$3: '$1', expected '$2'"); }

# summary: the figures of the last run, one TAP comment line.
summary() {
    local j=$R_JSON
    echo "#   ${R_LINE:-no verify line}; ${R_MS} ms; mode=$(json_get "$j" mode)" \
        "tracking=$(json_get "$j" dirty-tracking) rounds=$(json_get "$j" rounds)" \
        "downtime=$(json_get "$j" downtime) ms" \
        "bytes-precopy=$(json_get "$j" bytes-precopy)" \
        "bytes-downtime=$(json_get "$j" bytes-downtime)" \
        "bytes-postcopy=$(json_get "$j" bytes-postcopy)" \
        "stale-pages=$(json_get "$j" stale-pages)" \
        "postcopy-requests=$(json_get "$j" ram.postcopy-requests)"
}

# report TITLE VM: ok / not ok / skip from R_WHY and R_SKIP, logs on failure.
report() {
    local title=$1 vm=$2
    if [ -n "$R_SKIP" ]; then
        skip "$title" "$R_SKIP"
    elif ((${#R_WHY[@]} == 0)); then
        ok "$title"
        summary
    else
        not_ok "$title" "${R_WHY[@]}"
        summary
        echo "#   postcopy-migrate output:"
        tail -n 5 "$R_OUT" | diag
        grep -E '"(status|error-desc)"' "$R_JSON" | diag
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
}

# Common to every precopy/hybrid run: the mode asked for, at least one
# round, and the tracker this kernel has (or the one forced).
check_mode() {
    local mode=$1 tracking=${2:-async-wp} j=$R_JSON rounds
    [ -s "$j" ] || return
    expect_str "$(json_get "$j" mode)" "$mode" "mode"
    rounds=$(json_get "$j" rounds)
    expect "${rounds:-0} >= 1" "rounds = '${rounds}', expected >= 1"
    expect_str "$(json_get "$j" dirty-tracking)" "$tracking" "dirty-tracking"
    if [ "$mode" = precopy ]; then
        local bp req
        bp=$(json_get "$j" bytes-postcopy)
        req=$(json_get "$j" ram.postcopy-requests)
        expect "${bp:-0} == 0" "precopy moved $bp bytes in postcopy"
        expect "${req:-1} == 0" "precopy had '$req' postcopy requests, expected 0"
    else
        local bpre
        bpre=$(json_get "$j" bytes-precopy)
        expect "${bpre:-0} > 0" "hybrid sent '$bpre' bytes in precopy, expected > 0"
    fi
}

# ---------------------------------------------------------------- a. modes

i=0
for mode in precopy hybrid; do
    for backing in anon shmem hugetlbfs; do
        vm=vm-$mode-$backing
        run_migration "$vm" "$backing" "$SIZE" "$RATE" "$VCPUS" --mode "$mode"
        [ -z "$R_SKIP" ] && check_mode "$mode"
        report "${TESTS[i]}" "$vm"
        stop_pair "$vm"
        i=$((i + 1))
    done
done
pcd_hugepages_release

# ---------------------------------------------------------------- b. sync-wp

# A vCPU that writes a protected page waits for the source's src-wp
# thread: it runs at the fault path's priority, or the daemon says why not.
wp_fifo_lines() {
    grep -c "src-wp: SCHED_FIFO" "$(pcd_daemon_log src)" 2>/dev/null
}

for backing in shmem anon; do
    vm=vm-syncwp-$backing
    fifo0=$(wp_fifo_lines)
    run_migration "$vm" "$backing" "$SIZE" "$RATE" "$VCPUS" --mode hybrid \
        --dirty-tracking sync-wp
    check_mode hybrid sync-wp
    (($(wp_fifo_lines) > ${fifo0:-0})) ||
        grep -q "fault path at normal priority" "$(pcd_daemon_log src)" ||
        R_WHY+=("the source's src-wp thread did not say it runs at SCHED_FIFO")
    report "${TESTS[i]}" "$vm"
    stop_pair "$vm"
    i=$((i + 1))
done

# ---------------------------------------------------------------- c. limits

# An unthrottled writer on 2 vCPUs never lets the rest fit in 0 ms: only
# the limits end precopy.
vm="vm-maxrounds"
run_migration "$vm" shmem "$SIZE" 0 2 --mode precopy --downtime-limit 0 \
    --max-rounds 3
check_mode precopy
rounds=$(json_get "$R_JSON" rounds)
expect "${rounds:-0} == 3" "rounds = '$rounds', expected exactly 3"
report "${TESTS[i]}" "$vm"
stop_pair "$vm"
i=$((i + 1))

vm="vm-maxtime"
run_migration "$vm" shmem "$SIZE" 0 2 --mode precopy --downtime-limit 0 \
    --max-rounds 1000 --max-precopy-time 300
check_mode precopy
expect "R_MS < 10000" "the migration took $R_MS ms, expected well under 10 s"
rounds=$(json_get "$R_JSON" rounds)
expect "${rounds:-1000} < 1000" "rounds = '$rounds': the time limit did not end precopy"
report "${TESTS[i]}" "$vm"
stop_pair "$vm"
i=$((i + 1))

# The convergence estimate: with a writer that never stops, no round may
# report 0 dirtied pages (a round that re-sent a few pages used to last
# 1 ms, see nothing written, expect 0 ms of downtime and end precopy),
# and a precopy that ends saying it converged must have foreseen what the
# switchover then sent (the final set also builds up during the pause: a
# generous factor).
vm="vm-estimate"
run_migration "$vm" shmem "$SIZE" 0 1 --mode precopy --downtime-limit 1 \
    --max-rounds 8
check_mode precopy
mapfile -t dirty < <(grep -o '"dirty-pages" : [0-9]*' "$R_JSON" | grep -o '[0-9]*$')
last=${dirty[-1]:-0}
sent=$(($(json_get "$R_JSON" bytes-downtime) / 4096))
for ((k = 0; k < ${#dirty[@]}; k++)); do
    expect "${dirty[k]} > 0" "round $((k + 1)) reported 0 dirtied pages with the writer running (rounds: ${dirty[*]})"
done
expect "${#dirty[@]} >= 2" "only ${#dirty[@]} round(s) in the stats"
ends=$(grep 'precopy ends after round' "$(pcd_daemon_log src)" | tail -n 1)
if [[ $ends != *"limit on rounds or time"* ]]; then
    expect "sent <= 4 * last + 64" "precopy ended as converged ('${ends#*precopy }') and the switchover sent $sent pages; the last round foresaw $last"
fi
echo "#   dirtied per round: ${dirty[*]}; switchover sent $sent pages; ${ends#*precopy }"
report "${TESTS[i]}" "$vm"
stop_pair "$vm"
i=$((i + 1))

# Hybrid needs no limit: an unthrottled writer leaves more than half of a
# round's pages dirty, and precopy hands over to postcopy there.
vm="vm-hybridexit"
run_migration "$vm" shmem "$SIZE" 0 2 --mode hybrid --downtime-limit 0 \
    --max-rounds 1000 --max-precopy-time 60000
check_mode hybrid
rounds=$(json_get "$R_JSON" rounds)
expect "${rounds:-1000} < 1000" "rounds = '$rounds': precopy did not end"
expect "R_MS < 10000" "the migration took $R_MS ms, expected well under 10 s"
grep -q "precopy ends after round ${rounds:-x}: it left .* dirty again" "$(pcd_daemon_log src)" ||
    R_WHY+=("the source did not say precopy stopped converging")
report "${TESTS[i]}" "$vm"
stop_pair "$vm"
i=$((i + 1))

# ---------------------------------------------------------------- d. bitmap

# 128 MiB of 4 KiB pages: 32768 pages, a 4096-byte bitmap.  The downtime
# traffic (Switchover without device state) stays within it plus a little
# framing however many pages are stale.
BITMAP_BYTES=$(($(pcd_size_bytes 128M) / 4096 / 8))
BOUND=$((BITMAP_BYTES + 256))
declare -A stale_at
for rate in 16 0; do
    vm=vm-bitmap-$rate
    run_migration "$vm" shmem 128M "$rate" 2 --mode hybrid --max-rounds 2
    check_mode hybrid
    bd=$(json_get "$R_JSON" bytes-downtime)
    st=$(json_get "$R_JSON" stale-pages)
    stale_at[$rate]=$st
    expect "${bd:-99999999} <= BOUND" \
        "bytes-downtime = '$bd' with $st stale pages, expected <= $BOUND"
    expect "${st:-0} > 0" "stale-pages = '$st', expected > 0 (the writer runs)"
    if [ "$rate" = 0 ] && [ -n "${stale_at[16]:-}" ]; then
        expect "${st:-0} != ${stale_at[16]}" \
            "stale-pages is $st at both rates: the dirty rate had no effect"
    fi
    report "${TESTS[i]}" "$vm"
    echo "#   dirty rate $( ((rate)) && echo "$rate MiB/s" || echo unthrottled): bytes-downtime $bd (bound $BOUND)," \
        "stale-pages $st of 32768"
    stop_pair "$vm"
    i=$((i + 1))
done

# ---------------------------------------------------------------- e. failure

# The incoming guest is half the size: the destination refuses the layout
# during setup, precopy is cancelled and the source VM must run on.
vm="vm-fail"
R_WHY=()
fail_ok=0
out=$PCD_TMP/migrate-$vm
if ! pcd_ensure_daemons || ! start_pair "$vm" shmem "$SIZE" "$RATE" "$VCPUS" 32M; then
    R_WHY+=("setup failed")
    diag <"$PCD_TMP/start-$vm" 2>/dev/null
else
    migrate_fails "$vm" 'layout' "the layout"
fi
if ((${#R_WHY[@]} == 0)); then
    ok "${TESTS[i]}"
    diag <"$out.stderr"
    fail_ok=1
else
    not_ok "${TESTS[i]}" "${R_WHY[@]}"
    cat "$out.stdout" "$out.stderr" 2>/dev/null | head -20 | diag
    pcd_dump_logs "# " "$vm-src" "$vm-dst"
fi
i=$((i + 1))

# Not paused: its vCPUs keep writing (CPU time grows), it is silent.
R_WHY=()
if ((fail_ok)) && pcd_guest_alive "$vm-src"; then
    source_runs_on "$vm"
    if ((${#R_WHY[@]} == 0)); then
        ok "${TESTS[i]}"
        echo "#   source guest used $R_CPU_MS ms CPU in the second after the failure"
    else
        not_ok "${TESTS[i]}" "${R_WHY[@]}"
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
else
    not_ok "${TESTS[i]}" "the failing migration did not run as expected, or the source guest is gone"
fi
i=$((i + 1))

# The same source guest, to a destination guest of the right size.
pcd_guest_stop "$vm-dst"
R_WHY=() R_LINE='' R_MS=0 R_SKIP=''
R_JSON=$out.json2
R_OUT=$out.err2
: >"$R_JSON"
if ((fail_ok)) && pcd_guest_alive "$vm-src" && pcd_ensure_daemons; then
    guest_args shmem "$SIZE" "$RATE" "$VCPUS" "$vm"
    # The second destination guest writes to fresh files.
    if pcd_guest_start "$vm-dst2" dst "${G_ARGS[@]}" --incoming 2>"$out.start2"; then
        t0=$(now_ms)
        pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --json \
            --mode hybrid >"$R_JSON" 2>"$R_OUT" &
        wait $!
        rc=$?
        R_MS=$(($(now_ms) - t0))
        ((rc == 0)) || R_WHY+=("postcopy-migrate exited with status $rc")
        R_LINE=$(pcd_wait_line "$(pcd_guest_out "$vm-dst2")" '^verify: ' \
            "${PCD_VERIFY_TIMEOUT:-20}" "$(pcd_guest_pid "$vm-dst2")")
        pages=$(($(pcd_size_bytes "$SIZE") / 4096))
        if [[ $R_LINE =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
            [ "${BASH_REMATCH[1]}" = "$pages" ] ||
                R_WHY+=("verify checked ${BASH_REMATCH[1]} pages, expected $pages")
            [ "${BASH_REMATCH[2]}" = 0 ] ||
                R_WHY+=("verify found ${BASH_REMATCH[2]} mismatching pages")
        else
            R_WHY+=("no or unexpected verify line: '$R_LINE'")
        fi
        sleep 0.2 & wait $!
        pcd_guest_alive "$vm-dst2" || R_WHY+=("the destination guest exited")
        check_mode hybrid
    else
        R_WHY+=("the second destination guest did not attach:")
        diag <"$out.start2"
    fi
    report "${TESTS[i]}" "$vm"
else
    not_ok "${TESTS[i]}" "the source guest did not survive the failed migration (or a daemon is down)"
fi
pcd_guest_stop "$vm-src"
pcd_guest_stop "$vm-dst2"
i=$((i + 1))

# The destination's VMM refuses the query it is asked at the Barrier, just
# before the pause (vmm_driver_ping()): the Barrier is refused, so the
# source fails the migration before pausing its VM, which runs on.
vm="vm-noanswer"
R_WHY=()
out=$PCD_TMP/migrate-$vm
DST_EXTRA=(--refuse-query)
if ! pcd_ensure_daemons || ! start_pair "$vm" shmem "$SIZE" "$RATE" "$VCPUS"; then
    R_WHY+=("setup failed")
    diag <"$PCD_TMP/start-$vm" 2>/dev/null
else
    migrate_fails "$vm" 'did not answer before the pause' \
        "a VMM that did not answer before the pause"
    source_runs_on "$vm"
fi
DST_EXTRA=()
if ((${#R_WHY[@]} == 0)); then
    ok "${TESTS[i]}"
    diag <"$out.stderr"
    echo "#   source guest used $R_CPU_MS ms CPU in the second after the failure"
else
    not_ok "${TESTS[i]}" "${R_WHY[@]}"
    cat "$out.stdout" "$out.stderr" 2>/dev/null | head -20 | diag
    pcd_dump_logs "# " "$vm-src" "$vm-dst"
fi
pcd_guest_stop "$vm-src"
pcd_guest_stop "$vm-dst"

exit $((failed > 0))
