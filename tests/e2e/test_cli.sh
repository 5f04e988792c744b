#!/bin/bash
# test_cli.sh - what an operator sees first of each program: --version,
# --help in the user's locale (no "[OPTION?]"), the choices of every
# enumerated option, and the exit statuses.  Then, with two daemons in
# network namespaces (lib.sh) and postcopy-guest VMs, the operator's
# commands: list, migrate --no-wait --json (the id), status --id naming
# the VM, the source VM forgotten after success.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_cli.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
n=0 failed=0
version=$(sed -n 's/^#define POSTCOPYD_VERSION "\(.*\)"$/\1/p' \
    "$here/../../daemon/control/version.h")
progs=(postcopyd postcopy-migrate postcopy-guest)
# The tests with daemons, in the order they run.
TESTS=(
    "list shows each attached VM: name, pid, VMM, role, RAM"
    "list --json: query-vms with role and no migration yet"
    "migrate --no-wait --json prints the migration id"
    "status --id names the VM and the migration"
    "status --id --watch --json follows that migration to completed"
    "after success the source VM is forgotten and quits; the destination lists it as its source"
    "migrate --max-bandwidth caps the bulk stream; set max-bandwidth=0 lifts it"
    "set refuses a migration past its switchover, and unknown names"
    "set downtime-limit lets an unconverging precopy converge"
    "start-postcopy ends an unconverging precopy; the memory arrives intact"
    "a cap raised mid-round acts at once: the senders waiting re-book"
    "cancel interrupts a capped round at once; the source VM runs on"
    "metrics: Prometheus text counting the migrations and their bytes"
    "metrics: the destination's fault latency as a cumulative histogram"
)
echo "1..$((3 * ${#progs[@]} + 2 + ${#TESTS[@]}))"

# A UTF-8 locale: GLib prints "[OPTION…]" there, "[OPTION?]" only when
# the program never called setlocale() and runs in the C locale.
export LC_ALL=C.UTF-8

for p in "${progs[@]}"; do
    t="$p --version prints '$p $version' and exits 0"
    out=$("$build/$p" --version 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "$p $version" ]; then
        ok "$t"
    else
        not_ok "$t" "exit $rc, printed:" "$out"
    fi

    t="$p --help is in the user's locale (no '[OPTION?]')"
    out=$("$build/$p" --help 2>&1)
    if printf '%s\n' "$out" | grep -qF '[OPTION?]'; then
        not_ok "$t" "$(printf '%s\n' "$out" | grep -F '[OPTION?]')"
    else
        ok "$t"
    fi

    t="$p --help documents its exit statuses"
    if printf '%s\n' "$out" | grep -q '^Exit status:' &&
        printf '%s\n' "$out" | grep -qE '^ +2 +'; then
        ok "$t"
    else
        not_ok "$t" "no 'Exit status:' section with status 2 in --help"
    fi
done

# Every enumerated option names its choices where --help shows it.
t="every enumerated option of postcopyd and postcopy-migrate lists its choices"
why=()
for want in "--dirty-tracking=auto|async-wp|sync-wp|soft-dirty" \
    "--mode=precopy|hybrid|postcopy" "--postcopy-bulk=on|off"; do
    "$build/postcopy-migrate" migrate --help 2>&1 | grep -qF -- "$want" ||
        why+=("migrate --help has no '$want'")
done
"$build/postcopy-migrate" attach --help 2>&1 | grep -qF -- "--uffd=syscall|device" ||
    why+=("attach --help has no '--uffd=syscall|device'")
for want in "--tls=off|psk|x509" "--log-level=" "--prealloc=on|off"; do
    "$build/postcopyd" --help 2>&1 | grep -qF -- "$want" ||
        why+=("postcopyd --help has no '$want'")
done
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

t="postcopy-guest --help lists the choices of --backing and --workload"
out=$("$build/postcopy-guest" --help 2>&1)
if printf '%s\n' "$out" | grep -qF -- "--backing=anon|shmem|hugetlbfs" &&
    printf '%s\n' "$out" | grep -qF -- "--workload=idle|seq|random|hotset"; then
    ok "$t"
