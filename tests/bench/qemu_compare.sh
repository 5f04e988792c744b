#!/bin/bash
# qemu_compare.sh - postcopyd beside QEMU's own postcopy, migrating the same
# real QEMU guest (tools/testvm, TCG, memfd RAM, share=50: it rewrites and
# checks half its RAM every pass) over the same veth between two network
# namespaces (tests/e2e/lib.sh).  Part of `make bench` (bench.sh), or alone:
#
#   tests/bench/qemu_compare.sh --build build [--out DIR] [--quick] [--runs N]
#
# Each round runs, on fresh QEMUs:
#   qemu_postcopy          QEMU 7.2: migrate, then migrate-start-postcopy at once
#   qemu_postcopy_precopy  the same after 1.5 s of precopy
#   postcopyd_hybrid       postcopy-migrate attach on both hosts, migrate --mode hybrid
#   postcopyd_postcopy     the same, --mode postcopy
# Figures per run:
#   total_s        command issued -> completion (QEMU: the later of both
#                  sides' MIGRATION "completed" event; postcopyd: the CLI returns)
#   downtime_ms    source QEMU's STOP event -> destination QEMU's RESUME event
#                  (QMP event timestamps, read by a listener on a monitor of
#                  its own started before the migration; one machine, one clock)
#   passes_during  guest passes completed between the command and completion,
#                  across both QEMUs' serial output (each line timestamped as
#                  it arrives through a FIFO)
#   passes_after_1s passes completed in the second after completion
#   pass_rate_before passes/s over the 3 s before the command (the guest's own speed)
#   blocktime_ms   the destination vCPU's time blocked on missing pages (QEMU:
#                  capability postcopy-blocktime, query-migrate on the
#                  destination; postcopyd: its vcpu-blocktime for the vCPU thread)
# Every run then checks the guest: the destination runs on for 3 more passes,
# the pass stream across both QEMUs has no gap and 0 errors, the destination
# QEMU is running.  A run that fails this is reported as failed, never as a figure.
# Ratios: each figure's median over the rounds / qemu_postcopy's.
#
# Writes OUT/qemu_compare.json, OUT/qemu_compare.txt (the table),
# OUT/qemu_compare.png, and OUT/raw/qc-*.json; bench.sh merges the JSON into
# results.json under "qemu_compare" and appends the table to table.txt.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../e2e/lib.sh"
# shellcheck source=tests/lib/qemu.sh
. "$here/../lib/qemu.sh"

build=${POSTCOPYD_BUILD:-build}
out=
mem=1024
runs=2
modes="qemu_postcopy qemu_postcopy_precopy postcopyd_hybrid postcopyd_postcopy"
precopy_s=1.5
after_passes=3
report_only=0

usage() {
    cat <<EOF
Usage: $0 [options]
  --build DIR    build dir [$build]
  --out DIR      results directory [BUILD/bench]
  --mem MIB      guest RAM [$mem]
  --runs N       rounds (each runs every mode once) [$runs]
  --modes 'M..'  [$modes]
  --quick        256 MiB guest, one round
  --keep         keep the logs (path printed)
  --report-only  no runs: rebuild qemu_compare.{json,txt,png} from OUT/raw/qc-*.json
EOF
}
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --quick) mem=256 runs=1; shift ;;
    --keep) export PCD_KEEP=1; shift ;;
    --report-only) report_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "qemu_compare: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $mem =~ ^[0-9]+$ && $runs =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
build=${build%/}
out=${out:-$build/bench}
raw=$out/raw
export POSTCOPYD_BUILD=$build
export PCD_LOG_LEVEL=${PCD_LOG_LEVEL:-info}
export PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-300}

t_start=$SECONDS
say() { printf '[qemu_compare %3d s] %s\n' $((SECONDS - t_start)) "$*" >&2; }
die() { echo "qemu_compare: $*" >&2; exit 1; }

