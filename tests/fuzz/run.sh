#!/bin/sh
# Run each libFuzzer target for a bounded time (make fuzz).
#
#   tests/fuzz/run.sh BUILD SECONDS FUZZER...
#
# Each FUZZER (BUILD/fuzz/fuzz_NAME) starts from a scratch copy of
# tests/fuzz/corpus/NAME, so the inputs it finds never land in the source
# tree, with tests/fuzz/fuzz_NAME.dict when there is one, and its own
# TMPDIR (the temporary directories targets make), removed after it.  Its
# log and any crashing input go to BUILD/fuzz/.  Every target runs; the
# exit status is non-zero when one of them crashed, leaked, hung or failed
# a check.
set -u

[ $# -ge 3 ] || {
    echo "usage: $0 BUILD SECONDS FUZZER..." >&2
    exit 2
}
build=$1
seconds=$2
shift 2
srcdir=$(dirname "$0")
out=$build/fuzz
failed=""
count=$#

mkdir -p "$out" || exit 1
for fuzzer in "$@"; do
    name=$(basename "$fuzzer")
    short=${name#fuzz_}
    log=$out/$name.log
    rm -f "$out/$name"-* # crashes of an earlier run
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/postcopyd-$name.XXXXXX") || exit 1
    mkdir "$scratch/corpus" "$scratch/tmp" || exit 1
    if [ -d "$srcdir/corpus/$short" ]; then
        cp "$srcdir/corpus/$short"/* "$scratch/corpus"/
    fi
    set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/$name-"
    if [ -f "$srcdir/$name.dict" ]; then
        set -- "$@" -dict="$srcdir/$name.dict"
    fi
    printf '  FUZZ    %-16s %ss ... ' "$name" "$seconds"
    TMPDIR="$scratch/tmp" "$fuzzer" "$@" "$scratch/corpus" >"$log" 2>&1
    rc=$?
    rm -rf "$scratch"
    # "#123456 DONE cov: 140 ft: 600 corp: 80/4Kb ... exec/s: 9000 ..."
    stats=$(grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 |
        sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+(cov: [0-9]+ ft: [0-9]+).*exec\/s: ([0-9]+).*/\2, \1 runs, \3 exec\/s/')
    if [ $rc -eq 0 ]; then
        echo "ok (${stats:-no stats})"
        continue
    fi
    echo "FAILED (exit $rc), log: $log"
    grep -a -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|NEW_FUNC' "$log" | tail -n 60 | sed 's/^/    /'
    for crash in "$out/$name"-*; do
        [ -f "$crash" ] || continue
        echo "    input $crash (hex):"
        od -An -tx1 -v "$crash" | head -n 32 | sed 's/^/     /'
    done
    failed="$failed $name"
done

if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed"
    exit 1
fi
echo "fuzz: $count target(s) ran clean"
