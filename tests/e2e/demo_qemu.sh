#!/bin/bash
# demo_qemu.sh - `make demo`: live-migrate a real, unmodified QEMU VM (TCG,
# the test guest of tools/testvm) between two "hosts" (network namespaces
# joined by a veth pair) with postcopyd, and prove the guest goes on at the
# destination without losing a single write.
#
#   make demo
#   make demo DEMO_FLAGS='--mode postcopy --backing hugetlbfs --size 512M'
#   tests/e2e/demo_qemu.sh --build build --backing shm --share 80
#
# The guest rewrites --share percent of its RAM pass after pass and checks,
# at each pass, every page the previous one wrote; it prints "pass N errors
# E" on its serial port.  The verdict reads that stream across both QEMUs.
# Needs root (namespaces, userfaultfd).  Everything it starts is stopped and
# removed on exit, also on Ctrl-C; --keep keeps the logs.
# shellcheck disable=SC2015,SC2119
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/lib/qemu.sh
. "$here/../lib/qemu.sh"

build=${POSTCOPYD_BUILD:-build}
backing=memfd
size=1G
mode=hybrid
share=50
warmup=2
after=50 # passes the destination guest must run after the switchover

usage() {
    cat <<EOF
Usage: $0 [options]
  --build DIR         build dir with postcopyd, postcopy-migrate, testvm/testvm.elf [$build]
  --backing KIND      guest RAM: memfd, shm (a /dev/shm file) or hugetlbfs [$backing]
  --size SIZE         guest RAM, e.g. 512M, 1G [$size]
  --mode MODE         precopy, hybrid or postcopy [$mode]
  --share PERCENT     share of its RAM the guest rewrites at every pass [$share]
  --warmup SECONDS    how long the guest runs attached before the migration [$warmup]
  --keep              keep the logs (daemons, QEMUs' serial output) and print where
EOF
}

need_arg() {
    [ $# -ge 2 ] && [ -n "$2" ] || { echo "demo: $1 needs a value" >&2; usage >&2; exit 2; }
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build | --backing | --size | --mode | --share | --warmup)
        need_arg "$@"
        case "$1" in
        --build) build=$2 ;;
        --backing) backing=$2 ;;
        --size) size=$2 ;;
        --mode) mode=$2 ;;
        --share) share=$2 ;;
        --warmup) warmup=$2 ;;
        esac
        shift 2
        ;;
    --build=* | --backing=* | --size=* | --mode=* | --share=* | --warmup=*)
        opt=${1%%=*}
        set -- "$opt" "${1#*=}" "${@:2}"
        ;;
    --keep) export PCD_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

case "$backing" in memfd | shm | hugetlbfs) ;; *)
    echo "demo: --backing: '$backing' is not memfd, shm or hugetlbfs" >&2; exit 2 ;;
esac
case "$mode" in precopy | hybrid | postcopy) ;; *)
    echo "demo: --mode: '$mode' is not precopy, hybrid or postcopy" >&2; exit 2 ;;
esac
[[ $share =~ ^[0-9]+$ ]] && ((share <= 100)) ||
    { echo "demo: --share: '$share' is not a percentage (0-100)" >&2; exit 2; }
[[ $warmup =~ ^[0-9]+([.][0-9]+)?$ ]] ||
    { echo "demo: --warmup: '$warmup' is not a number of seconds" >&2; exit 2; }
bytes=$(pcd_size_bytes "$size") && ((bytes > 0)) ||
    { echo "demo: --size: '$size' is not a size (e.g. 512M, 1G)" >&2; exit 2; }
((bytes % (1 << 20) == 0)) && ((bytes >= 16 << 20)) ||
    { echo "demo: --size $size: QEMU needs a whole number of MiB, 16M or more" >&2; exit 2; }
mem=$((bytes >> 20)) # MiB, for QEMU's -m

