#!/bin/bash
# test_stress.sh - the destination under pressure, between two "hosts"
# (network namespaces): many threads faulting on the same and neighbouring
# pages while the bulk stream delivers them, each page then written by the
# guest and checked again after a pause so that a page overwritten after
# its install is caught ("overwritten"); repeated with different seeds;
# guests made mostly of zero pages; a guest with several regions of
# different backings.  Prints TAP (tests/run-tests.sh runs it).
#
# Every case asserts: postcopy-migrate exits 0 and reports completed; the
# destination guest's verify line has the full page count, 0 mismatches
# and 0 overwritten.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

pcd_test_args "$@"

ROUNDS=${STRESS_ROUNDS:-3}
TESTS=()
for r in $(seq "$ROUNDS"); do
    TESTS+=("overlapping faults + writes, shmem postcopy, round $r")
done
TESTS+=(
    "overlapping faults + writes, anon hybrid"
    "mostly zero pages, anon postcopy"
    "three regions: shmem + anon + hugetlbfs, hybrid"
)


pcd_init "$build"
echo "1..${#TESTS[@]}"
pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
pcd_daemon_start src "$PCD_NS_SRC" "$PCD_IP_SRC" &&
    pcd_daemon_start dst "$PCD_NS_DST" "$PCD_IP_DST" ||
    skip_all "the daemons did not start"

# stress_case TITLE VM PAGES MODE SRC_ARGS... -- DST_ARGS...
stress_case() {
    local title=$1 vm=$2 pages=$3 mode=$4 line rc why=() src=() dst=()
    local out=$PCD_TMP/stress-$vm.out
    shift 4
    while [ $# -gt 0 ] && [ "$1" != -- ]; do src+=("$1"); shift; done
    shift
    dst=("$@")

    if ! pcd_guest_start "$vm-src" src --name "$vm" "${src[@]}" --verify \
        2>"$out.start" ||
        ! pcd_guest_start "$vm-dst" dst --name "$vm" "${dst[@]}" --incoming \
            2>>"$out.start"; then
        not_ok "$title" "a guest did not attach:"
        diag <"$out.start"
        pcd_guest_stop "$vm-src"
        pcd_guest_stop "$vm-dst"
        return
    fi
    sleep 0.3 & wait $!
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode "$mode" >"$out" 2>&1 &
    wait $!
    rc=$?
    ((rc == 0)) || why+=("postcopy-migrate exited with status $rc")
    grep -q '^status  *completed' "$out" || why+=("status is not completed")
    line=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify: ' 30 \
        "$(pcd_guest_pid "$vm-dst")")
    if [[ $line =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches,\ ([0-9]+)\ overwritten ]]; then
        [ "${BASH_REMATCH[1]}" = "$pages" ] ||
            why+=("verify checked ${BASH_REMATCH[1]} pages, expected $pages")
        [ "${BASH_REMATCH[2]}" = 0 ] ||
            why+=("${BASH_REMATCH[2]} pages differ from the source")
        [ "${BASH_REMATCH[3]}" = 0 ] ||
            why+=("${BASH_REMATCH[3]} pages were overwritten after install")
    else
        why+=("no usable verify line: '$line'")
    fi
    pcd_daemon_alive src || why+=("the source daemon died")
    pcd_daemon_alive dst || why+=("the destination daemon died")
    if ((${#why[@]} == 0)); then
        ok "$title"
        echo "#   $line"
        grep -E '^(total time|downtime|RAM moved|postcopy requests|fault latency) ' "$out" | diag
    else
        not_ok "$title" "${why[@]}"
        tail -n 20 "$out" | diag
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
    pcd_guest_stop "$vm-src"
    pcd_guest_stop "$vm-dst"
}

# 8 threads each touch every page in their own random order with bursts
# on neighbours, then write their share and check it after 200 ms.
HAMMER=(--verify-threads 8 --verify-overlap --verify-write)

for r in $(seq "$ROUNDS"); do
    common=(--backing shmem --size 64M --vcpus 4 --workload random
        --dirty-rate 64 --seed $((r * 7919)))
    stress_case "${TESTS[r - 1]}" "vm-stress$r" 16384 postcopy \
        "${common[@]}" -- "${common[@]}" "${HAMMER[@]}"
done

common=(--backing anon --size 64M --vcpus 4 --workload random --dirty-rate 64)
stress_case "${TESTS[ROUNDS]}" vm-stress-anon 16384 hybrid \
    "${common[@]}" -- "${common[@]}" "${HAMMER[@]}"

common=(--backing anon --size 64M --vcpus 2 --workload idle --fill-percent 5)
stress_case "${TESTS[ROUNDS + 1]}" vm-zero 16384 postcopy \
    "${common[@]}" -- "${common[@]}" --verify-threads 4 --verify-overlap

t=${TESTS[ROUNDS + 2]}
huge=$(pcd_hugepage_size)
if ! pcd_hugepages_reserve 16; then
    skip "$t" "$PCD_SKIP_REASON"
else
    regions=(--region shmem:32M --region anon:16M --region hugetlbfs:8M)
    pages=$((8192 + 4096 + 8 * 1048576 / huge))
    common=("${regions[@]}" --vcpus 2 --workload random --dirty-rate 32)
    stress_case "$t" vm-regions "$pages" hybrid \
        "${common[@]}" -- "${common[@]}" "${HAMMER[@]}"
fi
exit 0
