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

exit $((failed > 0))
