#!/bin/bash
# test_rdma_double.sh - the RDMA engine's data path end to end, on the
# test double of the NIC (transport rdma-test-double, transport/rdma_double.c):
# these machines have no RDMA device, so the double stands in for it, and
# only for it: the region table exchange, the READ queue and credits, the
# destination's reader thread and precopy rounds, the source's declared
# rounds and the control messages are the real code.  The double's READ is
# a process_vm_readv of the source daemon, which both daemons here can do:
# two network namespaces on one machine, one pid namespace, root.
#
# Real daemons, real userfaultfd, postcopy-guest VMs writing during the
# migration, every page compared at the destination (--verify).  Each case
# also checks, from query-migrate on both daemons, that the pages of
# shmem / hugetlbfs regions moved by READ and not in frames (a pass must
# not be possible without READs), and that anonymous RAM still travels in
# frames in the same migration.  Then a READ failure injected by the
# double (POSTCOPYD_RDMA_DOUBLE_FAIL_READ): in precopy the migration fails
# and the source VM runs on; in postcopy both sides pause and recover, the
# rest moving in frames.
#
# Prints TAP; run by tests/run-tests.sh or by hand:
#   tests/e2e/test_rdma_double.sh --build build [--keep]
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

pcd_test_args "$@"

RATE=32
export PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-30}
# The double exists only with this set (docs/rdma.md); the daemons inherit it.
export POSTCOPYD_TEST_DOUBLES=1
TESTS=(
    "postcopy, bulk off: every fault on shmem is one READ, anon faults are frame requests"
    "postcopy: shmem in batched READs, anon streamed in frames"
    "hybrid: declared rounds and the rest READ, no page in frames"
    "precopy: every round's declared pages READ, no page in frames"
    "hugetlbfs regions in the migrations above"
    "precopy with a failing READ: fails with the READ's reason, the source VM runs on"
    "postcopy with a failing READ: both sides pause and recover in frames, memory intact"
)

pcd_init "$build"
echo "1..${#TESTS[@]}"

pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"

XPORT=(--transport rdma-test-double)
if ! pcd_daemon_start src "$PCD_NS_SRC" "$PCD_IP_SRC" "${XPORT[@]}"; then
    grep -q "needs an RDMA build" "$(pcd_daemon_log src)" &&
        skip_all "this build has no RDMA (configure --disable-rdma or no rdma-core packages)"
    fail_all "the source daemon did not start"
fi
pcd_daemon_start dst "$PCD_NS_DST" "$PCD_IP_DST" "${XPORT[@]}" ||
    fail_all "the destination daemon did not start"

# Huge pages for the hugetlbfs region of every guest (both ends), if any.
HP_REASON=
HP_SIZE=$(pcd_hugepage_size)
if pcd_hugepages_reserve 16; then
    HUGE=(--region "hugetlbfs:$((4 * HP_SIZE >> 20))M")
    HUGE_PAGES=4
else
    HP_REASON=$PCD_SKIP_REASON
    HUGE=()
    HUGE_PAGES=0
fi
SHMEM_PAGES=4096 # shmem:16M
ANON_PAGES=2048  # anon:8M

num() { local v; v=$(pcd_json_get "$1" "$2"); echo "${v:-0}"; }

R_WHY=()
expect() { (($1)) 2>/dev/null || R_WHY+=("$2"); }

# run VM DST_DAEMON MODE "REGION ARGS" MIGRATE_ARGS...: a source guest with
# --verify and an incoming one, migrated with --json.  Sets R_WHY (common
# checks: completed, every page verified), R_SRC / R_DST (query-migrate of
# each daemon after it), R_PAGES (pages of the guest).
run() {
    local vm=$1 dst=$2 mode=$3 regions=$4 rc line status
    shift 4
    local -a args
    read -ra args <<<"$regions"
    R_WHY=()
    R_SRC=$PCD_TMP/$vm.src.json
    R_DST=$PCD_TMP/$vm.dst.json
    local common=(--name "$vm" "${args[@]}" --vcpus 2 --workload random
        --dirty-rate "$RATE")
    if ! pcd_guest_start "$vm-src" src "${common[@]}" --verify ||
        ! pcd_guest_start "$vm-dst" "$dst" "${common[@]}" --incoming; then
        R_WHY+=("a guest did not attach")
        return
    fi
    R_PAGES=$(sed -n 's/^postcopy-guest: ready .* pages=\([0-9]*\).*/\1/p' \
        "$(pcd_guest_out "$vm-src")")
    pcd_wait_prealloc "$dst" "$vm" 30 >/dev/null ||
        R_WHY+=("the destination did not preallocate the guest's RAM")
    sleep 0.3 & wait $!
    R_CLOSED0=$(closed_links "$dst")
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode "$mode" "$@" --json >"$R_SRC" 2>"$PCD_TMP/$vm.err" &
    wait $!
    rc=$?
    status=$(pcd_json_get "$R_SRC" status)
    R_RC=$rc R_STATUS=$status
    pcd_migrate "$dst" status --vm "$vm" --json >"$R_DST" 2>&1
}

