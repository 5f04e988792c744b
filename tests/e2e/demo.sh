#!/bin/bash
# demo.sh - `make demo`: live-migrate a running synthetic VM between two
# "hosts" (network namespaces joined by a veth pair) with postcopyd, and
# prove the destination's memory is the source's.
#
#   make demo
#   make demo DEMO_FLAGS='--mode postcopy --backing anon --size 512M'
#   tests/e2e/demo.sh --build build --backing hugetlbfs --size 256M
#
# Needs root (namespaces, userfaultfd).  Everything it starts is stopped and
# removed on exit, also on Ctrl-C; --keep keeps the logs.
set -u
# shellcheck disable=SC2015,SC2119

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

build=${POSTCOPYD_BUILD:-build}
backing=shmem
size=1G
mode=hybrid
workload=random
dirty_rate=256
vcpus=2
warmup=1

usage() {
    cat <<EOF
Usage: $0 [options]
  --build DIR         build dir with postcopyd, postcopy-guest, postcopy-migrate [$build]
  --backing KIND      guest RAM: anon, shmem or hugetlbfs [$backing]
  --size SIZE         guest RAM, e.g. 512M, 1G [$size]
  --mode MODE         precopy, hybrid or postcopy [$mode]
  --workload KIND     idle, seq, random or hotset [$workload]
  --dirty-rate MIB_S  guest write rate over all vCPUs, 0 = flat out [$dirty_rate]
  --vcpus N           guest vCPU threads [$vcpus]
  --warmup SECONDS    how long the workload runs before the migration [$warmup]
  --keep              keep the logs (daemons, guests) and print where
EOF
}

need_arg() {
    [ $# -ge 2 ] && [ -n "$2" ] || { echo "demo: $1 needs a value" >&2; usage >&2; exit 2; }
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build | --backing | --size | --mode | --workload | --dirty-rate | --vcpus | --warmup)
        need_arg "$@"
        case "$1" in
        --build) build=$2 ;;
        --backing) backing=$2 ;;
        --size) size=$2 ;;
        --mode) mode=$2 ;;
        --workload) workload=$2 ;;
        --dirty-rate) dirty_rate=$2 ;;
        --vcpus) vcpus=$2 ;;
        --warmup) warmup=$2 ;;
        esac
        shift 2
        ;;
    --build=* | --backing=* | --size=* | --mode=* | --workload=* | \
        --dirty-rate=* | --vcpus=* | --warmup=*)
        opt=${1%%=*}
        set -- "$opt" "${1#*=}" "${@:2}"
        ;;
    --keep) export PCD_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

case "$backing" in anon | shmem | hugetlbfs) ;; *)
    echo "demo: --backing: '$backing' is not anon, shmem or hugetlbfs" >&2; exit 2 ;;
esac
case "$mode" in precopy | hybrid | postcopy) ;; *)
    echo "demo: --mode: '$mode' is not precopy, hybrid or postcopy" >&2; exit 2 ;;
esac
bytes=$(pcd_size_bytes "$size") && ((bytes > 0)) ||
    { echo "demo: --size: '$size' is not a size (e.g. 512M, 1G)" >&2; exit 2; }

step() { printf '\n== %s\n' "$*"; }
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    pcd_dump_logs >&2
    exit 1
}

pcd_init "$build"
pcd_preflight || { echo "demo: cannot run: $PCD_SKIP_REASON" >&2; exit 1; }

page=$(pcd_page_size "$backing")
((page > 0)) || { echo "demo: no huge page size reported by the kernel" >&2; exit 1; }
((bytes % page == 0)) || { echo "demo: --size $size is not a multiple of the $backing page size ($page bytes)" >&2; exit 1; }
pages=$((bytes / page))
if [ "$backing" = hugetlbfs ]; then
    # Source and destination guests each hold the whole RAM.
    pcd_hugepages_reserve $((2 * pages)) ||
        { echo "demo: cannot run with hugetlbfs: $PCD_SKIP_REASON" >&2; exit 1; }
fi

vm=demo-vm
if ((page >= 1 << 20)); then page_h="$((page >> 20)) MiB"; else page_h="$((page >> 10)) KiB"; fi
printf 'postcopyd demo: a %s %s guest (%d pages of %s), %s writes at %s MiB/s on %s vCPUs,\n' \
    "$size" "$backing" "$pages" "$page_h" "$workload" "$dirty_rate" "$vcpus"
