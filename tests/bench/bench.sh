#!/bin/bash
# bench.sh - `make bench`: postcopyd's figures, each beside a floor measured
# in the same run on the same link, so that the ratio means something on a
# noisy machine.  Two "hosts" (network namespaces joined by a veth pair,
# tests/e2e/lib.sh), real daemons, real guests (postcopy-guest).
#
#   make bench
#   make bench BENCH_FLAGS='--quick'          # small guests: a smoke test
#   tests/bench/bench.sh --build build [options]
#
# Measures:
#  1. remote-fault latency, 4 KiB pages, shmem (MINOR) and anon (MISSING):
#     p50/p99/max over >= --min-faults faults of postcopy migrations whose
#     destination guest reads every page in random order (--verify), with the
#     link idle (no bulk stream: needs `--postcopy-bulk off`, see below),
#     with the bulk stream competing, and the same with both daemons' fault
#     path bound to one CPU (--fault-cpus).  Floor: fault_floor (a raw uffd fault
#     resolved by a local handler) + tcp_floor pingpong (a raw 4 KiB
#     request/response over TCP on the same veth).
#  2. precopy round 1 throughput of an idle guest against raw TCP with the
#     same number of streams: a hot buffer sent over and over (tcp_floor
#     stream), and the same amount of cold memory moved from a shmem file
#     into a preallocated one (tcp_floor cold: sendfile, read + pwrite), the
#     file left as long as the guest's RAM was before round 1 read it; each
#     of --bulk-pairs runs has its own, and the bulk figures come from the
#     pair of median ratio.
#  3. downtime and total time of precopy, hybrid and postcopy at each dirty
#     rate.  Floors: downtime >= one request/response + the bytes sent while
#     paused at raw TCP speed; total time >= the bytes sent at raw TCP speed
#     (and, reported beside it, at the cold-memory floor).
#  4. daemon CPU time and peak RSS per GiB of guest, both sides, from the
#     idle precopy run (every page moved once); floors: raw TCP's CPU per
#     GiB (sender, receiver) and the daemon's RSS before the migration.
#  5. a real QEMU guest migrated by QEMU's own postcopy and by postcopyd on
#     the same veth (tests/bench/qemu_compare.sh): total time, downtime,
#     guest passes during the migration, blocktime; ratios against QEMU
#     postcopy in the same run.  results.json "qemu_compare", qemu_compare.png.
# Every measured migration gets fresh daemons and guests, and its own raw
# TCP throughput measured just before and just after it, with its guests in
# place (source guest stopped / none: the floor for the downtime; a guest
# running: for the rest), the best sample of each kind, since the load of a
# shared machine moves within seconds and only ever slows things down.  One verified run per
# mode at the end proves the destination's memory.
#
# Writes to OUT (default BUILD/bench): results.json, table.txt,
# latency.png, downtime.png, qemu_compare.png, and raw/ (every tool's and migration's JSON).
# Needs root.  jq and gnuplot are installed with apt-get when missing
# (unless --no-install).  Everything started is stopped on exit.
# shellcheck disable=SC2015
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../e2e/lib.sh"

build=${POSTCOPYD_BUILD:-build}
out=
size=4G             # guest of the bulk and mode x rate runs
fault_size=1G       # guest of the fault-latency runs
verify_size=1G      # guest of the verified runs
rates="64 256 1024" # dirty rates, MiB/s
modes="precopy hybrid postcopy"
verify_rate=256
dt_sizes="1G 4G 8G" # guests of the hybrid downtime-by-size runs
dt_rate=256         # ... and their dirty rate, MiB/s
dt_repeats=3        # ... and runs per size: the median is the figure
min_faults=20000
max_precopy_ms=auto # 2 x the idle round 1, in [5 s, 20 s]
floor_faults=25000
floor_rtts=20000
stream_seconds=3
adj_seconds=1       # the raw stream before each migration
vcpus=2
warmup=1
install=1
qemu_compare=1
quick=0
bulk_pairs=3 # bulk runs, each followed by its cold floor: the median pair
# Bulk streams per migration (the daemon's default is 1); raw TCP is
# measured with as many.  Passed as `migrate --streams N` when the CLI has it.
bulk_streams=1

