#!/bin/bash
# plot.sh OUT: OUT/latency.png (fault latency histograms beside the floors'
# histograms) and OUT/downtime.png (downtime and total time per mode and
# dirty rate), from OUT/results.json, with gnuplot.
set -u
out=${1:?usage: plot.sh OUT}
res=$out/results.json
tmp=$(mktemp -d /tmp/pcd-plot.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# One data block per series: "le_us percent percent_slower": the share of
# samples in the bucket, and the share above its bound (the tail, for a
# log axis: NaN when none).  Bucket 0 ("under 1 us") is drawn at 0.5 us.
series() {
    jq -r --arg title "$1" "$2"' as $h
        | if $h == null or ($h | length) == 0 then empty else
            ($h | map(.count) | add) as $n
            | "# \($title)",
              (foreach $h[] as $b (0; . + $b.count;
                  ($b.le_us // $b["le-us"]) as $le
                  | ($n - .) as $above
                  | "\(if $le <= 0 then 0.5 else $le end) \($b.count * 100 / $n) \(if $above > 0 then $above * 100 / $n else "NaN" end)")),
              "", ""
          end' "$res"
}

: >"$tmp/lat.dat"
titles=()
add() {
    local before
    before=$(wc -c <"$tmp/lat.dat")
    series "$1" "$2" >>"$tmp/lat.dat"
    (($(wc -c <"$tmp/lat.dat") > before)) && titles+=("$1")
}
add "shmem, link idle" '.faults_by_backing.shmem.idle.histogram'
add "shmem, bulk competing" '.faults_by_backing.shmem.loaded.histogram'
add "shmem, bulk competing, fault path bound to one CPU" '.faults_by_backing.shmem.bound.histogram'
add "anon, link idle" '.faults_by_backing.anon.idle.histogram'
add "anon, bulk competing" '.faults_by_backing.anon.loaded.histogram'
add "floor: TCP 4 KiB round trip" '.floors.tcp_rtt_histogram'
add "floor: TCP round trip, link saturated" '.floors.tcp_rtt_loaded_histogram'
add "floor: uffd fault, local COPY" '.floors.uffd_missing_histogram'
add "floor: uffd fault, local CONTINUE" '.floors.uffd_minor_histogram'

plot=
tail=
for i in "${!titles[@]}"; do
    style="linespoints lw 2 pt 7"
    [[ ${titles[i]} == floor:* ]] && style="linespoints lw 1 dt 2 pt 6"
    plot+="${plot:+, }'$tmp/lat.dat' index $i using 1:2 with $style title '${titles[i]}'"
    tail+="${tail:+, }'$tmp/lat.dat' index $i using 1:3 with $style notitle"
done
floor=$(jq -r '.fault_floor_us // empty' "$res")
marks=
if [ -n "$floor" ]; then
    marks="set arrow from $floor, graph 0 to $floor, graph 1 nohead dt 3 lw 2 lc rgb 'black'
set label 'fault floor p50 = $floor us' at $floor, graph 0.97 offset 0.5,0"
fi
tail_marks=
if [ "$(jq -r .fault_idle_measured "$res")" != true ]; then
    tail_marks="set label 'link idle: not measured (postcopy-migrate has no --postcopy-bulk off)' at graph 0.02, graph 0.04"
fi

# Downtime / total time: one row per rate, one column per mode.
modes=$(jq -r '.config.modes | join(" ")' "$res")
jq -r '.config.rates[] as $r | [$r] + [.config.modes[] as $m | (.downtime_ms[$m][$r] // "NaN")] | join(" ")' \
    "$res" >"$tmp/down.dat"
jq -r '.config.rates[] as $r | [$r] + [.config.modes[] as $m | (.total_s[$m][$r] // "NaN")] | join(" ")' \
    "$res" >"$tmp/total.dat"
nmodes=$(wc -w <<<"$modes")
size=$(jq -r .config.size "$res")

gnuplot <<EOF
set terminal pngcairo size 1400,600 font ",10"
set output '$out/latency.png'
set multiplot layout 1,2 title "postcopyd remote-fault latency, 4 KiB pages, postcopy (log2 buckets; x = bucket upper bound)"
set logscale x 2
set format x "%g"
set xlabel "latency (us)"
set grid
set key top right
$marks
set title "histogram"
set ylabel "share of faults in the bucket (%)"
plot $plot
unset label
$tail_marks
set title "tail: share of faults slower than x"
set logscale y
set format y "%g"
set ylabel "faults slower than x (%)"
plot $tail
unset multiplot
unset logscale

set terminal pngcairo size 1100,500 font ",10"
set output '$out/downtime.png'
unset arrow
unset label
set multiplot layout 1,2 title "postcopyd: $size shmem guest, random writes at each dirty rate"
unset logscale x
set logscale y
set format y "%g"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid y
set key top left
set xlabel "dirty rate (MiB/s)"
set ylabel "downtime (ms)"
set title "downtime"
plot for [i=2:$((nmodes + 1))] '$tmp/down.dat' using i:xtic(1) title word("$modes", i-1)
unset logscale y
set yrange [0:*]
set ylabel "total time (s)"
set title "total migration time"
plot for [i=2:$((nmodes + 1))] '$tmp/total.dat' using i:xtic(1) title word("$modes", i-1)
unset multiplot
EOF
