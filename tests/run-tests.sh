#!/bin/sh
# Run GTest binaries (and the e2e shell scripts) in TAP mode and add up
# their results.
# Usage: tests/run-tests.sh BUILDDIR TEST...
# Scripts find the binaries through $POSTCOPYD_BUILD.
# Each binary runs alone (tests reserve huge pages and spawn processes);
# a binary that crashes or times out counts as one failure even when its
# TAP stream looked clean so far.  The last line is the summary.
set -u
build=$1
shift
timeout_s=${TEST_TIMEOUT:-600}
log_dir="$build/test-logs"
export POSTCOPYD_BUILD="$build"
mkdir -p "$log_dir"
pass=0 fail=0 skip=0
failed_names=""

for t in "$@"; do
    name=${t#"$build"/tests/}
    log="$log_dir/$(echo "$name" | tr / _).log"
    timeout -k 10 "$timeout_s" "$t" --tap >"$log" 2>&1
    rc=$?
    p=$(grep -c '^ok [0-9]' "$log" | head -1)
    s=$(grep -c '^ok [0-9].*# SKIP' "$log" | head -1)
    f=$(grep -c '^not ok' "$log" | head -1)
    p=$((p - s))
    grep -E '^(ok|not ok) [0-9]' "$log" | sed "s|^|  $name: |"
    grep -E '^# (Start of|End of)' -v "$log" | grep -E '^# (SKIP|.*skipped)' |
        sed "s|^|  $name: |" | head -5
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "  $name: exited with status $rc (see $log)"
    fi
    if [ "$f" -ne 0 ]; then
        failed_names="$failed_names $name"
        echo "---- $log (last 40 lines) ----"
        tail -n 40 "$log"
        echo "----"
    fi
    pass=$((pass + p))
    fail=$((fail + f))
    skip=$((skip + s))
done

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
