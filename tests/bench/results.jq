# results.jq - bench.sh's raw measurements -> results.json.
#
# Inputs (jq -n --arg/--argjson/--slurpfile, see bench.sh): the floors
# ($uffd_missing, $uffd_minor, $rtt, $rtt_loaded, $stream, $cold_floor and
# $bulk_pairs: each bulk run's tag and its cold floor), every migration
# ($runs: raw/run-*.json), the host before and after, and the settings.
#
# Output: the keys of the issue (fault_*_us, bulk_gibps, raw_tcp_gibps,
# downtime_ms.MODE.RATE, total_s.MODE.RATE, rss_mib_per_gib,
# cpu_s_per_gib), the floor beside each, the details (faults per backing,
# runs), and "table": the rows report.sh prints, each {section, figure,
# value, floor, unit, ratio, note}, ratio = value / floor.

def gib: 1073741824;
def r2: if . == null then null else (. * 100 | round) / 100 end;
def r3: if . == null then null else (. * 1000 | round) / 1000 end;
def ratio($v; $f): if $v == null or $f == null or $f == 0 then null else ($v / $f | r2) end;

# Nearest-rank percentile of a daemon histogram ([{"le-us", count}]),
# rounded like the daemon's own: the bucket's bound, capped at the max.
def hist_percentile($h; $max; $p):
  ($h | map(.count) | add // 0) as $n
  | if $n == 0 then null else
      (($p / 100 * $n) as $want
       | ($want | floor) as $r
       | (if $r < $want or $r == 0 then $r + 1 else $r end)) as $rank
      | [foreach ($h | sort_by(if .["le-us"] < 0 then infinite else .["le-us"] end))[] as $b
           (0; . + $b.count; [., $b["le-us"]])]
      | map(select(.[0] >= $rank)) | first
      | if . == null or .[1] < 0 then $max else ([.[1], $max] | min) end
    end;

def ok_runs: $runs | map(select(.ok == true));
def run($tag): ok_runs | map(select(.tag == $tag)) | first;
# The runs tagged PREFIX-1, PREFIX-2, ...
def repeats($prefix): ok_runs | map(select(.tag | startswith("\($prefix)-")));
# {"1": [f of each run tagged PREFIX-1G-*], "4": [...], ...} over @sizes.
def by_size($sizes; $prefix; f):
  reduce $sizes[] as $g ({}; .[$g | sub("G$"; "")] = (repeats("\($prefix)-\($g)") | map(f)));
# The middle value (the lower of the two middle ones), null for none.
def median: map(select(. != null)) | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;

# All faults of the runs tagged fault-BACKING-LOAD-*: histograms merged.
def faults($backing; $load):
  (ok_runs | map(select(.tag | startswith("fault-\($backing)-\($load)-")))) as $rs
  | if ($rs | length) == 0 then null else
      ($rs | map(.migrate["fault-latency"])) as $fl
      | ($fl | map(.histogram[]) | group_by(.["le-us"])
         | map({"le-us": .[0]["le-us"], count: (map(.count) | add)})) as $h
      | ($fl | map(.["max-us"]) | max) as $max
      | {runs: ($rs | length),
         count: ($fl | map(.count) | add),
         p50_us: hist_percentile($h; $max; 50),
         p99_us: hist_percentile($h; $max; 99),
         max_us: $max,
         histogram: $h}
    end;

# Floor under one remote fault: the local uffd fault + one TCP round trip.
def floor_of($uffd; $rtt):
  {p50_us: ($uffd.fault.p50_us + $rtt.rtt.p50_us | r2),
   p99_us: ($uffd.fault.p99_us + $rtt.rtt.p99_us | r2),
   handler_p50_us: ($uffd.handler.p50_us + $rtt.rtt.p50_us | r2)};

# The floor of BACKING's fault runs: the samples taken just before and after
# them (raw/fault-floor-*.json), the lowest of each figure; else $start.
def adjacent_floor($backing; $start):
  ($fault_floors | map(select(.backing == $backing))) as $s
  | if ($s | length) == 0 then $start + {samples: 0} else
      {p50_us: ($s | map(.uffd.p50_us + .rtt.p50_us) | min | r2),
       p99_us: ($s | map(.uffd.p99_us + .rtt.p99_us) | min | r2),
       handler_p50_us: ($s | map(.handler.p50_us + .rtt.p50_us) | min | r2),
       samples: ($s | length),
       each: ($s | map({tag, uffd_p50_us: .uffd.p50_us, uffd_p99_us: .uffd.p99_us,
                        rtt_p50_us: .rtt.p50_us, rtt_p99_us: .rtt.p99_us}))}
    end;

# {MODE: {RATE: f of run MODE-RATE (null when it failed)}}.
def per_mode_rate($ms; $rs; f):
  reduce $ms[] as $m ({}; .[$m] = reduce $rs[] as $r ({}; .[$r] = (run("\($m)-\($r)") | f)));

def max_or_null: map(select(. != null)) | if length == 0 then null else max end;

($uffd_missing[0]) as $um | ($uffd_minor[0]) as $un
| ($rtt[0]) as $rt | ($rtt_loaded[0]) as $rl | ($stream[0]) as $st
| ($rates | split(" ") | map(select(. != ""))) as $ratelist
| ($modes | split(" ") | map(select(. != ""))) as $modelist
| ($st.gibps) as $raw0
# Each bulk run against its cold floor (the better of two samples right
# after it, its source file as old as the guest's RAM was; bench.sh says
# why); the bulk figures come from the pair of median ratio, the lower
# middle of an even count.  The start's floor (memory just written) only
# if no pair has one.
| [$bulk_pairs[] | . as $p | (run($p.tag).migrate["round-stats"][0]["send-rate-mibps"] // null) as $m
   | {tag: $p.tag, gibps: (if $m then $m / 1024 | r3 else null end),
      floor_gibps: ($p.floor.gibps // null | r3), age_s: ($p.floor.age_s // null), floor: $p.floor}
   | . + {ratio: ratio(.gibps; .floor_gibps)}]
  | sort_by(.tag | if . == "bulk" then 1 else ltrimstr("bulk-") | tonumber end) as $pairs
| ($pairs | map(select(.ratio != null)) | sort_by(.ratio)) as $okp
| (if ($okp | length) > 0 then $okp[(($okp | length) - 1) / 2 | floor] else null end) as $mp
| (if $mp then $mp.floor else $cold_floor[0] end) as $cf
| {shmem: {idle: faults("shmem"; "idle"), loaded: faults("shmem"; "loaded"),
           bound: faults("shmem"; "bound"),
           floor: adjacent_floor("shmem"; floor_of($un; $rt)),
           floor_at_start: floor_of($un; $rt), floor_loaded_link: floor_of($un; $rl),
           uffd: "MINOR + UFFDIO_CONTINUE"},
   anon: {idle: faults("anon"; "idle"), loaded: faults("anon"; "loaded"),
          bound: faults("anon"; "bound"),
          floor: adjacent_floor("anon"; floor_of($um; $rt)),
          floor_at_start: floor_of($um; $rt), floor_loaded_link: floor_of($um; $rl),
          uffd: "MISSING + UFFDIO_COPY"}} as $fb
| run($mp.tag // "bulk") as $bulk
| ($bulk.migrate["round-stats"][0] // null) as $r1
| (if $bulk then $bulk.size_bytes / gib else null end) as $bulk_gib
| (if $bulk then $bulk.migrate.ram.transferred / $bulk.size_bytes else null end) as $wire_share
# Raw TCP next to the run: the best sample just before / after it with a
# guest running ("raw_stream") or none ("raw_stream_paused"); else the one
# taken at the start.
| (if $bulk.raw_stream.gibps then $bulk.raw_stream else $st end) as $bst
| ($bst.gibps) as $raw
| ($bst.sender_cpu_s / ($bst.bytes / gib)) as $cpu_floor_send
| ($bst.cpu_s / ($bst.bytes / gib)) as $cpu_floor_recv
| per_mode_rate($modelist; $ratelist; .migrate.downtime | r3) as $downtime
| per_mode_rate($modelist; $ratelist; .migrate["downtime-breakdown"] // null) as $downtime_parts
| run("bulk-cold") as $cold
| ($cold.migrate["round-stats"][0] // null) as $c1
| per_mode_rate($modelist; $ratelist; .migrate["total-time"] | if . == null then null else . / 1000 | r3 end) as $total
| per_mode_rate($modelist; $ratelist; (.raw_stream_paused.gibps // .raw_stream.gibps // $raw0) as $g | .migrate["bytes-downtime"]
    | if . == null then null else $rt.rtt.p50_us / 1000 + . / ($g * gib) * 1000 | r3 end) as $downtime_floor
| per_mode_rate($modelist; $ratelist; (.raw_stream.gibps // $raw0) as $g | .migrate.ram.transferred
    | if . == null then null else . / ($g * gib) | r3 end) as $total_floor
# The same bytes at the cold-memory floor (the issue's measure of totals).
| per_mode_rate($modelist; $ratelist; .migrate.ram.transferred
    | if . == null or $cf.gibps == null then null else . / ($cf.gibps * gib) | r3 end) as $total_floor_cold
| per_mode_rate($modelist; $ratelist; .raw_stream.gibps // null | r3) as $raw_by_run
| ($dt_sizes | split(" ") | map(select(. != ""))) as $dtlist
| by_size($dtlist; "hybrid-size"; .migrate.downtime | r3) as $dt_runs_by_size
| ($dt_runs_by_size | map_values(median)) as $dt_by_size
| (by_size($dtlist; "hybrid-size"; .migrate["downtime-breakdown"].collect) | map_values(median | r3)) as $collect_by_size
| (by_size($dtlist; "hybrid-size"; .migrate["final-dirty-after-resume"] // 0) | map_values(median | r3)) as $final_dirty_by_size
| by_size($dtlist; "hybrid-syncwp"; .migrate.downtime | r3) as $sw_dt_runs_by_size
| ($sw_dt_runs_by_size | map_values(median)) as $sw_dt_by_size
| (by_size($dtlist; "hybrid-syncwp"; .migrate["downtime-breakdown"].collect) | map_values(median | r3)) as $sw_collect_by_size
| (by_size($dtlist; "hybrid-size"; .migrate["total-time"] / 1000) | map_values(median | r3)) as $total_by_size
| (by_size($dtlist; "hybrid-syncwp"; .migrate["total-time"] / 1000) | map_values(median | r3)) as $sw_total_by_size
| {shmem: (reduce $ratelist[] as $r ({}; .[$r] = (run("postcopy-\($r)").migrate["total-time"] // null | if . then . / 1000 | r3 else null end))),
   anon: (reduce $ratelist[] as $r ({}; .[$r] = (run("postcopy-anon-\($r)").migrate["total-time"] // null | if . then . / 1000 | r3 else null end)))} as $pc_total
| per_mode_rate($modelist; $ratelist; .raw_stream_paused.gibps // null | r3) as $raw_paused_by_run
| {
  # ---- the issue's keys
  fault_p50_us: ([$fb.shmem.idle.p50_us, $fb.anon.idle.p50_us] | max_or_null),
  fault_p99_us: ([$fb.shmem.idle.p99_us, $fb.anon.idle.p99_us] | max_or_null),
  fault_loaded_p50_us: ([$fb.shmem.loaded.p50_us, $fb.anon.loaded.p50_us] | max_or_null),
  fault_loaded_p99_us: ([$fb.shmem.loaded.p99_us, $fb.anon.loaded.p99_us] | max_or_null),
  fault_bound_p50_us: ([$fb.shmem.bound.p50_us, $fb.anon.bound.p50_us] | max_or_null),
  fault_bound_p99_us: ([$fb.shmem.bound.p99_us, $fb.anon.bound.p99_us] | max_or_null),
  fault_floor_us: ([$fb.shmem.floor.p50_us, $fb.anon.floor.p50_us] | max),
  bulk_gibps: (if $r1 then $r1["send-rate-mibps"] / 1024 | r3 else null end),
  raw_tcp_gibps: ($raw | r3),
  downtime_ms: $downtime,
  total_s: $total,
  rss_mib_per_gib: (if $bulk then
      {source: ($bulk.source.vmhwm_kib / 1024 / $bulk_gib | r2),
       destination: ($bulk.destination.vmhwm_kib / 1024 / $bulk_gib | r2)}
    else null end),
  cpu_s_per_gib: (if $bulk then
      {source: ($bulk.source.cpu_s / $bulk_gib | r3),
       destination: ($bulk.destination.cpu_s / $bulk_gib | r3)}
    else null end),

  # ---- floors and details
  fault_max_us: ([$fb.shmem.idle.max_us, $fb.anon.idle.max_us] | max_or_null),
  fault_loaded_max_us: ([$fb.shmem.loaded.max_us, $fb.anon.loaded.max_us] | max_or_null),
  fault_floor_p99_us: ([$fb.shmem.floor.p99_us, $fb.anon.floor.p99_us] | max),
  fault_saturated_link_floor_us: ([$fb.shmem.floor_loaded_link.p50_us, $fb.anon.floor_loaded_link.p50_us] | max),
  fault_saturated_link_floor_p99_us: ([$fb.shmem.floor_loaded_link.p99_us, $fb.anon.floor_loaded_link.p99_us] | max),
  fault_idle_measured: ($have_bulk_off == 1),
  fault_idle_note: (if $have_bulk_off == 1 then null else
      "not measured: the daemon always streams the rest in postcopy; needs postcopy-migrate migrate --postcopy-bulk off" end),
  faults_by_backing: $fb,
  postcopy_total_s: $pc_total,
  postcopy_shmem_vs_anon: (reduce $ratelist[] as $r ({}; .[$r] = ratio($pc_total.shmem[$r]; $pc_total.anon[$r]))),
  hybrid_downtime_ms_by_size: $dt_by_size,
  hybrid_downtime_ms_by_size_runs: $dt_runs_by_size,
  hybrid_collect_ms_by_size: $collect_by_size,
  hybrid_final_dirty_after_resume_ms_by_size: $final_dirty_by_size,
  hybrid_total_s_by_size: $total_by_size,
  hybrid_sync_wp_downtime_ms_by_size: $sw_dt_by_size,
  hybrid_sync_wp_downtime_ms_by_size_runs: $sw_dt_runs_by_size,
  hybrid_sync_wp_collect_ms_by_size: $sw_collect_by_size,
  hybrid_sync_wp_total_s_by_size: $sw_total_by_size,
  bulk_floor_cold_gibps: ($cf.gibps | r3),
  bulk_floor_cold_samples_gibps: {start: ($cold_floor[0].gibps // null | r3),
                                  beside_bulk: [$pairs[].floor_gibps]},
  bulk_pairs: [$pairs[] | del(.floor)],
  bulk_pair_median: ($mp.tag // null),
  bulk_floor_cold_age_s: ($cf.age_s // 0),
  bulk_vs_start_floor: ratio(if $r1 then $r1["send-rate-mibps"] / 1024 else null end; $cold_floor[0].gibps),
  bulk_vs_cold_floor: ratio(if $r1 then $r1["send-rate-mibps"] / 1024 else null end; $cf.gibps),
  cpu_floor_cold_s_per_gib: {source: ($cf.sender_cpu_s / ($cf.bytes / gib) | r3),
                             destination: ($cf.cpu_s / ($cf.bytes / gib) | r3)},
  bulk_cold_gibps: (if $c1 then $c1["send-rate-mibps"] / 1024 | r3 else null end),
  bulk_cold_raw_tcp_gibps: ($cold.raw_stream.gibps // null | r3),
  populate_gibps: ($populate[0].populate.gibps // null | r3),
  prealloc_s: ($bulk.prealloc_s // null),
  prealloc_gibps: (if $bulk.prealloc_s then $bulk.size_bytes / gib / $bulk.prealloc_s | r3 else null end),
  downtime_breakdown_ms: $downtime_parts,
  bulk_guest_gibps: (if $r1 then $r1.pages * 4096 / ($r1["duration-ms"] / 1000) / gib | r3 else null end),
  bulk_streams: $bulk_streams,
  raw_tcp_gibps_start: ($raw0 | r3),
  raw_tcp_gibps_by_run: $raw_by_run,
  raw_tcp_gibps_guest_stopped_by_run: $raw_paused_by_run,
  downtime_floor_ms: $downtime_floor,
  total_floor_s: $total_floor,
  total_floor_cold_s: $total_floor_cold,
  total_vs_cold_floor: (reduce $modelist[] as $m ({}; .[$m] = (reduce $ratelist[] as $r ({}; .[$r] = ratio($total[$m][$r]; $total_floor_cold[$m][$r]))))),
  cpu_floor_s_per_gib: (if $bulk then
      {source: ($cpu_floor_send * $wire_share | r3), destination: ($cpu_floor_recv * $wire_share | r3)}
    else null end),
  rss_floor_mib_per_gib: (if $bulk then
      {source: ($bulk.source.rss_before_kib / 1024 / $bulk_gib | r2),
       destination: ($bulk.destination.rss_before_kib / 1024 / $bulk_gib | r2)}
    else null end),
  rss_anon_peak_mib_per_gib: (if $bulk then
      {source: ($bulk.source.rss_anon_peak_kib / 1024 / $bulk_gib | r2),
       destination: ($bulk.destination.rss_anon_peak_kib / 1024 / $bulk_gib | r2)}
    else null end),
  floors: {uffd_missing: ($um | del(.fault.histogram, .handler.histogram)),
           uffd_minor: ($un | del(.fault.histogram, .handler.histogram)),
           uffd_missing_histogram: $um.fault.histogram,
           uffd_minor_histogram: $un.fault.histogram,
           tcp_rtt: ($rt.rtt | del(.histogram)), tcp_rtt_histogram: $rt.rtt.histogram,
           tcp_rtt_loaded: ($rl.rtt | del(.histogram)),
           tcp_rtt_loaded_histogram: $rl.rtt.histogram,
           tcp_stream: $st},
  verified: (ok_runs | map(select(.verify)) | map({tag, mode, size_bytes, line: .verified.line,
             pages_checked: .verified.pages_checked, mismatches: .verified.mismatches})),
  failed_runs: ($runs | map(select(.ok != true) | .tag)),
  config: {size: $size, fault_size: $fault_size, rates: $ratelist, modes: $modelist,
           min_faults: $min_faults, max_precopy_ms: $max_precopy_ms,
           raw_sample_s: $raw_sample_s},
  host: {start: $host0[0], end: $host1[0]},
  elapsed_s: $elapsed,
  runs: ($runs | map(.migrate |= (if . then del(.["vcpu-blocktime"]) else . end)))
}
# ---- the table (value / floor)
| . as $res
| ($rl.rtt | "raw RTT with the link saturated: p50 \(.p50_us), p99 \(.p99_us) us") as $sat
| .table = (
    [ (["shmem", "anon"][] as $b | $fb[$b] as $x
       | ( {section: "fault", figure: "\($b) p50, link idle", value: $x.idle.p50_us, floor: $x.floor.p50_us, unit: "us",
            note: (if $x.idle then "\($x.idle.count) faults" else "not measured (see below)" end)},
           {section: "fault", figure: "\($b) p99, link idle", value: $x.idle.p99_us, floor: $x.floor.p99_us, unit: "us"},
           {section: "fault", figure: "\($b) max, link idle", value: $x.idle.max_us, floor: null, unit: "us"},
           {section: "fault", figure: "\($b) p50, bulk competing", value: $x.loaded.p50_us, floor: $x.floor.p50_us, unit: "us",
            note: (if $x.loaded then "\($x.loaded.count) faults in \($x.loaded.runs) run(s)" else "failed" end)},
           {section: "fault", figure: "\($b) p99, bulk competing", value: $x.loaded.p99_us, floor: $x.floor.p99_us, unit: "us",
            note: $sat},
           {section: "fault", figure: "\($b) max, bulk competing", value: $x.loaded.max_us, floor: null, unit: "us"},
           {section: "fault", figure: "\($b) p50, bulk competing, bound", value: $x.bound.p50_us,
            floor: $x.floor.p50_us, unit: "us",
            note: (if $x.bound then "\($x.bound.count) faults in \($x.bound.runs) run(s); both daemons' fault path bound to one CPU (--fault-cpus), as the floor's pingpong runs" else "failed" end)},
           {section: "fault", figure: "\($b) p99, bulk competing, bound", value: $x.bound.p99_us,
            floor: $x.floor.p99_us, unit: "us"} )),
      {section: "bulk", figure: "precopy round 1, idle \($size)", value: $res.bulk_gibps, floor: $res.raw_tcp_gibps,
       unit: "GiB/s", note: "\($bulk_streams) stream(s); higher is better; guest pages: \($res.bulk_guest_gibps) GiB/s"},
      {section: "bulk", figure: "same, vs cold memory", value: $res.bulk_gibps, floor: $res.bulk_floor_cold_gibps,
       unit: "GiB/s", note: "floor: raw TCP moving \($size) of cold memory, shmem file to preallocated shmem file (sendfile; read + pwrite), the file left \($res.bulk_floor_cold_age_s) s as the guest's RAM was, the better of two samples right after the run; the pair of median ratio of \($res.bulk_pairs | length) (\($res.bulk_pairs | map("\(.gibps) / \(.floor_gibps) GiB/s: \(.ratio)x") | join(", "))); \($res.bulk_floor_cold_samples_gibps.start) GiB/s at the start, memory just written: \($res.bulk_vs_start_floor)x; target >= 0.9"},
      {section: "bulk", figure: "same, RAM not preallocated", value: $res.bulk_cold_gibps,
       floor: ([$res.bulk_cold_raw_tcp_gibps, $res.prealloc_gibps] | map(select(. != null)) | if length == 0 then null else min end),
       unit: "GiB/s", note: "floor: the lower of raw TCP (\($res.bulk_cold_raw_tcp_gibps)) and the first touch of as much fresh memory: the prealloc before the run above, \($size) in \($res.prealloc_s) s (\($res.prealloc_gibps) GiB/s; a 1 GiB populate sample after the run, memory freed moments before: \($res.populate_gibps) GiB/s)"},
      ($modelist[] as $m | $ratelist[] as $r
       | {section: "downtime", figure: "\($m) @ \($r) MiB/s", value: $downtime[$m][$r], floor: $downtime_floor[$m][$r], unit: "ms",
          note: (run("\($m)-\($r)") | if . then "\(.migrate["bytes-downtime"] / 1048576 * 100 | round / 100) MiB sent while paused; raw TCP \(.raw_stream_paused.gibps // .raw_stream.gibps // $raw0) GiB/s"
                 + (.migrate["downtime-breakdown"] // null | if . then "; " + (to_entries | map(select(.value >= 0.05)) | map("\(.key) \(.value * 100 | round / 100)") | join(", ")) else "" end)
                 else "failed" end)}),
      ($modelist[] as $m | $ratelist[] as $r
       | {section: "total", figure: "\($m) @ \($r) MiB/s", value: $total[$m][$r], floor: $total_floor[$m][$r], unit: "s",
          note: (run("\($m)-\($r)") | if . then "\(.migrate.ram.transferred / 1048576 | round) MiB sent, \(.migrate.rounds) round(s); raw TCP \(.raw_stream.gibps // $raw0) GiB/s; at the cold-memory floor (\($cf.gibps) GiB/s) \($total_floor_cold[$m][$r]) s: \(ratio($total[$m][$r]; $total_floor_cold[$m][$r]))x" else "failed" end)}),
      ($ratelist[] as $r
       | {section: "total", figure: "postcopy shmem @ \($r) MiB/s, vs anon", value: $pc_total.shmem[$r], floor: $pc_total.anon[$r], unit: "s",
          note: "floor: the same migration of an anonymous-RAM guest; target <= 1.3"}),
      ($dtlist[] as $g
       | {section: "downtime", figure: "hybrid, \($g) guest @ \($dt_rate) MiB/s", value: $dt_by_size[$g | sub("G$"; "")],
          floor: $dt_by_size[$dtlist[0] | sub("G$"; "")], unit: "ms",
          note: "median of \($dt_runs_by_size[$g | sub("G$"; "")] | map(tostring) | join(" / ")); the final scan in it \($collect_by_size[$g | sub("G$"; "")]) ms, after the resume \($final_dirty_by_size[$g | sub("G$"; "")]) ms (faults served by the source meanwhile); floor: the \($dtlist[0]) guest; target: flat in size (<= 1.25), <= 3 ms at 4G"}),
      ($dtlist[] as $g
       | {section: "downtime", figure: "hybrid, sync-wp, \($g) guest @ \($dt_rate) MiB/s", value: $sw_dt_by_size[$g | sub("G$"; "")],
          floor: $sw_dt_by_size[$dtlist[0] | sub("G$"; "")], unit: "ms",
          note: "median of \($sw_dt_runs_by_size[$g | sub("G$"; "")] | map(tostring) | join(" / ")); the final collect \($sw_collect_by_size[$g | sub("G$"; "")]) ms (async-wp: \($collect_by_size[$g | sub("G$"; "")])); total \($sw_total_by_size[$g | sub("G$"; "")]) s (async-wp: \($total_by_size[$g | sub("G$"; "")])); floor: the \($dtlist[0]) guest"}),
      (["source", "destination"][] as $side
       | {section: "cpu", figure: "\($side)", value: $res.cpu_s_per_gib[$side]?, floor: $res.cpu_floor_s_per_gib[$side]?, unit: "s/GiB",
          note: "floor: raw TCP, hot buffer"}),
      (["source", "destination"][] as $side
       | {section: "cpu", figure: "\($side), vs cold memory", value: $res.cpu_s_per_gib[$side]?, floor: $res.cpu_floor_cold_s_per_gib[$side]?, unit: "s/GiB",
          note: "floor: raw TCP moving cold memory; target <= 2"}),
      (["source", "destination"][] as $side
       | {section: "rss", figure: "\($side)", value: $res.rss_mib_per_gib[$side]?, floor: $res.rss_floor_mib_per_gib[$side]?, unit: "MiB/GiB",
          note: "private (RssAnon) peak: \($res.rss_anon_peak_mib_per_gib[$side]?) MiB/GiB"})
    ] | map(.ratio = ratio(.value; .floor)))