# The destination guest compared every page with the source's digests.
check_verify() {
    local vm=$1 line
    line=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify: ' 20 \
        "$(pcd_guest_pid "$vm-dst")")
    if [[ $line =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
        expect "${BASH_REMATCH[1]} == R_PAGES" "verify checked ${BASH_REMATCH[1]} of $R_PAGES pages"
        expect "${BASH_REMATCH[2]} == 0" "verify found ${BASH_REMATCH[2]} mismatching pages"
    else
        R_WHY+=("no verify line from the destination guest (got '$line')")
    fi
}

check_completed() {
    expect "R_RC == 0" "postcopy-migrate exited with $R_RC"
    [ "$R_STATUS" = completed ] || R_WHY+=("status '$R_STATUS', expected completed")
    check_verify "$1"
}

# Pages the source sent in frames (its ram.pages counts declared READs too).
frames() {
    echo $(($(num "$R_SRC" ram.pages) + $(num "$R_SRC" ram.zero-pages) -
        $(num "$R_SRC" ram.pages-read)))
}

closed_links() { grep -c 'RDMA test double: link .* closed: ' "$(pcd_daemon_log "$1")"; }

# The double's own count of the READs it served in this run's link, from
# its last line (written at the session's teardown, maybe after the CLI
# returned: waited for).
double_reads() {
    local end=$((SECONDS + 5))
    while (($(closed_links "$1") <= R_CLOSED0)) && ((SECONDS < end)); do
        sleep 0.1
    done
    (($(closed_links "$1") > R_CLOSED0)) || return 0
    grep -o 'closed: [0-9]* READs' "$(pcd_daemon_log "$1")" | tail -n 1 |
        grep -o '[0-9]*'
}

report() {
    local title=$1 vm=$2 dst=$3
    if ((${#R_WHY[@]} == 0)); then
        ok "$title"
    else
        not_ok "$title" "${R_WHY[@]}"
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
    echo "#   frames $(frames), src pages-read $(num "$R_SRC" ram.pages-read)," \
        "dst pages-read $(num "$R_DST" ram.pages-read) fault-reads" \
        "$(num "$R_DST" ram.fault-reads), READs by the double $(double_reads "$dst")," \
        "downtime $(printf %.1f "$(num "$R_SRC" downtime)") ms," \
        "total $(num "$R_SRC" total-time) ms"
    pcd_guest_stop "$vm-src"
    pcd_guest_stop "$vm-dst"
}

READABLE=$((SHMEM_PAGES + HUGE_PAGES))

# 1. Faults only: each readable page is one fault, one READ.
t=${TESTS[0]}
run vm-faults dst postcopy "--region shmem:16M --region anon:8M ${HUGE[*]}" \
    --postcopy-bulk off
check_completed vm-faults
expect "$(num "$R_DST" ram.pages-read) == READABLE" \
    "the destination READ $(num "$R_DST" ram.pages-read) pages, the readable regions have $READABLE"
expect "$(num "$R_DST" ram.fault-reads) == READABLE" \
    "$(num "$R_DST" ram.fault-reads) faults served by a READ, expected $READABLE"
expect "$(frames) == ANON_PAGES" "$(frames) pages in frames, the anon region has $ANON_PAGES"
expect "$(num "$R_DST" ram.postcopy-requests) == ANON_PAGES" \
    "$(num "$R_DST" ram.postcopy-requests) frame requests, expected one per anon page ($ANON_PAGES)"
report "$t" vm-faults dst

# 2. Postcopy bulk: batched READs (fewer READs than pages), anon streamed.
t=${TESTS[1]}
run vm-bulk dst postcopy "--region shmem:16M --region anon:8M ${HUGE[*]}"
check_completed vm-bulk
expect "$(num "$R_DST" ram.pages-read) == READABLE" \
    "the destination READ $(num "$R_DST" ram.pages-read) pages, the readable regions have $READABLE"
# Every anon page streamed once; a fault on one being streamed sends it twice.
reqs=$(num "$R_SRC" ram.postcopy-requests)
expect "$(frames) >= ANON_PAGES && $(frames) <= ANON_PAGES + reqs" \
    "$(frames) pages in frames, the anon region has $ANON_PAGES and $reqs were requested"
n_reads=$(double_reads dst)
expect "${n_reads:-0} > 0 && ${n_reads:-0} < READABLE" \
    "the double served ${n_reads:-no} READs for $READABLE pages: not batched"
report "$t" vm-bulk dst

# 3-4. Hybrid and precopy, file-backed RAM only: nothing may go in frames.
t=${TESTS[2]}
run vm-hybrid dst hybrid "--region shmem:16M ${HUGE[*]}"
check_completed vm-hybrid
expect "$(frames) == 0" "$(frames) pages in frames, expected none"
expect "$(num "$R_DST" ram.pages-read) >= READABLE" \
    "the destination READ $(num "$R_DST" ram.pages-read) pages, fewer than the $READABLE readable"
expect "$(num "$R_SRC" ram.pages-read) > 0" "the source declared no read round"
report "$t" vm-hybrid dst

t=${TESTS[3]}
run vm-pre dst precopy "--region shmem:16M ${HUGE[*]}"
check_completed vm-pre
expect "$(frames) == 0" "$(frames) pages in frames, expected none"
expect "$(num "$R_SRC" ram.pages-read) >= READABLE" \
    "the source's rounds declared $(num "$R_SRC" ram.pages-read) pages, fewer than the $READABLE readable"
expect "$(num "$R_SRC" ram.pages-read) == $(num "$R_DST" ram.pages-read)" \
    "declared $(num "$R_SRC" ram.pages-read) pages, the destination READ $(num "$R_DST" ram.pages-read)"
report "$t" vm-pre dst

t=${TESTS[4]}
if ((HUGE_PAGES)); then
    ok "$t"
    echo "#   a hugetlbfs region of $HUGE_PAGES pages of $((HP_SIZE >> 20)) MiB was in each guest above"
else
    skip "$t" "$HP_REASON"
fi

# 5. A failing READ in precopy: the 40th READ of the link fails.
pcd_stop_pid "$(pcd_daemon_pid dst)"
POSTCOPYD_RDMA_DOUBLE_FAIL_READ=40 pcd_daemon_start dstfail "$PCD_NS_DST" \
    "$PCD_IP_DST" "${XPORT[@]}" || fail_all "the failing destination did not start"
t=${TESTS[5]}
run vm-fail dstfail precopy "--region shmem:16M --region anon:8M"
expect "R_RC == 1" "postcopy-migrate exited with $R_RC, expected 1"
[ "$R_STATUS" = failed ] || R_WHY+=("status '$R_STATUS', expected failed")
grep -q '"error-desc" : ".*READ link.*RDMA READ: the peer stopped answering' "$R_SRC" ||
    R_WHY+=("error-desc does not give the READ's reason: $(pcd_json_get "$R_SRC" error-desc)")
cpu0=$(pcd_cpu_ms "$(pcd_guest_pid vm-fail-src)")
sleep 1 & wait $!
cpu1=$(pcd_cpu_ms "$(pcd_guest_pid vm-fail-src)")
pcd_guest_alive vm-fail-src && [ -n "$cpu0" ] && [ -n "$cpu1" ] &&
    ((cpu1 - cpu0 >= 10)) || R_WHY+=("the source guest is not running its workload after the failure")
pcd_daemon_alive src || R_WHY+=("the source daemon died")
pcd_daemon_alive dstfail || R_WHY+=("the destination daemon died")
report "$t" vm-fail dstfail
echo "#   $(pcd_json_get "$R_SRC" error-desc)"

# 6. A failing READ in postcopy: pause, recover in frames, all pages intact.
t=${TESTS[6]}
run vm-pause dstfail postcopy "--region shmem:16M --region anon:8M" \
    --postcopy-bulk off
check_completed vm-pause
grep -q "recovered from: .*READ link: RDMA READ" "$(pcd_daemon_log src)" ||
    R_WHY+=("the source did not say it recovered from the READ failure")
grep -q "recovered from: READ link: RDMA READ" "$(pcd_daemon_log dstfail)" ||
    R_WHY+=("the destination did not say it recovered from the READ failure")
expect "$(num "$R_DST" ram.pages-read) > 0 && $(num "$R_DST" ram.pages-read) < SHMEM_PAGES" \
    "$(num "$R_DST" ram.pages-read) pages READ: expected some, then frames after the pause"
report "$t" vm-pause dstfail

exit $((failed > 0))