usage() {
    cat <<EOF
Usage: $0 [options]
  --build DIR          build dir with the daemons, guest, CLI and bench-tools/ [$build]
  --out DIR            results directory [BUILD/bench]
  --size SIZE          guest of the bulk and mode x rate runs [$size]
  --fault-size SIZE    guest of the fault-latency runs [$fault_size]
  --verify-size SIZE   guest of the verified runs [$verify_size]
  --rates 'R ...'      dirty rates in MiB/s [$rates]
  --downtime-sizes 'S ...'  guests of the hybrid downtime-by-size runs, at
                       $dt_rate MiB/s [$dt_sizes]
  --downtime-repeats N runs per size; the figure is their median [$dt_repeats]
  --bulk-pairs N       idle bulk runs, each with its cold floor right after;
                       the bulk figure is the pair of median ratio [$bulk_pairs]
  --modes 'M ...'      modes [$modes]
  --min-faults N       remote faults per latency figure, at least [$min_faults]
  --streams N          bulk streams per migration, and raw TCP streams [$bulk_streams]
  --max-precopy-ms MS  bound on precopy (--max-precopy-time); auto: twice the
                       idle guest's round 1, within 5..20 s [$max_precopy_ms]
  --quick              small guests and fewer samples: a smoke test
  --no-install         do not apt-get install jq / gnuplot when missing
  --no-qemu-compare    skip the QEMU side-by-side runs (qemu_compare.sh)
  --keep               keep the daemons' and guests' logs (path printed)
EOF
}

need_arg() {
    [ $# -ge 2 ] && [ -n "$2" ] || { echo "bench: $1 needs a value" >&2; usage >&2; exit 2; }
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build | --out | --size | --fault-size | --verify-size | --rates | --modes | --downtime-sizes | \
        --downtime-repeats | --min-faults | --max-precopy-ms | --streams | --bulk-pairs)
        need_arg "$@"
        case "$1" in
        --build) build=$2 ;;
        --out) out=$2 ;;
        --size) size=$2 ;;
        --fault-size) fault_size=$2 ;;
        --verify-size) verify_size=$2 ;;
        --rates) rates=$2 ;;
        --downtime-sizes) dt_sizes=$2 ;;
        --downtime-repeats) dt_repeats=$2 ;;
        --modes) modes=$2 ;;
        --min-faults) min_faults=$2 ;;
        --max-precopy-ms) max_precopy_ms=$2 ;;
        --streams) bulk_streams=$2 ;;
        --bulk-pairs) bulk_pairs=$2 ;;
        esac
        shift 2
        ;;
    --quick)
        size=512M fault_size=256M verify_size=256M min_faults=5000 dt_sizes="256M 512M" dt_repeats=1
        floor_faults=5000 floor_rtts=5000 stream_seconds=1 adj_seconds=0.5
        max_precopy_ms=3000 quick=1 bulk_pairs=2
        shift
        ;;
    --no-install) install=0; shift ;;
    --no-qemu-compare) qemu_compare=0; shift ;;
    --keep) export PCD_KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

build=${build%/}
out=${out:-$build/bench}
raw=$out/raw
tools=$build/bench-tools
for s in "$size" "$fault_size" "$verify_size"; do
    b=$(pcd_size_bytes "$s") && ((b > 0 && b % 4096 == 0)) ||
        { echo "bench: '$s' is not a size (e.g. 512M, 4G)" >&2; exit 2; }
done
[[ $max_precopy_ms =~ ^([0-9]+|auto)$ ]] ||
    { echo "bench: --max-precopy-ms: '$max_precopy_ms' is not a number of ms or auto" >&2; exit 2; }
[[ $bulk_pairs =~ ^[1-9]$ ]] ||
    { echo "bench: --bulk-pairs: '$bulk_pairs' is not 1 to 9" >&2; exit 2; }
[[ $bulk_streams =~ ^[1-8]$ ]] ||
    { echo "bench: --streams: '$bulk_streams' is not 1 to 8" >&2; exit 2; }
[[ $min_faults =~ ^[0-9]+$ ]] ||
    { echo "bench: --min-faults: '$min_faults' is not a number" >&2; exit 2; }
[[ $dt_repeats =~ ^[1-9][0-9]*$ ]] ||
    { echo "bench: --downtime-repeats: '$dt_repeats' is not a count" >&2; exit 2; }
for r in $rates; do
    [[ $r =~ ^[0-9]+$ ]] || { echo "bench: --rates: '$r' is not a rate in MiB/s" >&2; exit 2; }
done
for m in $modes; do
    case "$m" in precopy | hybrid | postcopy) ;; *)
        echo "bench: --modes: '$m' is not precopy, hybrid or postcopy" >&2; exit 2 ;;
    esac
done