printf 'migrated in %s mode from host A to host B.\n' "$mode"

step "two hosts: network namespaces joined by a veth pair"
pcd_hosts_up || fail "$PCD_SKIP_REASON"
pcd_daemon_start src "$PCD_NS_SRC" "$PCD_IP_SRC" || fail "source postcopyd did not start"
pcd_daemon_start dst "$PCD_NS_DST" "$PCD_IP_DST" || fail "destination postcopyd did not start"
printf '   host A (source)      %-16s %-14s postcopyd pid %s\n' "$PCD_NS_SRC" "$PCD_IP_SRC" "$(pcd_daemon_pid src)"
printf '   host B (destination) %-16s %-14s postcopyd pid %s\n' "$PCD_NS_DST" "$PCD_IP_DST" "$(pcd_daemon_pid dst)"

step "guests"
common=(--name "$vm" --backing "$backing" --size "$size" --vcpus "$vcpus"
    --workload "$workload" --dirty-rate "$dirty_rate")
pcd_guest_start src-guest src "${common[@]}" --verify ||
    fail "the source guest did not attach"
pcd_guest_start dst-guest dst "${common[@]}" --incoming ||
    fail "the destination guest did not attach"
printf '   host A: guest %s running, pid %s (pages digested at the switchover: --verify)\n' \
    "$vm" "$(pcd_guest_pid src-guest)"
printf '   host B: guest %s waiting for its memory, pid %s (--incoming)\n' \
    "$vm" "$(pcd_guest_pid dst-guest)"
printf '   letting the workload run for %s s\n' "$warmup"
sleep "$warmup" & wait $!

step "migrate: postcopy-migrate migrate --vm $vm --to $PCD_IP_DST:$PCD_PORT --mode $mode"
# stdout (the stats table) is kept too; progress goes to stderr, live.
summary=$PCD_TMP/migrate.out
(
    PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-300} \
        pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode "$mode" | tee "$summary"
    exit "${PIPESTATUS[0]}"
) &
wait $!
rc=$?
if ((rc != 0)); then
    # Still worth knowing: did the destination end up with the right memory?
    line=$(pcd_wait_line "$(pcd_guest_out dst-guest)" '^verify: ' 5 \
        "$(pcd_guest_pid dst-guest)") &&
        echo "   (destination guest nevertheless reported: $line)"
    fail "postcopy-migrate exited with status $rc"
fi

# Faults are served on host B: its daemon has the latency and blocktime.
faults=$(pcd_migrate dst status 2>/dev/null |
    awk '/^(fault latency|latency histogram|vCPU blocktime) / { on = 1; print; next }
        /^[^ ]/ { on = 0 }
        on')
# Only when the source's table above did not already include them.
if [ -n "$faults" ] && ! grep -qE '^(latency histogram|vCPU blocktime) ' "$summary"; then
    step "host B: postcopy faults, as its daemon saw them (postcopy-migrate status)"
    printf '%s\n' "$faults"
fi

step "verdict"
verify_timeout=$((30 + 30 * ((bytes + (1 << 30) - 1) >> 30)))
line=$(pcd_wait_line "$(pcd_guest_out dst-guest)" '^verify: ' "$verify_timeout" \
    "$(pcd_guest_pid dst-guest)") ||
    fail "the destination guest printed no verify line within ${verify_timeout} s"
echo "   destination guest: $line"
if [[ $line =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
    checked=${BASH_REMATCH[1]} mismatches=${BASH_REMATCH[2]}
else
    fail "cannot read the verify line: $line"
fi
((mismatches == 0)) || fail "$mismatches of $checked pages differ from the source at the switchover"
((checked == pages)) || fail "only $checked of $pages pages were checked"

cpu0=$(pcd_cpu_ms "$(pcd_guest_pid dst-guest)")
sleep 1 & wait $!
cpu1=$(pcd_cpu_ms "$(pcd_guest_pid dst-guest)")
pcd_guest_alive dst-guest && [ -n "$cpu0" ] && [ -n "$cpu1" ] ||
    fail "the destination guest exited after the migration"
if [ -s "$(pcd_guest_err dst-guest)" ]; then
    fail "the destination guest reported errors"
fi
printf '   destination guest still running 1 s later (pid %s, %d ms of CPU in that second)\n' \
    "$(pcd_guest_pid dst-guest)" $((cpu1 - cpu0))

printf '\nverified: %d pages identical\n' "$checked"
