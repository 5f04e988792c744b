#!/bin/bash
# qemu_compare_report.sh OUT: the table of OUT/qemu_compare.json (written by
# qemu_compare.sh) on stdout, and OUT/qemu_compare.png (gnuplot, when
# installed): each figure of each mode beside QEMU postcopy's, with the
# targets.
set -u
out=${1:?usage: qemu_compare_report.sh OUT}
res=$out/qemu_compare.json
[ -r "$res" ] || { echo "qemu_compare_report: no $res" >&2; exit 1; }

jq -r '
    def f: if . == null then "n/a" elif type == "number" then
        (if . >= 100 or . == (. | floor) then (. | round | tostring)
         else ((. * 100 | round) / 100 | tostring) end) else tostring end;
    def x: if . == null then "-" else "\(. | f)x" end;
    def met($v; $op; $t): if $v == null then "" elif ($op == "le" and $v <= $t) or ($op == "ge" and $v >= $t)
        then "yes" else "no" end;
    .config as $c
    | "5. QEMU side by side: the same QEMU 7.2 guest (TCG, \($c.mem_mib) MiB memfd RAM, tools/testvm share=50:",
      "   rewrites and checks half its RAM every pass), the same veth; median of \($c.runs) round(s) per mode.",
      "   ratio = figure / QEMU postcopy (migrate + migrate-start-postcopy at once) in the same rounds.",
      "   downtime: source STOP -> destination RESUME (QMP events); passes: guest passes completed",
      "   from the command to completion, across both QEMUs; blocktime: the destination vCPU blocked on missing pages.",
      (["   mode", "total s", "ratio", "downtime ms", "ratio", "passes dur.", "ratio", "during /s", "before /s", "after 1 s", "blocktime ms", "runs"]
        | "\(.[0] | . + " " * (26 - length))\(.[1:] | map(. + " " * (13 - length)) | join(""))"),
      (.config.modes[] as $m | .[$m] as $r
        | ["   \($m)", ($r.total_s | f), ($r.total_ratio | x), ($r.downtime_ms | f), ($r.downtime_ratio | x),
           ($r.passes_during | f), ($r.passes_during_ratio | x), ($r.pass_rate_during | f),
           ($r.pass_rate_before | f), ($r.passes_after_1s | f), ($r.blocktime_ms | f),
           "\($r.runs_ok) ok\(if $r.runs_failed > 0 then ", \($r.runs_failed) FAILED" else "" end)"]
        | "\(.[0] | . + " " * (26 - length))\(.[1:] | map(. + " " * (13 - length)) | join(""))"),
      "   during /s: passes during / total time; before /s: the guest\u0027s own speed in the 3 s before the command.",
      "   each run (total s / downtime ms / passes during / blocktime ms):",
      (.config.modes[] as $m | .[$m] as $r
        | "     \($m): " + ($r.each | map("\(.total_s)/\(.downtime_ms)/\(.passes_during)/\(.blocktime_ms | f)") | join("  "))
          + (if ($r.prealloc_s // null) != null then "  (destination RAM preallocated at attach, before the command: \($r.prealloc_s) s)" else "" end)),
      "   targets (postcopyd hybrid / postcopy):",
      (["postcopyd_hybrid", "postcopyd_postcopy"][] as $m | .[$m] // null | select(. != null) as $r
        | "     \($m): total <= 0.5x QEMU postcopy: \(met($r.total_ratio; "le"; 0.5)) (\($r.total_ratio | x)); downtime <= QEMU postcopy: \(met($r.downtime_ratio; "le"; 1)) (\($r.downtime_ratio | x)); passes during >= 2x: \(met($r.passes_during_ratio; "ge"; 2)) (\($r.passes_during_ratio | x))"),
      (if (.failed | length) > 0 then "   FAILED runs (not figures): " + (.failed | map("\(.mode) round \(.round): \(.why)") | join("; ")) else empty end)
' "$res"

command -v gnuplot >/dev/null 2>&1 || { echo "qemu_compare_report: gnuplot not installed: no png" >&2; exit 0; }
tmp=$(mktemp -d /tmp/pcd-qcplot.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
# One row per mode: name total downtime passes_during blocktime.
jq -r '.config.modes[] as $m | .[$m] as $r
    | [$m, ($r.total_s // "NaN"), ($r.downtime_ms // "NaN"), ($r.passes_during // "NaN"),
       ($r.blocktime_ms // "NaN"), ($r.passes_after_1s // "NaN")] | map(tostring) | join(" ")' "$res" >"$tmp/qc.dat"
mem=$(jq -r .config.mem_mib "$res")
rounds=$(jq -r .config.runs "$res")
gnuplot <<EOF || exit 1
set terminal pngcairo size 1400,450 font ",10" noenhanced
set output '$out/qemu_compare.png'
set multiplot layout 1,4 title "postcopyd vs QEMU 7.2 postcopy: ${mem} MiB QEMU guest rewriting half its RAM, same veth (median of $rounds round(s))"
set style data histogram
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid y
set xtics rotate by -30 font ",8"
set yrange [0:*]
unset key
set title "total time (s), lower is better"
plot '$tmp/qc.dat' using 2:xtic(1) lc rgb '#4477aa'
set title "downtime STOP->RESUME (ms), lower is better"
plot '$tmp/qc.dat' using 3:xtic(1) lc rgb '#cc6677'
set title "guest passes during migration, higher is better"
plot '$tmp/qc.dat' using 4:xtic(1) lc rgb '#228833'
set title "vCPU blocktime (ms), lower is better"
plot '$tmp/qc.dat' using 5:xtic(1) lc rgb '#aa7733'
unset multiplot
EOF