else
    not_ok "$t" "$(printf '%s\n' "$out" | grep -E -- '--(backing|workload)')"
fi

# ---------------------------------------------------------------- daemons

pcd_init "$build"
pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
pcd_ensure_daemons || fail_all "the daemons did not start"
echo "# hosts: $PCD_NS_SRC and $PCD_NS_DST, logs in $PCD_TMP"
export PCD_MIGRATE_TIMEOUT=60

# check NAME COMMAND...: ok when COMMAND succeeds, else not_ok with the
# reasons it left in WHY.
WHY=()
check() {
    local t=$1
    shift
    WHY=()
    "$@"
    if ((${#WHY[@]} == 0)); then ok "$t"; else not_ok "$t" "${WHY[@]}"; fi
}
# has FILE ERE WHAT: FILE has a line matching ERE, else WHAT joins WHY.
has() {
    local lines
    grep -qE -- "$2" "$1" && return 0
    mapfile -t lines < <(sed 's/^/  | /' "$1")
    WHY+=("$3" "${lines[@]}")
}

# A pair of VMs, vm1: source at src, incoming at dst (16 MiB of shmem).
pcd_guest_start vm1-src src --name vm1 --size 16M --workload random \
    --dirty-rate 4 --verify >/dev/null ||
    fail_all "the source guest did not attach"
pcd_guest_start vm1-dst dst --name vm1 --size 16M --incoming >/dev/null ||
    fail_all "the destination guest did not attach"
out=$PCD_TMP/cli-out

t_list() {
    local pid
    pid=$(pcd_guest_pid vm1-src)
    pcd_migrate src list >"$out" 2>&1 || WHY+=("list exited $?")
    has "$out" '^NAME +PID +VMM +ROLE +RAM +MIGRATION$' "no header line"
    has "$out" "^vm1 +$pid +attach channel +source +16\.0 MiB +-$" \
        "no line 'vm1 $pid attach channel source 16.0 MiB -'"
    pcd_migrate dst list >"$out" 2>&1 || WHY+=("list at dst exited $?")
    has "$out" "^vm1 +[0-9]+ +attach channel +destination +16\.0 MiB" \
        "the destination does not list vm1 as destination"
}
check "${TESTS[0]}" t_list

t_list_json() {
    pcd_migrate src list --json >"$out" 2>&1 || WHY+=("list --json exited $?")
    has "$out" '"name" : "vm1"' "no \"name\" : \"vm1\""
    has "$out" '"role" : "source"' "no \"role\" : \"source\""
    has "$out" '"ram" : 16777216' "no \"ram\" : 16777216"
    ! grep -q '"migration"' "$out" || WHY+=("a migration listed before any")
}
check "${TESTS[1]}" t_list_json

ID=
t_no_wait() {
    pcd_migrate src migrate --vm vm1 --to "$PCD_IP_DST:$PCD_PORT" \
        --mode hybrid --no-wait --json >"$out" 2>&1 ||
        WHY+=("migrate --no-wait exited $?")
    ID=$(sed -n 's/^ *"id" : "\([0-9a-f]\{32\}\)",\{0,1\}$/\1/p' "$out")
    [ -n "$ID" ] || has "$out" "^\$^" "no 32-digit \"id\" in:"
}
check "${TESTS[2]}" t_no_wait

t_status_id() {
    pcd_migrate src status --id "$ID" >"$out" 2>&1 || WHY+=("status exited $?")
    has "$out" '^vm +vm1 \(source, hybrid\)$' "no 'vm  vm1 (source, hybrid)'"
    has "$out" "^migration +$ID\$" "no 'migration  $ID'"
    pcd_migrate src status --id 0123456789abcdef0123456789abcdef \
        >"$out" 2>&1 && WHY+=("status of an unknown id exited 0")
    has "$out" 'no migration with id' "an unknown id is not refused as such"
}
check "${TESTS[3]}" t_status_id

t_watch() {
    pcd_migrate src status --id "$ID" --watch --json >"$out" 2>&1 ||
        WHY+=("status --watch exited $?")
    has "$out" '"status" : "completed"' "not completed"
    has "$out" "\"id\" : \"$ID\"" "another migration's result"
}
check "${TESTS[4]}" t_watch

t_forgotten() {
    local line
    line=$(pcd_wait_line "$(pcd_guest_out vm1-src)" '^postcopy-guest: quit' 10 \
        "$(pcd_guest_pid vm1-src)") || WHY+=("the source guest did not quit")
    pcd_migrate src list >"$out" 2>&1 || WHY+=("list exited $?")
    has "$out" '^no VM is attached$' "the source still lists a VM"
    pcd_migrate src migrate --vm vm1 --to "$PCD_IP_DST:$PCD_PORT" \
        >"$out" 2>&1 && WHY+=("a second migrate of vm1 was accepted")
    has "$out" "no VM named 'vm1' is attached" "not refused as unattached"
    pcd_migrate dst list >"$out" 2>&1 || WHY+=("list at dst exited $?")
    # It runs there now: a source, should it move on again.
    has "$out" "^vm1 .* source .* completed $ID\$" \
        "the destination does not list vm1 with its completed migration"
}
check "${TESTS[5]}" t_forgotten
pcd_guest_stop vm1-dst

# pair VM SIZE [guest args]: a source and an incoming guest named VM.
pair() {
    local vm=$1 size=$2
    shift 2
    pcd_guest_start "$vm-src" src --name "$vm" --size "$size" --verify "$@" \
        >/dev/null &&
        pcd_guest_start "$vm-dst" dst --name "$vm" --size "$size" --incoming \
            >/dev/null
}
# status_of VM PATH: one member of the VM's query-migrate now.
status_of() {
    pcd_migrate src status --vm "$1" --json >"$out.q" 2>&1
    pcd_json_get "$out.q" "$2"
}
# verified VM: the destination checked every page, none differ.
verified() {
    local line
    line=$(pcd_wait_line "$(pcd_guest_out "$1-dst")" '^verify: ' 20 \
        "$(pcd_guest_pid "$1-dst")")
    [[ $line =~ ^verify:\ [0-9]+\ pages\ checked,\ 0\ mismatches ]] ||
        WHY+=("destination verify: ${line:-no verify line}")
}
CAP=$((16 << 20))
ID2=

# 96 MiB at 16 MiB/s: about 6 s; uncapped, well under one.  The rate is
# the daemon's own: bytes sent and time since the start in one reply (the
# first 1 MiB run goes before any wait).
t_cap() {
    local sent ms rate
    pair vm2 96M --workload idle || { WHY+=("the guests did not attach"); return; }
    pcd_migrate src migrate --vm vm2 --to "$PCD_IP_DST:$PCD_PORT" \
        --mode precopy --max-bandwidth "$CAP" --no-wait --json >"$out" 2>&1 ||
        WHY+=("migrate exited $?")
    ID2=$(pcd_json_get "$out" id)
    sleep 2
    sent=$(status_of vm2 ram.transferred) ms=$(pcd_json_get "$out.q" total-time)
    [ "$(pcd_json_get "$out.q" status)" = active ] ||
        WHY+=("status $(pcd_json_get "$out.q" status) after 2 s, not active")
    rate=$(((${sent:-0} - (1 << 20)) * 1000 / ${ms:-1}))
    echo "# capped at $CAP B/s: $rate B/s over $ms ms"
    ((rate <= CAP * 11 / 10)) || WHY+=("$rate B/s with a cap of $CAP")
    ((rate >= CAP / 4)) || WHY+=("only $rate B/s with a cap of $CAP")
    pcd_migrate src set --id "$ID2" max-bandwidth=0 >"$out" 2>&1 ||
        WHY+=("set max-bandwidth=0 exited $?")
    has "$out" "max-bandwidth 0 bytes/s \\(no cap\\)" "set did not report the cap lifted"
    PCD_MIGRATE_TIMEOUT=5 pcd_migrate src status --id "$ID2" --watch \
        >"$out" 2>&1 || WHY+=("not completed 5 s after the cap was lifted")
    verified vm2
}
check "${TESTS[6]}" t_cap

t_set_refused() {
    pcd_migrate src set --id "$ID2" max-bandwidth=1M >"$out" 2>&1 &&
        WHY+=("set on a completed migration exited 0")
    has "$out" "only a source before its switchover" "not refused as completed"
    pcd_migrate src set --id "$ID2" speed=1 >"$out" 2>&1
    (($? == 2)) || WHY+=("set speed=1 did not exit 2")
    pcd_guest_stop vm2-dst
}
check "${TESTS[7]}" t_set_refused

# unconverging VM MODE: a pair whose precopy cannot end by itself: a
# downtime limit of 0, rounds and time without bound, and the guest
# rewriting its 16 MiB at 32 MiB/s while the link is capped at 16 (a
# round takes about a second: time for the guest to write).  Its id in ID.
ID=
unconverging() {
    pair "$1" 16M --workload random --dirty-rate 32 ||
        { WHY+=("the guests did not attach"); return 1; }
    pcd_migrate src migrate --vm "$1" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode "$2" --downtime-limit 0 --max-rounds 100000 \
        --max-precopy-time 600000 --max-bandwidth "$CAP" --no-wait --json \
        >"$out" 2>&1 || WHY+=("migrate exited $?")
    ID=$(pcd_json_get "$out" id)
    sleep 3
    [ "$(status_of "$1" status)" = active ] ||
        { WHY+=("not in precopy after 3 s: $(pcd_json_get "$out.q" status)"); return 1; }
    (($(pcd_json_get "$out.q" rounds) >= 2)) ||
        WHY+=("$(pcd_json_get "$out.q" rounds) rounds in 3 s")
}

t_downtime() {
    unconverging vm3 precopy || return
    pcd_migrate src set --vm vm3 downtime-limit=60000 >"$out" 2>&1 ||
        WHY+=("set downtime-limit exited $?")
    PCD_MIGRATE_TIMEOUT=10 pcd_migrate src status --id "$ID" --watch --json \
        >"$out" 2>&1 || WHY+=("not completed 10 s after the limit was raised")
    grep -q "migration $ID: precopy ends after round [0-9]*: .*expected downtime" \
        "$(pcd_daemon_log src)" || WHY+=("the daemon did not end precopy by the limit")
    verified vm3
    pcd_guest_stop vm3-dst
}
check "${TESTS[8]}" t_downtime

t_start_postcopy() {
    unconverging vm4 precopy || return
    pcd_migrate src start-postcopy --id "$ID" >"$out" 2>&1 ||
        WHY+=("start-postcopy exited $?")
    PCD_MIGRATE_TIMEOUT=10 pcd_migrate src status --id "$ID" --watch --json \
        >"$out" 2>&1 || WHY+=("not completed 10 s after start-postcopy")
    grep -q "migration $ID: precopy ends after round [0-9]*: postcopy requested" \
        "$(pcd_daemon_log src)" || WHY+=("the daemon did not log postcopy requested")
    verified vm4
    pcd_guest_stop vm4-dst
}
check "${TESTS[9]}" t_start_postcopy

# crawling VM: a pair migrating at 64 KiB/s (a 1 MiB run books 16 s).
crawling() {
    pair "$1" 16M --workload idle || { WHY+=("the guests did not attach"); return 1; }
    pcd_migrate src migrate --vm "$1" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode precopy --max-bandwidth 65536 --no-wait --json >"$out" 2>&1 ||
        WHY+=("migrate exited $?")
    ID=$(pcd_json_get "$out" id)
    sleep 1
}

t_raise() {
    crawling vm5 || return
    pcd_migrate src set --id "$ID" max-bandwidth=256M >"$out" 2>&1 ||
        WHY+=("set max-bandwidth=256M exited $?")
    PCD_MIGRATE_TIMEOUT=6 pcd_migrate src status --id "$ID" --watch \
        >"$out" 2>&1 || WHY+=("not completed 6 s after the cap was raised")
    verified vm5
    pcd_guest_stop vm5-dst
}
check "${TESTS[10]}" t_raise

t_cancel() {
    local line
    crawling vm6 || return
    pcd_migrate src cancel --id "$ID" >"$out" 2>&1 || WHY+=("cancel exited $?")
    PCD_MIGRATE_TIMEOUT=6 pcd_migrate src status --id "$ID" --watch \
        >"$out" 2>&1 && WHY+=("status --watch of a cancelled migration exited 0")
    has "$out" '^status +cancelled$' "not cancelled within 6 s"
    pcd_migrate src list >"$out" 2>&1
    has "$out" "^vm6 .* source .* cancelled $ID\$" "vm6 is not listed, cancelled"
    line=$(tail -n 1 "$(pcd_guest_out vm6-src)")
    pcd_guest_alive vm6-src || WHY+=("the source guest exited: $line")
    pcd_guest_stop vm6-src
    pcd_guest_stop vm6-dst
}
check "${TESTS[11]}" t_cancel

# Five migrations left src for dst above and completed, one was cancelled.
t_metrics() {
    local bad
    pcd_migrate src metrics >"$out" 2>&1 || WHY+=("metrics exited $?")
    bad=$(grep -vE '^(# (HELP|TYPE) postcopyd_[a-z_]+ .+|postcopyd_[a-z_]+(\{(outcome="[a-z]+"|le="[^"]+")\})? [0-9]+(\.[0-9]+)?)$' "$out")
    [ -z "$bad" ] || WHY+=("not Prometheus text: $bad")
    has "$out" '^postcopyd_migrations_started_total 6$' "not 6 started"
    has "$out" '^postcopyd_migrations_total\{outcome="completed"\} 5$' "not 5 completed"
    has "$out" '^postcopyd_migrations_total\{outcome="cancelled"\} 1$' "not 1 cancelled"
    has "$out" '^postcopyd_migrations_active 0$' "some still active"
    has "$out" '^postcopyd_bytes_sent_total [1-9][0-9]{7,}$' "under 10 MB sent"
    has "$out" '^postcopyd_last_downtime_seconds 0\.[0-9]*[1-9]' "no last downtime"
    pcd_migrate dst metrics --json >"$out" 2>&1 || WHY+=("metrics --json exited $?")
    [ "$(pcd_json_get "$out" migrations.completed)" = 5 ] ||
        WHY+=("the destination counts $(pcd_json_get "$out" migrations.completed) completed")
    (($(pcd_json_get "$out" bytes-received) > 10000000)) ||
        WHY+=("the destination received $(pcd_json_get "$out" bytes-received) bytes")
}
check "${TESTS[12]}" t_metrics

# The guests at dst faulted on pages still at src (hybrid, postcopy).
t_latency() {
    local prev=0 v count inf
    pcd_migrate dst metrics >"$out" 2>&1 || WHY+=("metrics exited $?")
    has "$out" '^# TYPE postcopyd_fault_latency_seconds histogram$' "no histogram TYPE"
    count=$(sed -n 's/^postcopyd_fault_latency_seconds_count //p' "$out")
    inf=$(sed -n 's/^postcopyd_fault_latency_seconds_bucket{le="+Inf"} //p' "$out")
    ((${count:-0} > 0)) || WHY+=("no fault counted (count '${count}')")
    [ "$inf" = "$count" ] || WHY+=("+Inf bucket $inf, count $count")
    [ "$(grep -c '^postcopyd_fault_latency_seconds_bucket{le="[0-9.e-]*"} ' "$out")" = 21 ] ||
        WHY+=("not the 21 bounds 16 us .. 2^24 us")
    for v in $(sed -n 's/^postcopyd_fault_latency_seconds_bucket{le="[^"]*"} //p' "$out"); do
        ((v >= prev)) || WHY+=("bucket counts not cumulative: $v after $prev")
        prev=$v
    done
    has "$out" '^postcopyd_fault_latency_seconds_sum 0*[0-9]\.[0-9]+$' "no sum"
}
check "${TESTS[13]}" t_latency

exit $((failed > 0))
