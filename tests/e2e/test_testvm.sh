#!/bin/bash
# test_testvm.sh - the test guest (tools/testvm) in real QEMU (TCG): it
# rewrites and checks its RAM with memfd and shm backings, and QEMU's own
# migrations of it (shared RAM copied by hand + x-ignore-shared; postcopy)
# carry its pass stream on without a gap and with 0 errors.  These are the
# QMP sequences the benchmarks reuse (tests/lib/qemu.sh).
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_testvm.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/lib/qemu.sh
. "$here/../lib/qemu.sh"
pcd_test_args "$@"
export POSTCOPYD_BUILD=$build
n=0 failed=0
TESTS=("memfd RAM: 5 passes, 0 errors" "shm RAM: 5 passes, 0 errors"
    "x-ignore-shared migration, RAM copied by hand: passes go on, 0 errors"
    "QEMU postcopy: passes go on, 0 errors")
echo "1..${#TESTS[@]}"

tmp=$(mktemp -d /tmp/pcd-testvm.XXXXXX) || exit 1
trap 'qemu_cleanup; rm -rf "$tmp"' EXIT
MEM=${TESTVM_MEM:-192}

command -v "$QEMU_BIN" >/dev/null ||
    skip_all "$QEMU_BIN not installed (Debian: qemu-system-x86)"
[ -r "$(qemu_testvm)" ] || skip_all "$(qemu_testvm) not built"
command -v socat >/dev/null || command -v python3 >/dev/null ||
    skip_all "no QMP client: socat (or python3) not installed"

# dump NAME...: the QEMUs' serial tails and stderr, as TAP comments.
dump() {
    local f
    for f in "$@"; do
        tail -n 5 "$tmp/$f.serial" "$tmp/$f.serial.err" 2>/dev/null | diag
    done
}

run_alone() {
    local backing=$1 t=$2 got
    if ! qemu_start "$backing" "$MEM" "$backing" "$tmp/$backing.serial" \
        "$tmp/$backing.qmp" --append "share=50"; then
        not_ok "$t" "QEMU did not start"
        return
    fi
    if got=$(serial_wait_passes "$tmp/$backing.serial" 5 60 \
        "${QEMU_PID[$backing]}") && [ "${got#* }" = 0 ]; then
        ok "$t"
    else
        not_ok "$t" "last pass and errors: $got"
        dump "$backing"
    fi
    qemu_stop "$backing"
}

run_alone memfd "${TESTS[0]}"
run_alone shm "${TESTS[1]}"

# start_pair CAPABILITY: source running 5 passes, destination incoming on
# a unix socket, CAPABILITY on both.
start_pair() {
    local cap='{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"'$1'","state":true}]}}'
    qemu_start src "$MEM" memfd "$tmp/src.serial" "$tmp/src.qmp" \
        --append "share=50" &&
        qemu_start dst "$MEM" memfd "$tmp/dst.serial" "$tmp/dst.qmp" \
            --incoming --append "share=50" &&
        serial_wait_passes "$tmp/src.serial" 5 60 "${QEMU_PID[src]}" >/dev/null &&
        qmp_cmd "$tmp/src.qmp" "$cap" >/dev/null &&
        qmp_cmd "$tmp/dst.qmp" "$cap" >/dev/null &&
        qmp_cmd "$tmp/dst.qmp" '{"execute":"migrate-incoming","arguments":{"uri":"unix:'"$tmp"'/mig.sock"}}' >/dev/null
}

# finish_pair TITLE: the destination runs 5 more passes; the stream holds.
finish_pair() {
    local t=$1 last got
    last=$(serial_last_pass "$tmp/src.serial")
    if got=$(serial_wait_passes "$tmp/dst.serial" $((${last%% *} + 5)) 60 \
        "${QEMU_PID[dst]}") && got=$(serial_stream_ok "$tmp/src.serial" "$tmp/dst.serial"); then
        ok "$t"
        echo "# source stopped after pass ${last%% *}, $got"
    else
        not_ok "$t" "source's last pass: $last" "$got"
        dump src dst
    fi
    qemu_stop src
    qemu_stop dst
}

migrate_shared() {
    local t=${TESTS[2]} sm dm
    [ "$(id -u)" = 0 ] ||
        { skip "$t" "needs root (/proc/PID/map_files)"; return; }
    if ! start_pair x-ignore-shared ||
        ! qmp_cmd "$tmp/src.qmp" '{"execute":"stop"}' >/dev/null ||
        ! sm=$(qemu_ram_map "${QEMU_PID[src]}") ||
        ! dm=$(qemu_ram_map "${QEMU_PID[dst]}") ||
        ! dd if="$sm" of="$dm" bs=4M conv=notrunc status=none ||
        ! qmp_cmd "$tmp/src.qmp" '{"execute":"migrate","arguments":{"uri":"unix:'"$tmp"'/mig.sock"}}' >/dev/null ||
        ! qmp_wait_migration "$tmp/src.qmp" 30 >/dev/null ||
        ! qmp_wait_migration "$tmp/dst.qmp" 10 >/dev/null ||
        # The stream carries the source's "stopped": resume by hand.
        ! qmp_cmd "$tmp/dst.qmp" '{"execute":"cont"}' >/dev/null; then
        not_ok "$t" "the migration did not complete"
        dump src dst
        qemu_stop src
        qemu_stop dst
        return
    fi
    finish_pair "$t"
}

migrate_postcopy() {
    local t=${TESTS[3]}
    [ "$(id -u)" = 0 ] ||
        { skip "$t" "needs root (QEMU's userfaultfd)"; return; }
    if ! start_pair postcopy-ram ||
        ! qmp_cmd "$tmp/src.qmp" '{"execute":"migrate","arguments":{"uri":"unix:'"$tmp"'/mig.sock"}}' >/dev/null ||
        ! sleep 0.5 ||
        ! qmp_cmd "$tmp/src.qmp" '{"execute":"migrate-start-postcopy"}' >/dev/null ||
        ! qmp_wait_migration "$tmp/src.qmp" 60 >/dev/null; then
        not_ok "$t" "the migration did not complete"
        dump src dst
        qemu_stop src
        qemu_stop dst
        return
    fi
    finish_pair "$t"
}

migrate_shared
migrate_postcopy
exit $((failed > 0))