aggregate() {
    local cfg
    cfg=$(jq -s -c '{mem: (map(.mem_mib // empty) | first // 0), runs: (map(.round) | max)}' "$raw"/qc-*.json) || return 1
jq -s --argjson mem "$(jq .mem <<<"$cfg")" --argjson runs "$(jq .runs <<<"$cfg")" --arg modes "$modes" '
    def median: sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r3: if . == null then null else (. * 1000 | round) / 1000 end;
    def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else ($a / $b | r3) end;
    . as $all
    | ($modes | split(" ") | map(select(. != ""))) as $ml
    | (reduce $ml[] as $m ({};
        ($all | map(select(.mode == $m and .ok))) as $rs
        | .[$m] = {runs_ok: ($rs | length), runs_failed: ($all | map(select(.mode == $m and (.ok | not))) | length),
                   total_s: ($rs | map(.total_s) | median | r3),
                   downtime_ms: ($rs | map(.downtime_ms) | median | r3),
                   passes_during: ($rs | map(.passes_during) | median),
                   pass_rate_during: ($rs | map(.passes_during / .total_s) | median | r3),
                   passes_after_1s: ($rs | map(.passes_after_1s) | median),
                   pass_rate_before: ($rs | map(.pass_rate_before) | median | r3),
                   blocktime_ms: ($rs | map(.blocktime_ms) | map(select(. != null)) | median | r3),
                   prealloc_s: ($rs | map(.prealloc_s) | map(select(. != null)) | median),
                   each: ($rs | map({round, total_s: (.total_s | r3), downtime_ms: (.downtime_ms | r3),
                                     passes_during, passes_after_1s, pass_rate_before: (.pass_rate_before | r3),
                                     blocktime_ms, prealloc_s}))})) as $by
    | ($by.qemu_postcopy // {}) as $q
    | reduce $ml[] as $m ($by;
        .[$m] += {total_ratio: ratio($by[$m].total_s; $q.total_s),
                  downtime_ratio: ratio($by[$m].downtime_ms; $q.downtime_ms),
                  passes_during_ratio: ratio($by[$m].passes_during; $q.passes_during)})
    | . + {config: {mem_mib: $mem, runs: $runs, modes: $ml,
                    targets: {total_ratio: "<= 0.5", downtime_ratio: "<= 1", passes_during_ratio: ">= 2"}},
           failed: ($all | map(select(.ok | not) | {mode, round, why})),
           runs: $all}' "$raw"/qc-*.json >"$out/qemu_compare.json" ||
        die "could not assemble $out/qemu_compare.json"
    "$here/qemu_compare_report.sh" "$out" | tee "$out/qemu_compare.txt"
}
if ((report_only)); then
    aggregate
    exit
fi

pcd_init "$build"
pcd_preflight || die "cannot run: $PCD_SKIP_REASON"
command -v "$QEMU_BIN" >/dev/null || die "$QEMU_BIN not installed (qemu-system-x86)"
command -v socat >/dev/null || die "socat not installed"
command -v jq >/dev/null || die "jq not installed"
[ -r "$(qemu_testvm)" ] || die "$(qemu_testvm) not built"
mkdir -p "$raw" || die "cannot create $raw"
rm -f "$raw"/qc-*.json "$out"/qemu_compare.*
trap 'qemu_cleanup; pcd_cleanup' EXIT
pcd_hosts_up || die "$PCD_SKIP_REASON"
say "hosts $PCD_NS_SRC / $PCD_NS_DST, ${mem} MiB guest, $runs round(s), logs in $PCD_TMP"

now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# serial_reader FIFO RAW TS: the guest's serial port, as QEMU writes it, into
# RAW (what tests/lib/qemu.sh reads) and TS ("EPOCH_US LINE" per complete
# line).  A line cut by the switchover is flushed raw, without a newline.
serial_reader() {
    local line t
    exec <"$1"
    while IFS= read -r line; do
        t=$EPOCHREALTIME
        printf '%s\n' "$line" >>"$2"
        printf '%s %s\n' "${t/./}" "$line" >>"$3"
    done
    [ -n "$line" ] && printf '%s' "$line" >>"$2"
    exit 0
}

# qmp_listen SOCK FILE: every QMP event of SOCK's QEMU into FILE, one JSON a
# line, until QEMU closes the socket.  Prints the listener's pid.
qmp_listen() {
    local sock=$1 file=$2 i
    : >"$file"
    # socat's address syntax has no room for the JSON: a script says it.
    [ -r "$qdir/listen.sh" ] || printf '%s\n' '#!/bin/sh' \
        "echo '{\"execute\":\"qmp_capabilities\"}'" 'exec cat >>"$1"' >"$qdir/listen.sh"
    socat -t 1 "UNIX-CONNECT:$sock" "SYSTEM:sh $qdir/listen.sh $file" \
        </dev/null 2>/dev/null &
    PCD_PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do
        grep -q '"return"' "$file" 2>/dev/null && { echo "$!"; return 0; }
        sleep 0.02
    done
    return 1
}

# qmp_cmds SOCK JSON...: one QMP session, commands sent back to back (no
# new connection in between), every reply printed.  Fails on an error.
qmp_cmds() {
    local sock=$1 line cmd rc=0 fd_in fd_out
    shift
    coproc QC { exec socat -t 30 - "UNIX-CONNECT:$sock" 2>/dev/null; }
    fd_in=${QC[0]} fd_out=${QC[1]}
    read -r -t 30 -u "$fd_in" line
    for cmd in '{"execute":"qmp_capabilities"}' "$@"; do
        printf '%s\n' "$cmd" 1>&"$fd_out"
        while read -r -t 30 -u "$fd_in" line; do
            [[ $line == *'"return"'* ]] && break
            [[ $line == *'"error"'* ]] && { rc=1; break; }
        done
        printf '%s\n' "$line"
        ((rc)) && break
    done
    exec {fd_out}>&-
    kill "$QC_PID" 2>/dev/null
    wait "$QC_PID" 2>/dev/null
    return $rc
}

# event_us FILE EVENT [JQ_FILTER] [AFTER_US]: timestamp (us) of the first
# EVENT in FILE after AFTER_US matching the filter; empty when none.
event_us() {
    jq -r --arg e "$2" --argjson after "${4:-0}" \
        "select(.event == \$e) | select(${3:-true})
         | (.timestamp.seconds * 1000000 + .timestamp.microseconds)
         | select(. > \$after)" "$1" 2>/dev/null | head -n 1
}

qdir=$PCD_TMP/qemu
mkdir -p "$qdir"
declare -A READER

# start_vm NAME NETNS [--incoming]: a QEMU with the test guest, its serial
# port through a timestamping FIFO, QMP sockets: NAME.qmp (postcopyd's, or
# our commands in QEMU runs), NAME.qmp.mon (the event listener), NAME.qmp.q
# (queries).
start_vm() {
    local name=$1 ns=$2
    shift 2
    rm -f "$qdir/$name".{serial,ts,fifo}
    mkfifo "$qdir/$name.fifo" || return 1
    serial_reader "$qdir/$name.fifo" "$qdir/$name.serial" "$qdir/$name.ts" &
    READER[$name]=$!
    PCD_PIDS+=("$!")
    qemu_start "$name" "$mem" memfd "$qdir/$name.fifo" "$qdir/$name.qmp" \
        --netns "$ns" --append "share=50" "$@" \
        -- -qmp "unix:$qdir/$name.qmp.mon,server=on,wait=off" \
        -qmp "unix:$qdir/$name.qmp.q,server=on,wait=off"
}

stop_vm() {
    qemu_stop "$1"
    [ -n "${READER[$1]:-}" ] && pcd_stop_pid "${READER[$1]}" 10
    unset "READER[$1]"
}

# passes_between SRC_TS DST_TS FROM_US TO_US: passes completed (pass lines)
# in (FROM, TO], across both QEMUs.  A line cut at the switchover ends at the
# destination: the continuation counts as the next pass.
passes_between() {
    cat "$1" "$2" 2>/dev/null | awk -v from="$3" -v to="$4" '
        { t = $1; $1 = ""; sub(/^ /, "") }
        /^pass [0-9]+ errors [0-9]+$/ { if (t > from && t <= to) n++; next }
        /^testvm: / { next }
        { if (t > from && t <= to) n++ } # a cut line completed here
        END { print n + 0 }'
}

# verify_guest SRC DST: the destination runs AFTER_PASSES passes past the
# source's last, the stream holds with 0 errors, the destination runs.
verify_guest() {
    local src=$1 dst=$2 last got st
    last=$(serial_last_pass "$qdir/$src.serial") || last="0 0"
    got=$(serial_wait_passes "$qdir/$dst.serial" $((${last%% *} + after_passes)) 120 \
        "${QEMU_PID[$dst]}") ||
        { echo "the destination guest did not run $after_passes passes past ${last%% *}: $got"; return 1; }
    got=$(serial_stream_ok "$qdir/$src.serial" "$qdir/$dst.serial") ||
        { echo "the guest's pass stream: $got"; return 1; }
    st=$(qmp_cmd "$qdir/$dst.qmp.q" '{"execute":"query-status"}' 5 |
        sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p')
    [ "$st" = running ] || { echo "destination QEMU status '$st', not running"; return 1; }
    echo "$got, source stopped after pass ${last%% *}"
}

# vcpu_tid NAME: the thread id of vCPU 0 (query-cpus-fast).
vcpu_tid() {
    qmp_cmd "$qdir/$1.qmp.q" '{"execute":"query-cpus-fast"}' 5 |
        jq -r '.return[0]["thread-id"] // empty' 2>/dev/null
}

# ---------------------------------------------------------------- one run

# run_one MODE ROUND: one migration, raw/qc-MODE-ROUND.json.
run_one() {
    local mode=$1 round=$2 tag=$1-$2 src dst why='' t0 t_end stop_us resume_us
    local port=$((4600 + round)) info=null detail vtid pre_s='null' mig
    src=$tag-src dst=$tag-dst
    local j=$raw/qc-$tag.json
    if ! start_vm "$src" "$PCD_NS_SRC" || ! start_vm "$dst" "$PCD_NS_DST" --incoming; then
        why="QEMU did not start"
    elif ! serial_wait_passes "$qdir/$src.serial" 3 180 "${QEMU_PID[$src]}" >/dev/null; then
        why="the source guest did not reach pass 3"
    fi
    if [ -z "$why" ]; then
        case "$mode" in
        qemu_*)
            local caps='{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":true},{"capability":"events","state":true}]}}'
            local dcaps='{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":true},{"capability":"postcopy-blocktime","state":true},{"capability":"events","state":true}]}}'
            qmp_cmds "$qdir/$src.qmp" "$caps" >/dev/null &&
                qmp_cmds "$qdir/$dst.qmp" "$dcaps" \
                    '{"execute":"migrate-incoming","arguments":{"uri":"tcp:'"$PCD_IP_DST:$port"'"}}' >/dev/null ||
                why="QMP set-up failed"
            ;;
        postcopyd_*)
            pcd_ensure_daemons >/dev/null || why="the daemons did not start"
            if [ -z "$why" ]; then
                pcd_migrate src attach --pid "${QEMU_PID[$src]}" --qmp "$qdir/$src.qmp" \
                    --name "vm-$tag" >"$qdir/$tag.attach" 2>&1 &&
                    pcd_migrate dst attach --pid "${QEMU_PID[$dst]}" --qmp "$qdir/$dst.qmp" \
                        --name "vm-$tag" --incoming >>"$qdir/$tag.attach" 2>&1 ||
                    why="attach failed: $(tr '\n' ' ' <"$qdir/$tag.attach")"
            fi
            # The destination daemon preallocates the incoming RAM at
            # attach: not inside the migration, but reported.
            if [ -z "$why" ] && pl=$(pcd_wait_prealloc dst "vm-$tag" 300) &&
                [[ $pl =~ preallocated\ in\ ([0-9.]+)\ s ]]; then
                pre_s=${BASH_REMATCH[1]}
            fi
            ;;
        esac
    fi
    if [ -z "$why" ]; then
        qmp_listen "$qdir/$src.qmp.mon" "$qdir/$src.events" >/dev/null &&
            qmp_listen "$qdir/$dst.qmp.mon" "$qdir/$dst.events" >/dev/null ||
            why="no QMP event listener"
    fi
    if [ -z "$why" ]; then
        sleep 3 # the guest's own speed, before
        t0=$(now_us)
        case "$mode" in
        qemu_postcopy | qemu_postcopy_precopy)
            local go='{"execute":"migrate","arguments":{"uri":"tcp:'"$PCD_IP_DST:$port"'"}}'
            local pc='{"execute":"migrate-start-postcopy"}'
            if [ "$mode" = qemu_postcopy ]; then
                qmp_cmds "$qdir/$src.qmp" "$go" "$pc" >/dev/null || why="migrate failed"
            else
                qmp_cmds "$qdir/$src.qmp" "$go" >/dev/null || why="migrate failed"
                sleep "$precopy_s"
                qmp_cmds "$qdir/$src.qmp" "$pc" >/dev/null || why="migrate-start-postcopy failed"
            fi
            local sdone ddone
            if [ -z "$why" ]; then
                for ((i = 0; i < 1200; i++)); do
                    sdone=$(event_us "$qdir/$src.events" MIGRATION '.data.status == "completed"' "$t0")
                    ddone=$(event_us "$qdir/$dst.events" MIGRATION '.data.status == "completed"' "$t0")
                    [ -n "$sdone" ] && [ -n "$ddone" ] && break
                    grep -q '"status": "failed"' "$qdir/$src.events" "$qdir/$dst.events" && break
                    sleep 0.05
                done
                if [ -n "$sdone" ] && [ -n "$ddone" ]; then
                    t_end=$((sdone > ddone ? sdone : ddone))
                    info=$(qmp_cmds "$qdir/$dst.qmp" '{"execute":"query-migrate"}' | tail -n 1 |
                        jq -c '.return') || info=null
                    qmp_cmds "$qdir/$src.qmp" '{"execute":"query-migrate"}' | tail -n 1 |
                        jq -c '.return' >"$qdir/$tag.src-migrate.json"
                else
                    why="QEMU's migration did not complete: src ${sdone:-no} dst ${ddone:-no}"
                fi
            fi
            ;;
        postcopyd_*)
            mig=$qdir/$tag.migrate.json
            pcd_migrate src migrate --vm "vm-$tag" --to "$PCD_IP_DST:$PCD_PORT" \
                --mode "${mode#postcopyd_}" --json >"$mig" 2>"$qdir/$tag.migrate.err" ||
                why="postcopy-migrate migrate failed: $(tail -n 3 "$qdir/$tag.migrate.err" | tr '\n' ' ')"
            t_end=$(now_us)
            info=$(jq -c . "$mig" 2>/dev/null) || info=null
            [ -n "$info" ] || info=null
            ;;
        esac
    fi
    if [ -z "$why" ]; then
        sleep 1.1 # the second after
        stop_us=$(event_us "$qdir/$src.events" STOP true "$t0")
        resume_us=$(event_us "$qdir/$dst.events" RESUME true "$t0")
        [ -n "$stop_us" ] && [ -n "$resume_us" ] ||
            why="no STOP (${stop_us:-none}) / RESUME (${resume_us:-none}) event"
    fi
    [ -z "$why" ] && vtid=$(vcpu_tid "$dst")
    if [ -z "$why" ]; then
        detail=$(verify_guest "$src" "$dst") || why=$detail
    fi
    if [ -n "$why" ]; then
        say "  $tag: FAILED: $why"
        {
            echo "$tag: $why"
            for f in "$src" "$dst"; do
                echo "--- $f serial (tail), stderr"
                tail -n 5 "$qdir/$f.serial" "$qdir/$f.fifo.err" 2>/dev/null
            done
            pcd_dump_logs '  ' 2>&1
        } >"$raw/qc-failed-$tag.log"
        jq -n --arg mode "$mode" --argjson round "$round" --arg why "$why" \
            '{mode: $mode, round: $round, ok: false, why: $why}' >"$j"
    else
        local s_ts=$qdir/$src.ts d_ts=$qdir/$dst.ts
        jq -n --arg mode "$mode" --argjson round "$round" --argjson mem "$mem" \
            --argjson t0 "$t0" --argjson t_end "$t_end" \
            --argjson stop "$stop_us" --argjson resume "$resume_us" \
            --argjson during "$(passes_between "$s_ts" "$d_ts" "$t0" "$t_end")" \
            --argjson after "$(passes_between "$s_ts" "$d_ts" "$t_end" $((t_end + 1000000)))" \
            --argjson before "$(passes_between "$s_ts" "$d_ts" $((t0 - 3000000)) "$t0")" \
            --arg vtid "${vtid:-}" --argjson pre "$pre_s" --arg detail "$detail" \
            --argjson info "$info" '
            ($info["vcpu-blocktime"] // null) as $vb
            | {mode: $mode, round: $round, ok: true, mem_mib: $mem,
               total_s: (($t_end - $t0) / 1e6),
               downtime_ms: (($resume - $stop) / 1e3),
               passes_during: $during, passes_after_1s: $after,
               pass_rate_before: ($before / 3),
               blocktime_ms: (if $mode | startswith("qemu") then
                                ($info["postcopy-vcpu-blocktime"][0] // $info["postcopy-blocktime"] // null)
                              else ($vb // [] | map(select((.tid | tostring) == $vtid)) | first | .["blocked-ms"] // null) end),
               blocktime_all_threads_ms: (if $vb then ($vb | map(.["blocked-ms"]) | add) else null end),
               stop_to_start_of_migration_s: (($stop - $t0) / 1e6),
               own_downtime_ms: ($info.downtime // null),
               own_total_ms: ($info["total-time"] // null),
               prealloc_s: $pre, verified: $detail, info: $info}' >"$j"
        say "  $tag: $(jq -r '"total \(.total_s) s, downtime \(.downtime_ms) ms, passes during \(.passes_during) (after: \(.passes_after_1s) in 1 s, before: \(.pass_rate_before)/s), blocktime \(.blocktime_ms) ms"' "$j"); $detail"
    fi
    stop_vm "$src"
    stop_vm "$dst"
    [ -z "$why" ]
}

failures=0
for ((r = 1; r <= runs; r++)); do
    for m in $modes; do
        say "round $r: $m"
        run_one "$m" "$r" || failures=$((failures + 1))
    done
done

# ---------------------------------------------------------------- results

aggregate
say "done: $out/qemu_compare.{json,txt,png}"
((failures == 0))