bench_t0=$SECONDS
say() { printf '[%3d:%02d] %s\n' $(((SECONDS - bench_t0) / 60)) $(((SECONDS - bench_t0) % 60)) "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools

# have_or_install COMMAND PACKAGE: like ./configure --install-deps.
have_or_install() {
    command -v "$1" >/dev/null 2>&1 && return 0
    ((install)) || die "'$1' not found: install the Debian package $2 (or drop --no-install)"
    [ "$(id -u)" = 0 ] || die "'$1' not found and not root: apt-get install $2"
    say "installing $2 (for $1)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "$2" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || die "apt-get update failed"
        apt-get install -y -q "$2" >/dev/null || die "apt-get install $2 failed"
    fi
    command -v "$1" >/dev/null 2>&1 || die "'$1' still not found after installing $2"
}

pcd_init "$build"
pcd_preflight || die "cannot run: $PCD_SKIP_REASON"
for t in fault_floor tcp_floor; do
    [ -x "$tools/$t" ] || die "$tools/$t not built (make bench builds it)"
done
have_or_install jq jq
have_or_install gnuplot gnuplot-nox
mkdir -p "$raw" || die "cannot create $raw"
rm -f "$raw"/*.json "$out"/results.json "$out"/*.png "$out"/table.txt

# The idle-link fault figures need postcopy without its background stream.
# TODO: needs `postcopy-migrate migrate --postcopy-bulk off` (a migrate
# parameter the daemon does not have yet); until then those figures are
# null in results.json and the table says why.
migrate_help=$("$build/postcopy-migrate" migrate --help 2>&1)
if grep -q -- '--postcopy-bulk' <<<"$migrate_help"; then
    have_bulk_off=1
else
    have_bulk_off=0
fi
# Every migration: the number of bulk streams, explicitly when we can.
stream_args=()
if grep -q -- '--streams' <<<"$migrate_help"; then
    stream_args=(--streams "$bulk_streams")
elif ((bulk_streams != 1)); then
    die "--streams $bulk_streams: postcopy-migrate has no --streams (one bulk stream only)"
fi

# Daemons log at info: per-page debug logging would be measured too.
export PCD_LOG_LEVEL=${PCD_LOG_LEVEL:-info}
export PCD_READY_TIMEOUT=${PCD_READY_TIMEOUT:-180}
port_base=4500
run_no=0
failures=0

host_json() {
    jq -n --arg kernel "$(uname -r)" --argjson cpus "$(nproc)" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        --argjson mem "$(awk '/^MemTotal:/ { print $2 * 1024 }' /proc/meminfo)" \
        '{kernel: $kernel, cpus: $cpus, loadavg: $load, mem_bytes: $mem}'
}
host_json >"$raw/host-start.json"

# ---------------------------------------------------------------- floors

say "hosts: two network namespaces joined by a veth pair"
pcd_hosts_up || die "$PCD_SKIP_REASON"

say "floor: raw uffd faults resolved by a local handler ($floor_faults pages, MISSING+COPY and MINOR+CONTINUE)"
"$tools/fault_floor" --mode missing --pages "$floor_faults" >"$raw/floor-uffd-missing.json" ||
    die "fault_floor --mode missing failed"
"$tools/fault_floor" --mode minor --pages "$floor_faults" >"$raw/floor-uffd-minor.json" ||
    die "fault_floor --mode minor failed"

# The server plays the source host; the clients the destination.
floor_port=5201
ip netns exec "$PCD_NS_SRC" "$tools/tcp_floor" server --listen "$PCD_IP_SRC:$floor_port" \
    </dev/null >"$PCD_TMP/tcp_floor.out" 2>&1 &
tcp_server=$!
PCD_PIDS+=("$tcp_server")
pcd_wait_line "$PCD_TMP/tcp_floor.out" '^tcp_floor: listening' 10 "$tcp_server" >/dev/null ||
    die "tcp_floor server did not start: $(cat "$PCD_TMP/tcp_floor.out")"
tcp_client() {
    ip netns exec "$PCD_NS_DST" "$tools/tcp_floor" "$1" --connect "$PCD_IP_SRC:$floor_port" "${@:2}"
}

say "floor: raw 4 KiB request/response over TCP on the veth ($floor_rtts round trips, idle and with $bulk_streams stream(s) saturating the link)"
tcp_client pingpong --count "$floor_rtts" >"$raw/floor-tcp-rtt.json" || die "tcp_floor pingpong failed"
tcp_client loaded --count "$floor_rtts" --streams "$bulk_streams" >"$raw/floor-tcp-rtt-loaded.json" ||
    die "tcp_floor loaded failed"

say "floor: raw TCP throughput, $bulk_streams stream(s), ${stream_seconds} s"
srv_cpu0=$(pcd_cpu_ms "$tcp_server")
tcp_client stream --streams "$bulk_streams" --seconds "$stream_seconds" >"$PCD_TMP/stream.json" ||
    die "tcp_floor stream failed"
srv_cpu1=$(pcd_cpu_ms "$tcp_server")
jq --argjson s "$((srv_cpu1 - srv_cpu0))" '. + {sender_cpu_s: ($s / 1000)}' \
    "$PCD_TMP/stream.json" >"$raw/floor-tcp-stream.json"

# cold_floor OUT [AGE]: raw TCP moving $size of cold memory, shmem file to
# shmem file, the source file left AGE seconds after it was written.
cold_floor() {
    tcp_client cold --streams "$bulk_streams" --size "$(pcd_size_bytes "$size")" \
        --age "${2:-0}" >"$1.tmp" &&
        mv "$1.tmp" "$1"
}
say "floor: raw TCP moving $size of cold memory, shmem file to shmem file, $bulk_streams stream(s)"
cold_floor "$raw/floor-tcp-cold.json" || die "tcp_floor cold failed"

# raw_stream OUT SECONDS: raw TCP throughput now, with the sender's CPU
# time.  Each migration gets its own, measured just before it with its
# guests already running: the load of this machine moves within minutes.
raw_stream() {
    local c0 c1
    c0=$(pcd_cpu_ms "$tcp_server")
    tcp_client stream --streams "$bulk_streams" --seconds "$2" >"$PCD_TMP/stream.json" ||
        { say "  raw TCP stream failed"; return 1; }
    c1=$(pcd_cpu_ms "$tcp_server")
    jq --argjson s "$((c1 - c0))" '. + {sender_cpu_s: ($s / 1000)}' \
        "$PCD_TMP/stream.json" >"$1"
}

# ---------------------------------------------------------------- migrations

# proc_kib PID FIELD: a /proc/PID/status field in KiB (0 when gone).
proc_kib() {
    local k v _
    while read -r k v _; do
        [ "$k" = "$2:" ] && { echo "$v"; return; }
    done <"/proc/$1/status" 2>/dev/null
    echo 0
}

# rss_sampler OUT PID...: every 100 ms, "PID RssAnon_KiB" lines (the peak
# private memory: VmHWM also counts the shmem guest pages a daemon maps).
rss_sampler() {
    local f=$1 p k v _
    shift
    trap 'exit 0' TERM
    while :; do
        for p in "$@"; do
            while read -r k v _; do
                [ "$k" = RssAnon: ] && echo "$p $v"
            done <"/proc/$p/status" 2>/dev/null
        done
        sleep 0.1
    done >"$f"
}

peak_of() { awk -v p="$2" '$1 == p && $2 > m { m = $2 } END { print m + 0 }' "$1"; }

# run_migration TAG MODE BACKING SIZE WORKLOAD RATE VERIFY [migrate args...]
# One migration between fresh daemons and guests; writes raw/run-TAG.json:
# the CLI's --json result plus each daemon's CPU time, peak RSS, and the
# destination guest's verify line.  Fails when the migration (or the
# verification) did.
run_migration() {
    local tag=$1 mode=$2 backing=$3 gsize=$4 wl=$5 rate=$6 verify=$7
    shift 7
    local s=src-$tag d=dst-$tag vm=vm-$tag sp dp rc=0 t0 wall
    local scpu0 dcpu0 scpu1 dcpu1 sbase dbase shwm dhwm sampler tready
    local vline='' vchecked=0 vmism=-1 gb
    local mig=$raw/migrate-$tag.json
    local -a gargs=(--name "$vm" --backing "$backing" --size "$gsize"
        --vcpus "$vcpus" --workload "$wl" --dirty-rate "$rate")

    local raw_floors=1
    [[ $tag == fault-* ]] && raw_floors=0 # their floor is the round trip
    PCD_PORT=$((port_base + run_no))
    run_no=$((run_no + 1))
    pcd_daemon_start "$s" "$PCD_NS_SRC" "$PCD_IP_SRC" &&
        pcd_daemon_start "$d" "$PCD_NS_DST" "$PCD_IP_DST" ||
        {
            say "  $tag: a daemon did not start"
            pcd_dump_logs '  ' >"$raw/failed-$tag.log" 2>&1
            jq -n --arg tag "$tag" '{tag: $tag, ok: false}' >"$raw/run-$tag.json"
            stop_run "$tag"
            return 1
        }
    sp=$(pcd_daemon_pid "$s")
    dp=$(pcd_daemon_pid "$d")
    if ((verify)); then
        pcd_guest_start "g-$tag-src" "$s" "${gargs[@]}" --verify || rc=1
    else
        pcd_guest_start "g-$tag-src" "$s" "${gargs[@]}" || rc=1
    fi
    # The source guest has written its RAM when it says ready: from here
    # to the migration's start is the age of that memory (cold_floor).
    tready=$(date +%s%N)
    ((rc == 0)) && { pcd_guest_start "g-$tag-dst" "$d" "${gargs[@]}" --incoming || rc=1; }
    if ((rc)); then
        say "  $tag: a guest did not start"
        pcd_dump_logs '  ' >"$raw/failed-$tag.log" 2>&1
        jq -n --arg tag "$tag" '{tag: $tag, ok: false}' >"$raw/run-$tag.json"
        stop_run "$tag"
        return 1
    fi
    # The destination allocates the incoming guest's RAM when it attaches
    # ([daemon] prealloc, README "Performance"): let it finish, so that it
    # neither loads the raw TCP floors below nor counts in the migration.
    local prealloc_s=null pl
    if [ "$backing" != anon ] && [[ " ${PCD_DAEMON_ARGS:-} " != *" --prealloc off "* ]]; then
        if pl=$(pcd_wait_prealloc "$d" "$vm" 600) &&
            [[ $pl =~ preallocated\ in\ ([0-9.]+)\ s ]]; then
            prealloc_s=${BASH_REMATCH[1]}
        else
            say "  $tag: the destination did not preallocate: ${pl:-no line in its log}"
        fi
    fi
    [ "$wl" != idle ] && { sleep "$warmup" & wait $!; }
    # Raw TCP just before: with the source guest stopped (as during the
    # downtime: the floor of the bytes sent while paused), then running (as
    # during the rest: the floor of the total time).
    rm -f "$PCD_TMP"/raw-*.json
    if ((raw_floors)); then
        kill -STOP "$(pcd_guest_pid "g-$tag-src")"
        raw_stream "$PCD_TMP/raw-stopped-before.json" "$adj_seconds"
        kill -CONT "$(pcd_guest_pid "g-$tag-src")"
        raw_stream "$PCD_TMP/raw-running-before.json" "$adj_seconds"
    fi

    sbase=$(proc_kib "$sp" VmRSS)
    dbase=$(proc_kib "$dp" VmRSS)
    # Peak RSS from here on (the guests are attached; nothing moved yet).
    echo 5 >"/proc/$sp/clear_refs" 2>/dev/null
    echo 5 >"/proc/$dp/clear_refs" 2>/dev/null
    rss_sampler "$PCD_TMP/rss-$tag" "$sp" "$dp" &
    sampler=$!
    PCD_PIDS+=("$sampler")
    scpu0=$(pcd_cpu_ms "$sp")
    dcpu0=$(pcd_cpu_ms "$dp")
    t0=$(date +%s%N)
    PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-600} \
        pcd_migrate "$s" migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode "$mode" --json "${stream_args[@]}" "$@" >"$mig" 2>"$PCD_TMP/migrate-$tag.err" || rc=$?
    wall=$((($(date +%s%N) - t0) / 1000000))
    scpu1=$(pcd_cpu_ms "$sp")
    dcpu1=$(pcd_cpu_ms "$dp")
    shwm=$(proc_kib "$sp" VmHWM)
    dhwm=$(proc_kib "$dp" VmHWM)
    pcd_stop_pid "$sampler" 10
    if ((rc == 0 && verify)); then
        gb=$(($(pcd_size_bytes "$gsize") >> 30))
        vline=$(pcd_wait_line "$(pcd_guest_out "g-$tag-dst")" '^verify: ' $((60 + 30 * gb)) \
            "$(pcd_guest_pid "g-$tag-dst")") || vline=
        if [[ $vline =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
            vchecked=${BASH_REMATCH[1]} vmism=${BASH_REMATCH[2]}
        fi
        ((vmism == 0 && vchecked == $(pcd_size_bytes "$gsize") / 4096)) || rc=1
    fi
    ((rc)) && pcd_dump_logs '  ' >"$raw/failed-$tag.log" 2>&1
    # ... and just after: one guest running (the destination's), then none.
    # The floor of a run is the best of its samples: other load only slows.
    if ((raw_floors)); then
        raw_stream "$PCD_TMP/raw-running-after.json" "$adj_seconds"
        pcd_guest_stop "g-$tag-dst"
        pcd_guest_stop "g-$tag-src"
        raw_stream "$PCD_TMP/raw-stopped-after.json" "$adj_seconds"
    fi
    jq -n '{stopped: [inputs | select(input_filename | test("raw-stopped"))]}' \
        "$PCD_TMP"/raw-stopped-*.json >"$PCD_TMP/raw-s.json" 2>/dev/null ||
        echo '{"stopped": []}' >"$PCD_TMP/raw-s.json"
    jq -n '{running: [inputs | select(input_filename | test("raw-running"))]}' \
        "$PCD_TMP"/raw-running-*.json >"$PCD_TMP/raw-r.json" 2>/dev/null ||
        echo '{"running": []}' >"$PCD_TMP/raw-r.json"
    jq -s '.[0] + .[1]' "$PCD_TMP/raw-s.json" "$PCD_TMP/raw-r.json" >"$raw/raw-samples-$tag.json"
    jq -s -n --arg tag "$tag" --arg mode "$mode" --arg backing "$backing" \
        --argjson size "$(pcd_size_bytes "$gsize")" --arg workload "$wl" \
        --argjson rate "$rate" --argjson verify "$verify" --argjson rc "$rc" \
        --argjson wall "$wall" --argjson prealloc_s "$prealloc_s" \
        --argjson age_ms "$(((t0 - tready) / 1000000))" \
        --argjson scpu "$((scpu1 - scpu0))" --argjson dcpu "$((dcpu1 - dcpu0))" \
        --argjson sbase "$sbase" --argjson dbase "$dbase" \
        --argjson shwm "$shwm" --argjson dhwm "$dhwm" \
        --argjson sanon "$(peak_of "$PCD_TMP/rss-$tag" "$sp")" \
        --argjson danon "$(peak_of "$PCD_TMP/rss-$tag" "$dp")" \
        --arg vline "$vline" --argjson vchecked "$vchecked" --argjson vmism "$vmism" \
        --slurpfile m "$mig" --slurpfile raws "$raw/raw-samples-$tag.json" \
        '{tag: $tag, mode: $mode, backing: $backing, size_bytes: $size,
          workload: $workload, dirty_rate_mibps: $rate, verify: ($verify == 1),
          ok: ($rc == 0), wall_ms: $wall, prealloc_s: $prealloc_s,
          source_ram_age_s: ($age_ms / 1000),
          source: {cpu_s: ($scpu / 1000), rss_before_kib: $sbase,
                   vmhwm_kib: $shwm, rss_anon_peak_kib: $sanon},
          destination: {cpu_s: ($dcpu / 1000), rss_before_kib: $dbase,
                        vmhwm_kib: $dhwm, rss_anon_peak_kib: $danon},
          verified: (if $verify == 1 then {line: $vline, pages_checked: $vchecked,
                     mismatches: $vmism} else null end),
          raw_stream: ($raws[0].running | max_by(.gibps)),
          raw_stream_paused: ($raws[0].stopped | max_by(.gibps)),
          raw_samples: $raws[0], migrate: ($m[0] // null)}' >"$raw/run-$tag.json" 2>/dev/null ||
        jq -n --arg tag "$tag" '{tag: $tag, ok: false}' >"$raw/run-$tag.json"
    stop_run "$tag"
    if ((rc)); then
        say "  $tag: FAILED (status $rc; logs in raw/failed-$tag.log)"
        return 1
    fi
    say "  $tag: $(jq -r '.migrate | "total \(.["total-time"]) ms, downtime \(.downtime) ms, faults \(.ram.faults)"' "$raw/run-$tag.json")${vline:+, $vline} (${wall} ms)"
}

# Guests first (their RAM goes back), then the daemons.
stop_run() {
    local g
    for g in "g-$1-dst" "g-$1-src"; do
        pcd_guest_stop "$g"
    done
    for g in "dst-$1" "src-$1"; do
        [ -n "$(pcd_daemon_pid "$g")" ] && pcd_stop_pid "$(pcd_daemon_pid "$g")" 30
    done
}

# ---- 1. remote-fault latency
# fault_floor_sample BACKING TAG: the fault floor of BACKING now (local uffd
# fault of the same kind + TCP round trip) into raw/fault-floor-TAG.json.
# Taken just before and just after each fault run: the floor of that run is
# the lower of the two (noise from other load only ever adds).
fault_floor_sample() {
    local kind=missing
    [ "$1" = shmem ] && kind=minor
    "$tools/fault_floor" --mode "$kind" --pages "$floor_faults" >"$PCD_TMP/ff-uffd.json" &&
        tcp_client pingpong --count "$floor_rtts" >"$PCD_TMP/ff-rtt.json" &&
        jq -n --arg backing "$1" --arg tag "$2" \
            --slurpfile u "$PCD_TMP/ff-uffd.json" --slurpfile r "$PCD_TMP/ff-rtt.json" \
            '{backing: $backing, tag: $tag,
              uffd: ($u[0].fault | del(.histogram)),
              handler: ($u[0].handler | del(.histogram)),
              rtt: ($r[0].rtt | del(.histogram))}' >"$raw/fault-floor-$2.json" ||
        say "  fault floor sample $2 failed"
}

# fault_runs BACKING LOAD [migrate args...]: postcopy migrations of a guest
# that reads every page in random order, until >= min_faults faults.
fault_runs() {
    local backing=$1 load=$2 i total=0 n
    shift 2
    for ((i = 1; i <= 4 && total < min_faults; i++)); do
        fault_floor_sample "$backing" "fault-$backing-$load-$i-before"
        run_migration "fault-$backing-$load-$i" postcopy "$backing" "$fault_size" \
            idle 0 1 "$@" || { failures=$((failures + 1)); continue; }
        fault_floor_sample "$backing" "fault-$backing-$load-$i-after"
        n=$(jq '.migrate["fault-latency"].count // 0' "$raw/run-fault-$backing-$load-$i.json")
        total=$((total + n))
    done
    ((total >= min_faults)) ||
        say "  fault-$backing-$load: only $total faults (wanted $min_faults)"
}

# The floor's pingpong runs both ends on one CPU (tcp_floor.c): the same
# runs with both daemons' fault path bound to one CPU ([peer] fault-cpus)
# show what the cross-CPU wake-ups of the round trip cost here.
bound_cpu=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status |
    sed 's/[-,].*//')
for backing in shmem anon; do
    say "faults: $backing, $fault_size guest, postcopy with the bulk stream competing"
    fault_runs "$backing" loaded
    say "faults: the same, both daemons' fault path bound to CPU $bound_cpu (--fault-cpus)"
    PCD_DAEMON_ARGS="${PCD_DAEMON_ARGS:-} --fault-cpus $bound_cpu" \
        fault_runs "$backing" bound
    if ((have_bulk_off)); then
        say "faults: $backing, $fault_size guest, postcopy with the link idle (--postcopy-bulk off)"
        fault_runs "$backing" idle --postcopy-bulk off
    fi
done
((have_bulk_off)) ||
    say "faults: idle link not measured: postcopy-migrate has no --postcopy-bulk off"

# ---- 2. + 4. bulk throughput, CPU and RSS: an idle guest, precopy
# Each bulk run's cold floor is sampled twice right after it, and the
# better sample kept (as raw TCP is for every run): on a freshly booted
# machine of this kind it fell from 3.82 to 2.17 GiB/s in three
# consecutive samples, so the one taken at the start says little about
# the minute the run had.  Its source file is left as long as the guest's
# RAM was between the guest writing it and round 1 reading it: memory
# written moments before often moves faster here than memory left for
# seconds (README, Performance), and the run never gets the former.
# And the floor swings so from minute to minute here (1.6-3.3 GiB/s)
# that one pair says little: the bulk figures come from the pair whose
# ratio is the median of $bulk_pairs (the lower middle of an even count).
# bulk_pair TAG: one idle precopy and its cold floor, raw/bulk-pair-TAG.json.
bulk_pair() {
    local tag=$1 age when
    run_migration "$tag" precopy shmem "$size" idle 0 0 || failures=$((failures + 1))
    age=$(jq -r '.source_ram_age_s // 0' "$raw/run-$tag.json" 2>/dev/null) || age=0
    for when in a b; do
        cold_floor "$raw/floor-tcp-cold-$tag-$when.json" "$age" ||
            say "  cold floor ($when) after $tag failed"
    done
    cat "$raw/floor-tcp-cold-$tag"-{a,b}.json 2>/dev/null |
        jq -s --arg tag "$tag" '{tag: $tag, floor: (max_by(.gibps) // null)}' \
            >"$raw/bulk-pair-$tag.json"
}
say "bulk: idle $size shmem guest, precopy, $bulk_pairs time(s), the cold floor sampled twice after each"
bulk_pair bulk
for ((i = 2; i <= bulk_pairs; i++)); do
    bulk_pair "bulk-$i"
done
# The same with the destination's RAM allocated as pages arrive: what the
# first touch of fresh memory costs on this host.
say "bulk: idle $size shmem guest, precopy, destination RAM not preallocated"
PCD_DAEMON_ARGS="${PCD_DAEMON_ARGS:-} --prealloc off" \
    run_migration bulk-cold precopy shmem "$size" idle 0 0 || failures=$((failures + 1))
# Its floor besides raw TCP: how fast this host hands out fresh memory.
# Taken right after it (freed memory soon goes back to the host: a later
# sample would see warmer or colder memory than the run did).
say "floor: first touch of fresh memory (1 GiB memfd, MADV_POPULATE_WRITE)"
"$tools/fault_floor" --mode populate --size 1G >"$raw/floor-populate.json" ||
    { say "  populate floor failed"; echo '{"populate": null}' >"$raw/floor-populate.json"; }
. "$here/tls.sh" # TLS's cost to bulk: tls_bulk_gibps, plain_bulk_gibps, tls_cost_pct

# ---- 3. downtime and total time
# Precopy gets the time for about two full rounds, so that it converges
# where the link allows it, and no more: 1024 MiB/s never converges.
if [ "$max_precopy_ms" = auto ]; then
    r1=$(jq '.migrate["round-stats"][0]["duration-ms"] // 0 | floor' "$raw/run-bulk.json" 2>/dev/null) || r1=0
    max_precopy_ms=$((2 * ${r1:-0}))
    ((max_precopy_ms < 5000)) && max_precopy_ms=5000
    ((max_precopy_ms > 20000)) && max_precopy_ms=20000
    say "precopy bounded to $max_precopy_ms ms (--max-precopy-time: twice the idle round 1)"
fi
for rate in $rates; do
    for mode in $modes; do
        say "downtime: $mode, $size shmem guest, random writes at $rate MiB/s"
        run_migration "$mode-$rate" "$mode" shmem "$size" random "$rate" 0 \
            --max-precopy-time "$max_precopy_ms" || failures=$((failures + 1))
    done
done

# ---- 3b. postcopy on anonymous RAM at the same rates: shmem's reference
if [[ " $modes " == *" postcopy "* ]]; then
    for rate in $rates; do
        say "postcopy: $size anon guest, random writes at $rate MiB/s"
        run_migration "postcopy-anon-$rate" postcopy anon "$size" random "$rate" 0 ||
            failures=$((failures + 1))
    done
fi

# ---- 3c. hybrid downtime against guest size: flat, or growing with it?
# Several runs each: on this VM a pause now and then waits out a stall of
# the host (both CPUs at once, 5-55 ms, seen in scheduler traces), and one
# such run would decide the comparison.  Each with both trackers, side by
# side: async-wp's final scan walks every page-table entry of the guest,
# sync-wp's final collect costs per page written since the last round.
for gs in $dt_sizes; do
    for i in $(seq 1 "$dt_repeats"); do
        say "downtime by size: hybrid, $gs shmem guest, random writes at $dt_rate MiB/s ($i of $dt_repeats)"
        run_migration "hybrid-size-$gs-$i" hybrid shmem "$gs" random "$dt_rate" 0 \
            --max-precopy-time "$max_precopy_ms" || failures=$((failures + 1))
        say "downtime by size: the same with --dirty-tracking sync-wp"
        run_migration "hybrid-syncwp-$gs-$i" hybrid shmem "$gs" random "$dt_rate" 0 \
            --max-precopy-time "$max_precopy_ms" --dirty-tracking sync-wp ||
            failures=$((failures + 1))
    done
done

# ---- proof: one verified run per mode
for mode in $modes; do
    say "verify: $mode, $verify_size shmem guest at $verify_rate MiB/s, --verify"
    run_migration "verify-$mode" "$mode" shmem "$verify_size" random "$verify_rate" 1 \
        --max-precopy-time "$max_precopy_ms" || failures=$((failures + 1))
done

# ---- 5. QEMU side by side (its own namespaces, QEMUs and daemons)
qc_ok=0
if ((qemu_compare)); then
    if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v socat >/dev/null 2>&1; then
        say "qemu_compare: skipped (qemu-system-x86 or socat not installed)"
    elif [ ! -r "$build/testvm/testvm.elf" ]; then
        say "qemu_compare: skipped ($build/testvm/testvm.elf not built)"
    else
        say "qemu_compare: QEMU postcopy vs postcopyd on a real QEMU guest"
        qc_args=(--build "$build" --out "$out")
        ((quick)) && qc_args+=(--quick)
        "$here/qemu_compare.sh" "${qc_args[@]}" >"$raw/qemu_compare.log" 2>&1 ||
            { say "  qemu_compare: a run failed (see $raw/qemu_compare.log)"; failures=$((failures + 1)); }
        grep '^\[qemu_compare' "$raw/qemu_compare.log" | sed 's/^/  /' >&2
        [ -r "$out/qemu_compare.json" ] && qc_ok=1
    fi
fi

host_json >"$raw/host-end.json"

# ---------------------------------------------------------------- results

say "results: $out/results.json"
jq -n -f "$here/results.jq" \
    --arg rates "$rates" --arg modes "$modes" --arg size "$size" --arg dt_sizes "$dt_sizes" --argjson dt_rate "$dt_rate" \
    --arg fault_size "$fault_size" --argjson min_faults "$min_faults" \
    --argjson have_bulk_off "$have_bulk_off" --argjson bulk_streams "$bulk_streams" \
    --argjson max_precopy_ms "$max_precopy_ms" --argjson elapsed "$((SECONDS - bench_t0))" \
    --argjson raw_sample_s "$adj_seconds" \
    --slurpfile host0 "$raw/host-start.json" --slurpfile host1 "$raw/host-end.json" \
    --slurpfile uffd_missing "$raw/floor-uffd-missing.json" \
    --slurpfile uffd_minor "$raw/floor-uffd-minor.json" \
    --slurpfile rtt "$raw/floor-tcp-rtt.json" \
    --slurpfile rtt_loaded "$raw/floor-tcp-rtt-loaded.json" \
    --slurpfile stream "$raw/floor-tcp-stream.json" \
    --slurpfile cold_floor "$raw/floor-tcp-cold.json" \
    --slurpfile bulk_pairs <(cat "$raw"/bulk-pair-*.json 2>/dev/null) \
    --slurpfile populate "$raw/floor-populate.json" \
    --slurpfile runs <(cat "$raw"/run-*.json 2>/dev/null) \
    --slurpfile fault_floors <(cat "$raw"/fault-floor-*.json 2>/dev/null) \
    >"$out/results.json" || die "could not assemble results.json"
tls_results "$out/results.json"
if ((qc_ok)); then
    jq --slurpfile q "$out/qemu_compare.json" '.qemu_compare = $q[0]' "$out/results.json" \
        >"$out/results.json.tmp" && mv "$out/results.json.tmp" "$out/results.json"
fi

"$here/report.sh" "$out" | tee "$out/table.txt"
((qc_ok)) && { echo; cat "$out/qemu_compare.txt"; } | tee -a "$out/table.txt"
"$here/plot.sh" "$out" || { say "gnuplot failed"; failures=$((failures + 1)); }

say "done in $(((SECONDS - bench_t0) / 60)) min $(((SECONDS - bench_t0) % 60)) s: $out/{results.json,table.txt,latency.png,downtime.png,qemu_compare.png}"
if ((failures)); then
    say "$failures measurement(s) failed: see $raw/failed-*.log"
    exit 1
fi
exit 0
