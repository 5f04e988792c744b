#!/bin/bash
# soak.sh - the link-cut test of test_recovery.sh, many rounds: a postcopy
# migration of a 256 MiB shmem guest whose link is cut (down in the source
# namespace) for a random 1-3 s at a random point of postcopy, with daemons
# running --peer-timeout 1000 --keepalive 1.  Every round must complete
# with the destination's memory intact; the last line says how many rounds
# went through postcopy-paused and recovered, and how many TCP rode out
# (a cut shorter than the timeouts is only retransmitted).
#
#   tests/e2e/soak.sh [--build DIR] [--rounds N] [--seed N] [--keep]
#   make soak [BUILD=DIR]                  # 20 rounds
#
# Needs root (network namespaces, userfaultfd).  Exit status 0 only when
# every round passed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=${POSTCOPYD_BUILD:-build}
rounds=${SOAK_ROUNDS:-20}
extra=()

usage() {
    echo "usage: $0 [--build DIR] [--rounds N] [--seed N] [--keep]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=${2:-}; shift 2 || usage ;;
    --build=*) build=${1#*=}; shift ;;
    --rounds) rounds=${2:-}; shift 2 || usage ;;
    --seed) extra+=(--seed "${2:-}"); shift 2 || usage ;;
    --keep) extra+=(--keep); shift ;;
    *) usage ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || usage

out=$(mktemp /tmp/pcd-soak.XXXXXX) || exit 1
trap 'rm -f "$out"' EXIT
t0=$SECONDS
"$here/test_recovery.sh" --build "$build" --only link-cut \
    --cut-rounds "$rounds" "${extra[@]}" | tee "$out"
rc=${PIPESTATUS[0]}

passed=$(grep -c '^ok [0-9]' "$out")
skipped=$(grep -c '^ok [0-9].*# SKIP' "$out")
failed=$(grep -c '^not ok' "$out")
paused=$(sed -n 's/^# link-cut summary: .* rounds passed, \([0-9]*\) paused.*/\1/p' "$out")
passed=$((passed - skipped))
if ((skipped > 0)); then
    echo "soak: skipped ($skipped rounds): $(grep -m 1 '# SKIP' "$out" | sed 's/.*# SKIP //')"
    exit 0
fi
echo "soak: $passed of $rounds rounds passed, $failed failed;" \
    "${paused:-?} paused and recovered, $((passed - ${paused:-0})) rode the cut out" \
    "without pausing; $((SECONDS - t0)) s"
((rc == 0 && passed == rounds && failed == 0))
