#!/bin/bash
# test_serial_stream.sh - serial_stream_ok (tests/lib/qemu.sh), the check
# every QEMU test and the bench make of the test guest's output across a
# migration, accepts what a correct run prints and refuses everything
# else: a gap, an error count, a stray line (the last one too), bytes lost
# anywhere but at the switch, or lost where the error count was.  Prints
# TAP.  Run by `make check`, or by hand: tests/static/test_serial_stream.sh
#
# Plain bash and awk: nothing to install.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lib/qemu.sh
. "$here/../lib/qemu.sh"

tmp=$(mktemp -d /tmp/pcd-serial.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0

# passes FROM TO: the guest's lines for those passes, 0 errors each.
passes() {
    local i
    for ((i = $1; i <= $2; i++)); do
        printf 'pass %d errors 0\n' "$i"
    done
}

# check NAME WANT SRC DST: serial_stream_ok on the two outputs (printf
# formats) exits 0 and prints WANT, or, WANT "!TEXT", fails printing TEXT.
check() {
    local name=$1 want=$2 got rc
    printf '%b' "$3" >"$tmp/src"
    printf '%b' "$4" >"$tmp/dst"
    got=$(serial_stream_ok "$tmp/src" "$tmp/dst")
    rc=$?
    n=$((n + 1))
    if [[ $want == !* ]]; then
        [ $rc -ne 0 ] && [ "$got" = "${want#!}" ]
    else
        [ $rc -eq 0 ] && [ "$got" = "$want" ]
    fi && { echo "ok $n - $name"; return; }
    echo "not ok $n - $name: rc $rc, printed '$got', wanted '$want'"
    failed=$((failed + 1))
}

echo "1..16"
a=$(passes 0 270) b=$(passes 272 280)
check "clean switch" "passes 0..280" "$a\n" "pass 271 errors 0\n$b\n"
check "a line split at the switch" "passes 0..280" "$a\npass 27" \
    "1 errors 0\n$b\n"
check "the guest mid-line at the end" "passes 0..280" "$a\n" \
    "pass 271 errors 0\n$b\npass 28"
check "a byte lost at the switch (seen in the bench)" \
    "passes 0..280 (1 bytes lost at a switch)" "$a\n" "ass 271 errors 0\n$b\n"
check "bytes lost inside a line split at the switch" \
    "passes 0..280 (5 bytes lost at a switch)" "$a\npas" \
    " errors 0\n$b\n"
check "a gap" "!pass 272 after 270" "$a\n" "$b\n"
check "errors" "!pass 271: 3 errors" "$a\n" "pass 271 errors 3\n$b\n"
check "a stray line" "!unexpected: bad page 0x1000" "$a\n" \
    "bad page 0x1000\npass 271 errors 0\n$b\n"
check "a byte lost away from the switch" "!unexpected: ass 272 errors 0" \
    "$a\n" "pass 271 errors 0\nass 272 errors 0\n"
check "the count reached by the loss" "!unexpected: pass 271 err" \
    "$a\npass 271 err" "\n$b\n"
check "a lost line is a gap, not lost bytes" \
    "!unexpected: ass 272 errors 0" "$a\n" "ass 272 errors 0\n"
check "the source's part not the line's start" \
    "!unexpected: bads 271 errors 0" "$a\nbad" "s 271 errors 0\n$b\n"
check "a stray last line" "!unexpected: bad page 0x1000" "$a\n" \
    "pass 271 errors 0\nbad page 0x1000\n"
check "a stray line cut short at the end" "!unexpected: bad pa" "$a\n" \
    "pass 271 errors 0\nbad pa"
check "the guest mid-line at the end, the destination silent" \
    "passes 0..270" "$a\npass 27" ""
check "lost bytes with an error count" "!unexpected: ass 271 errors 2" \
    "$a\n" "ass 271 errors 2\n$b\n"
exit $((failed > 0))
