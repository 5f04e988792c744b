# tls.sh - sourced by bench.sh (uses its run_migration, raw, out, say):
# what TLS costs the bulk stream.  Precopy migrations of the same idle
# shmem guest (TLS_BENCH_SIZE, 1G), between fresh daemons with the same
# psk-file: tls = off and tls = psk, twice each, interleaved so that the
# machine's load moves alike for both.  A run's round-1 send rate is its
# bulk throughput (as bench's bulk_gibps); each figure is the better of
# its two runs, as other load only ever slows a run down.
# Writes OUT/tls.json {plain_bulk_gibps, tls_bulk_gibps, tls_cost_pct} and
# says the same; tls_results merges it into results.json once that exists.
# shellcheck shell=bash

# tls_rate TAG: round 1's send rate of run TAG, MiB/s ("" if it failed).
tls_rate() {
    jq '.migrate["round-stats"][0]["send-rate-mibps"] // empty' "$raw/run-$1.json" 2>/dev/null
}

# tls_best TAG...: the best of these runs' rates (load only slows a run).
tls_best() {
    local t
    for t in "$@"; do tls_rate "$t"; done | sort -g | tail -n 1
}

tls_bench() {
    local psk=$PCD_TMP/bench-psk size=${TLS_BENCH_SIZE:-1G} i plain tls
    head -c 32 /dev/urandom | base64 >"$psk" && chmod 600 "$psk"
    say "tls: idle $size shmem guest, precopy, tls = off and tls = psk, twice each, interleaved"
    for i in 1 2; do
        PCD_DAEMON_ARGS="--psk-file $psk" \
            run_migration "tls-off-$i" precopy shmem "$size" idle 0 0 || failures=$((failures + 1))
        PCD_DAEMON_ARGS="--psk-file $psk --tls psk" \
            run_migration "tls-psk-$i" precopy shmem "$size" idle 0 0 || failures=$((failures + 1))
    done
    plain=$(tls_best tls-off-1 tls-off-2)
    tls=$(tls_best tls-psk-1 tls-psk-2)
    jq -n --argjson p "${plain:-null}" --argjson t "${tls:-null}" \
        'def r3: . * 1000 | round / 1000;
         {plain_bulk_gibps: (if $p then $p / 1024 | r3 else null end),
          tls_bulk_gibps: (if $t then $t / 1024 | r3 else null end),
          tls_cost_pct: (if $p and $t then (1 - $t / $p) * 100 | . * 10 | round / 10
                         else null end)}' >"$out/tls.json"
    say "  tls: $(jq -c . "$out/tls.json")"
}

# tls_results RESULTS_JSON: add tls.json's keys to results.json.
tls_results() {
    [ -s "$out/tls.json" ] || return 0
    jq -s '.[0] + .[1]' "$1" "$out/tls.json" >"$1.tmp" && mv "$1.tmp" "$1"
}

tls_bench