export POSTCOPYD_BUILD=$build
step() { printf '\n== %s\n' "$*"; }
# show ARGS...: a command line as a reader can copy it.
show() {
    local a out=""
    for a in "$@"; do
        if [[ -n $a && $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
            out+=" $a"
        else
            out+=" '${a//\'/\'\\\'\'}'"
        fi
    done
    printf '   $%s\n' "$out"
}

pcd_init "$build"
pcd_preflight || { echo "demo: cannot run: $PCD_SKIP_REASON" >&2; exit 1; }
command -v "$QEMU_BIN" >/dev/null ||
    { echo "demo: $QEMU_BIN not installed (./configure --install-deps installs qemu-system-x86)" >&2; exit 1; }
[ -r "$(qemu_testvm)" ] || { echo "demo: $(qemu_testvm) not built (make)" >&2; exit 1; }
command -v socat >/dev/null || command -v python3 >/dev/null ||
    { echo "demo: needs socat (or python3) to talk to QEMU's monitor" >&2; exit 1; }

qdir=$PCD_TMP/qemu
mkdir -p "$qdir"
serial() { echo "$qdir/$1.serial"; }
qmp() { echo "$qdir/$1.qmp"; }
hugetlbfs=
cleanup() {
    qemu_cleanup
    [ -n "$hugetlbfs" ] && umount "$hugetlbfs" 2>/dev/null
    pcd_cleanup
}
trap cleanup EXIT

fail() {
    local f
    printf '\nFAILED: %s\n' "$*" >&2
    for f in src dst; do
        [ -e "$(serial $f)" ] || continue
        echo "---- QEMU $f: serial output and stderr (last lines)"
        tail -n 5 "$(serial $f)" "$(serial $f).err" 2>/dev/null | sed 's/^/  | /'
    done >&2
    [ -s "$qdir/migrate.out" ] && { echo "---- postcopy-migrate migrate (last lines)"; tail -n 15 "$qdir/migrate.out" | sed 's/^/  | /'; } >&2
    pcd_dump_logs >&2
    exit 1
}

if [ "$backing" = hugetlbfs ]; then
    hp=$(pcd_hugepage_size)
    ((hp > 0)) || { echo "demo: no huge page size reported by the kernel" >&2; exit 1; }
    ((bytes % hp == 0)) ||
        { echo "demo: --size $size is not a multiple of the huge page size ($((hp >> 20)) MiB)" >&2; exit 1; }
    # Both QEMUs hold the whole RAM in huge pages, on a mount of our own.
    pcd_hugepages_reserve $((2 * bytes / hp)) ||
        { echo "demo: cannot run with hugetlbfs: $PCD_SKIP_REASON" >&2; exit 1; }
    mkdir -p "$PCD_TMP/hugetlbfs" && mount -t hugetlbfs none "$PCD_TMP/hugetlbfs" ||
        { echo "demo: cannot mount hugetlbfs on $PCD_TMP/hugetlbfs" >&2; exit 1; }
    hugetlbfs=$PCD_TMP/hugetlbfs
    export QEMU_HUGETLBFS=$hugetlbfs
fi

vm=demo-vm
printf 'postcopyd demo: a real QEMU VM (TCG) with %s of %s RAM, its guest rewriting %s%% of\n' \
    "$size" "$backing" "$share"
printf 'it pass after pass, migrated in %s mode from host A to host B.\n' "$mode"

step "two hosts: network namespaces joined by a veth pair"
pcd_hosts_up || fail "$PCD_SKIP_REASON"
pcd_daemon_start src "$PCD_NS_SRC" "$PCD_IP_SRC" || fail "source postcopyd did not start"
pcd_daemon_start dst "$PCD_NS_DST" "$PCD_IP_DST" || fail "destination postcopyd did not start"
printf '   host A (source)      %-16s %-14s postcopyd pid %s\n' "$PCD_NS_SRC" "$PCD_IP_SRC" "$(pcd_daemon_pid src)"
printf '   host B (destination) %-16s %-14s postcopyd pid %s\n' "$PCD_NS_DST" "$PCD_IP_DST" "$(pcd_daemon_pid dst)"

# start_vm NAME DAEMON [--incoming]: QEMU in DAEMON's namespace.  postcopyd
# takes the QMP socket (QEMU serves one client on each): a second monitor
# (.mon) is for this script's own questions, as an operator's tools would.
start_vm() {
    local name=$1 daemon=$2 cmd
    shift 2
    qemu_start "$name" "$mem" "$backing" "$(serial "$name")" "$(qmp "$name")" \
        --netns "${PCD_NS_OF[$daemon]}" --append "share=$share" "$@" \
        -- -qmp "unix:$(qmp "$name").mon,server=on,wait=off" || return 1
    # The command line QEMU actually runs (ip netns exec becomes QEMU).
    mapfile -d '' -t cmd <"/proc/${QEMU_PID[$name]}/cmdline"
    show ip netns exec "${PCD_NS_OF[$daemon]}" "${cmd[@]}"
}

qemu_status() {
    qmp_cmd "$(qmp "$1").mon" '{"execute":"query-status"}' 5 |
        sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p'
}

step "QEMU at host A: the guest runs"
start_vm src src || fail "QEMU did not start at host A"
# TCG boots in well under a second; a pass of a 1 GiB guest takes ~1 s.
t0=$SECONDS
got=$(serial_wait_passes "$(serial src)" 3 120 "${QEMU_PID[src]}") ||
    fail "the guest at host A did not reach pass 3 (last: $got)"
printf '   QEMU pid %s; guest: %s; %s\n' "${QEMU_PID[src]}" \
    "$(grep -m1 -a '^testvm: ' "$(serial src)")" "pass ${got%% *}, errors ${got#* }"

step "QEMU at host B: waiting for the migration (-incoming defer)"
start_vm dst dst --incoming || fail "QEMU did not start at host B"
printf '   QEMU pid %s, status %s\n' "${QEMU_PID[dst]}" "$(qemu_status dst)"

step "attach both QEMUs to their host's postcopyd"
# attach NAME DAEMON HOST [--incoming]: show the command, run it, print its line.
attach() {
    local name=$1 daemon=$2 host=$3 out
    shift 3
    local args=(attach --pid "${QEMU_PID[$name]}" --qmp "$(qmp "$name")" --name "$vm" "$@")
    show ip netns exec "${PCD_NS_OF[$daemon]}" "$PCD_BUILD/postcopy-migrate" \
        --socket "$(pcd_control "$daemon")" "${args[@]}"
    out=$(pcd_migrate "$daemon" "${args[@]}" 2>&1) || fail "attach at host $host failed: $out"
    printf '   %s\n' "$out"
}
attach src src A
attach dst dst B --incoming
printf '   letting the guest run for %s s\n' "$warmup"
sleep "$warmup" & wait $!
before=$(serial_last_pass "$(serial src)") || before="0 0"
# Passes per second at the source, for the verdict's timeout.
rate_passes=${before%% *} rate_secs=$((SECONDS - t0))

step "migrate"
margs=(migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --mode "$mode")
show ip netns exec "$PCD_NS_SRC" "$PCD_BUILD/postcopy-migrate" --socket "$(pcd_control src)" "${margs[@]}"
# stdout (the stats table) is kept too; progress goes to stderr, live.
summary=$qdir/migrate.out
(
    PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-300} pcd_migrate src "${margs[@]}" | tee "$summary"
    exit "${PIPESTATUS[0]}"
) &
wait $!
rc=$?
((rc == 0)) || fail "postcopy-migrate exited with status $rc"

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
last=$(serial_last_pass "$(serial src)") || fail "the guest at host A printed no pass line"
want=$((${last%% *} + after))
# Time for $after passes at the source's pace, three times over, + 60 s.
timeout=$((60 + 3 * after * (rate_secs + 1) / (rate_passes > 0 ? rate_passes : 1)))
printf '   guest at host A stopped after pass %s; waiting for pass %s at host B (up to %s s)\n' \
    "${last%% *}" "$want" "$timeout"
t1=$SECONDS
got=$(serial_wait_passes "$(serial dst)" "$want" "$timeout" "${QEMU_PID[dst]}") ||
    fail "the guest at host B did not run $after passes past pass ${last%% *} (last: $got)"
printf '   guest at host B: pass %s, errors %s (%d passes since the switchover; waited %d s)\n' \
    "${got%% *}" "${got#* }" $((${got%% *} - ${last%% *})) $((SECONDS - t1))
stream=$(serial_stream_ok "$(serial src)" "$(serial dst)") ||
    fail "the guest's pass stream across both QEMUs: $stream"
printf '   pass stream across both QEMUs: %s, each with 0 errors\n' "$stream"
st=$(qemu_status dst)
[ "$st" = running ] || fail "QEMU at host B: query-status says '$st', not running"
printf '   QEMU at host B: query-status %s\n' "$st"
for _ in $(seq 50); do qemu_alive src || break; sleep 0.1; done
qemu_alive src && fail "QEMU at host A did not quit after the migration"
printf '   QEMU at host A: quit\n'

# The stream was read last: count the passes after the switchover from it.
end=${stream##*..}
printf '\nverified: the guest ran %d passes at host B with 0 errors after the switchover (%s without a gap across both QEMUs)\n' \
    $((end - ${last%% *})) "$stream"
