#!/bin/bash
# test_unit.sh - the systemd units (systemd/postcopyd.service.in, written
# the way `make install` writes it, and systemd/postcopyd.socket) pass
# `systemd-analyze verify` with this build's postcopyd and the project's
# manuals, keep the properties a restart relies on and what postcopyd
# needs under their hardening, and rate "OK" (below 4.0) in
# `systemd-analyze security`.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_unit.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
root=$here/../..
n=0 failed=0
echo "1..5"

unit_in=$root/systemd/postcopyd.service.in
tmp=$(mktemp -d /tmp/pcd-unit.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
sed "s|@SBINDIR@|$build|g" "$unit_in" >"$tmp/postcopyd.service"
cp "$root/systemd/postcopyd.socket" "$tmp/"
svc=$tmp/postcopyd.service
sock=$tmp/postcopyd.socket
# verify runs man(1) for every Documentation=man: page.
for page in "$root"/docs/*.[158]; do
    mkdir -p "$tmp/man/man${page##*.}"
    cp "$page" "$tmp/man/man${page##*.}/"
done

t="the units pass systemd-analyze verify"
if ! command -v systemd-analyze >/dev/null; then
    skip "$t" "systemd-analyze is not installed (package systemd)"
elif out=$(MANPATH=$tmp/man systemd-analyze verify "$svc" "$sock" 2>&1) &&
    [ -z "$out" ]; then
    ok "$t"
else
    not_ok "$t" "systemd-analyze verify said:"
    printf '%s\n' "$out" | diag
fi

# A restarted daemon carries its migrations on from the state dir, and
# faults wait for it only if the VMMs are left alone: these must stay.
t="the unit keeps the state dir across restarts, leaves the VMMs alone, allows SCHED_FIFO"
why=()
for want in "Type=notify" "RuntimeDirectoryPreserve=yes" "KillMode=process" \
    "Restart=on-failure" "WatchdogSec=" "ExecStart=$build/postcopyd" \
    "ExecReload=/bin/kill -HUP \$MAINPID"; do
    grep -q "^$want" "$svc" || why+=("no '$want' line")
done
grep -q "^PrivateDevices=yes" "$svc" &&
    why+=("PrivateDevices=yes hides /dev/userfaultfd")
grep -q "^RestrictRealtime=yes" "$svc" &&
    why+=("RestrictRealtime=yes refuses the fault path's SCHED_FIFO")
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

# The value of a (possibly continued) directive of the service.
value() {
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$svc" | sed -n "s/^$1=//p" | tr -s ' '
}

t="the hardening leaves ptrace, map_files, userfaultfd, SCHED_FIFO and the network"
why=()
caps=$(value CapabilityBoundingSet)
for cap in CAP_SYS_PTRACE CAP_CHECKPOINT_RESTORE CAP_SYS_NICE CAP_KILL; do
    [ -z "$caps" ] || [[ " $caps " == *" $cap "* ]] || why+=("CapabilityBoundingSet lacks $cap")
done
filter=$(value SystemCallFilter)
for call in ptrace pidfd_getfd process_vm_readv; do
    [ -z "$filter" ] || [[ " $filter " == *" $call "* ]] || why+=("SystemCallFilter lacks $call")
done
[ -z "$filter" ] || [[ " $filter " == *" @system-service "* ]] ||
    why+=("SystemCallFilter lacks @system-service (userfaultfd, sched_setscheduler)")
if [ "$(value DevicePolicy)" ]; then
    value DeviceAllow | grep -q "^/dev/userfaultfd rw" || why+=("DeviceAllow lacks /dev/userfaultfd rw")
fi
families=$(value RestrictAddressFamilies)
for af in AF_UNIX AF_INET AF_INET6; do
    [ -z "$families" ] || [[ " $families " == *" $af "* ]] || why+=("RestrictAddressFamilies lacks $af")
done
grep -q "^PrivateNetwork=yes" "$svc" && why+=("PrivateNetwork=yes cuts the peers off")
grep -q "^ProtectProc=invisible" "$svc" && why+=("ProtectProc=invisible hides the VMMs")
grep -q "^PrivateUsers=yes" "$svc" && why+=("PrivateUsers=yes drops ptrace of other users")
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

t="the socket unit listens where the daemon's defaults are, for postcopyd.service"
conf=$root/docs/postcopyd.conf.example
why=()
for path in $(sed -n 's/^socket = //p' "$conf"); do
    grep -qx "ListenStream=$path" "$sock" || why+=("no ListenStream=$path")
done
grep -q "^Wants=.*postcopyd.socket" "$svc" || why+=("the service does not want postcopyd.socket")
grep -qx "Also=postcopyd.socket" "$svc" || why+=("enabling the service does not enable the socket")
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

t="systemd-analyze security rates the service OK (below 4.0)"
if ! command -v systemd-analyze >/dev/null; then
    skip "$t" "systemd-analyze is not installed (package systemd)"
else
    out=$(systemd-analyze security --offline=yes "$svc" 2>&1 | tail -n 1)
    echo "# $out"
    if systemd-analyze security --offline=yes --threshold=39 "$svc" >/dev/null 2>&1; then
        ok "$t"
    else
        not_ok "$t" "$out"
    fi
fi
exit $((failed > 0))
