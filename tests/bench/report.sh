#!/bin/bash
# report.sh OUT: print the table of OUT/results.json (written by bench.sh):
# every figure beside its floor and the ratio value / floor.
set -u
res=${1:?usage: report.sh OUT}/results.json
[ -r "$res" ] || { echo "report: no $res" >&2; exit 1; }

q() { jq -r "$1" "$res"; }

section_title() {
    case "$1" in
    fault) echo "1. Remote-fault latency, 4 KiB pages, postcopy, $(q .config.fault_size) guest read in random order.
   Floor: raw uffd fault resolved by a local handler (anon MISSING+COPY, shmem MINOR+CONTINUE)
   + raw 4 KiB TCP request/response on the same veth, each pinned to one CPU (a wake-up
   across CPUs costs 25-100 us on this nested VM), measured just before and after each
   fault run (the lower).  Daemon percentiles are log-linear bucket bounds (at most 12.5%
   above the true value); over >= $(q .config.min_faults) faults each." ;;
    bulk) echo "2. Bulk throughput: precopy round 1, wire bytes (floor: raw TCP, same number of streams, same veth,
   best of $(q .config.raw_sample_s) s samples just before and after the run)" ;;
    downtime) echo "3. Downtime, $(q .config.size) shmem guest, random writes (floor: one 4 KiB round trip + the bytes sent
   while paused at raw TCP speed: best $(q .config.raw_sample_s) s sample just before / after the run with no guest running)" ;;
    total) echo "   Total time (floor: the bytes sent at raw TCP speed: best $(q .config.raw_sample_s) s sample just before / after, a guest running)" ;;
    cpu) echo "4. Daemon CPU time per GiB of guest, idle precopy run (floor: raw TCP's CPU for the same wire bytes, sender / receiver)" ;;
    rss) echo "   Daemon peak RSS (VmHWM) per GiB of guest, idle precopy run (floor: the same daemon's RSS before the migration)" ;;
    esac
}

printf 'postcopyd bench  %s  kernel %s, %s CPUs, load %s -> %s, %s s\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(q .host.start.kernel)" "$(q .host.start.cpus)" \
    "$(q .host.start.loadavg)" "$(q .host.end.loadavg)" "$(q .elapsed_s)"
last=
while IFS=$'\t' read -r section line; do
    if [ "$section" != "$last" ]; then
        printf '\n%s\n' "$(section_title "$section")"
        printf '   %-28s %10s %10s %-8s %9s  %s\n' figure value floor unit 'x floor' note
        last=$section
    fi
    printf '%s\n' "$line"
done < <(jq -r '.table[] | [.section, .figure, (.value | tostring), (.floor | tostring),
    .unit, (.ratio | tostring), (.note // "")] | @tsv' "$res" |
    awk -F'\t' '
        function f(v) {
            if (v == "null" || v == "") return "n/a"
            v += 0
            if (v >= 100 || v == int(v)) return sprintf("%.0f", v)
            if (v >= 10) return sprintf("%.1f", v)
            if (v >= 0.1) return sprintf("%.2f", v)
            return sprintf("%.3g", v)
        }
        {
            floor = $4 == "null" ? "-" : f($4)
            ratio = $6 == "null" ? "-" : f($6) "x"
            printf "%s\t   %-28s %10s %10s %-8s %9s  %s\n", $1, $2, f($3), floor, $5, ratio, $7
        }')

printf '\nVerified runs (the destination read every page and compared it with the digest taken at the pause):\n'
jq -r '.verified[] | "   \(.tag): \(.line)"' "$res"
failed=$(q '.failed_runs | join(" ")')
[ -n "$failed" ] && printf '\nFAILED runs: %s\n' "$failed"
tls=$(q 'if .tls_bulk_gibps then "\(.tls_bulk_gibps) GiB/s with TLS (psk) vs \(.plain_bulk_gibps) GiB/s plain: \(.tls_cost_pct)% slower" else empty end')
[ -n "$tls" ] && printf '\nTLS cost to bulk throughput (idle 1 GiB guest, precopy): %s\n' "$tls"
note=$(q '.fault_idle_note // empty')
[ -n "$note" ] && printf '\nIdle-link fault latency %s.\n' "$note"
exit 0
