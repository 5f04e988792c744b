#!/bin/bash
# test_unit.sh - the systemd units (systemd/postcopyd.service.in, written
# the way `make install` writes it, and systemd/postcopyd.socket) pass
# `systemd-analyze verify` with this build's postcopyd and the project's
# manuals, and keep the properties a restart relies on; the socket unit
# listens where the daemon looks.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_unit.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
root=$here/../..
n=0 failed=0
echo "1..3"

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
    "Restart=on-failure" "WatchdogSec=" "ExecStart=$build/postcopyd"; do
    grep -q "^$want" "$svc" || why+=("no '$want' line")
done
grep -q "^PrivateDevices=yes" "$svc" &&
    why+=("PrivateDevices=yes hides /dev/userfaultfd")
grep -q "^RestrictRealtime=yes" "$svc" &&
    why+=("RestrictRealtime=yes refuses the fault path's SCHED_FIFO")
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

exit $((failed > 0))
