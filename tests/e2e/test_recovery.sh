#!/bin/bash
# shellcheck disable=SC2016 # the bash -c scripts expand their own arguments
# test_recovery.sh - end-to-end failure handling between two "hosts"
# (network namespaces joined by a veth pair, see lib.sh), with postcopy-guest
# VMs whose vCPUs keep writing:
#
#   1. the link cut mid-postcopy for a random 1-3 s at a random point (link
#      down in the source namespace, daemons with --peer-timeout 1000
#      --keepalive 1, the link throttled so that postcopy lasts seconds), and
#      the connections killed with `ss -K`, which always pauses;
#   2. SIGKILL of the destination, then of the source daemon mid-postcopy,
#      restarted with the same flags and state dir while the guests attach
#      again (--reattach): a shmem guest in postcopy, an anon one in hybrid;
#   3. `postcopy-migrate recover` as soon as a long cut ends;
#   4. cancel during precopy: the source VM runs on, and a second migration
#      to the same destination guest succeeds;
#   5. the adversarial guest (--last-writes at the pause), hybrid and precopy;
#   6. garbage on the peer port, the control and the attach sockets; peer
#      authentication: a wrong or missing key is refused, the right one works.
#
# Every migration asserts: postcopy-migrate reports completed, or stopped
# following at postcopy-paused (or lost its daemon, killed on purpose) and
# `status` then reports completed on both daemons; the destination guest
# checks every page against the digests taken at the switchover (0
# mismatches, and 0 pages overwritten after it wrote them where it runs
# --verify-write); it still runs, silent on stderr; both daemons are alive.
#
# Prints TAP.  Run by tests/run-tests.sh (as `test_recovery.sh --tap`, build
# dir in $POSTCOPYD_BUILD) or by hand:
#
#   tests/e2e/test_recovery.sh --build build-g [--keep] [--seed N]
#   tests/e2e/test_recovery.sh --only link-cut --cut-rounds 20   # soak.sh
#   tests/e2e/test_recovery.sh --only kill,recover               # a few
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

usage() {
    echo "usage: $0 [--tap] [--build DIR] [--keep] [--seed N]" \
        "[--only all|SECTION,...] [--cut-rounds N]" >&2
    echo "  sections: $SECTIONS" >&2
    exit 2
}

SECTIONS="link-cut kill-conn kill recover cancel last-writes garbage keys"
build=${POSTCOPYD_BUILD:-build}
ONLY=all
CUT_ROUNDS=3
SEED=
while [ $# -gt 0 ]; do
    case "$1" in
    --tap) shift ;;
    --build) build=${2:-}; shift 2 || usage ;;
    --build=*) build=${1#*=}; shift ;;
    --keep) export PCD_KEEP=1; shift ;;
    --seed) SEED=${2:-}; shift 2 || usage ;;
    --only) ONLY=${2:-}; shift 2 || usage ;;
    --cut-rounds) CUT_ROUNDS=${2:-}; shift 2 || usage ;;
    *) usage ;;
    esac
done
[[ $CUT_ROUNDS =~ ^[0-9]+$ ]] || usage
for o in ${ONLY//,/ }; do
    [ "$o" = all ] || [[ " $SECTIONS " == *" $o "* ]] || usage
done
[ -n "$SEED" ] || SEED=$(($(date +%s%N) % 32768))
[[ $SEED =~ ^[0-9]+$ ]] || usage
RANDOM=$SEED

RATE=64              # guest dirty rate, MiB/s (0: flat out)
VCPUS=2
CUT_SIZE=256M        # link cut, ss -K, recover
KILL_SIZE=256M       # daemon SIGKILL
CANCEL_SIZE=256M     # cancel during precopy
SMALL_SIZE=128M      # adversarial guest, authentication, garbage
# The source's egress is throttled during tests 1-3 so that postcopy of
# CUT_SIZE lasts a few seconds: there is a postcopy to cut.
THROTTLE=${PCD_THROTTLE:-700mbit}
PEER_FLAGS=(--peer-timeout 1000 --keepalive 1)
FINISH_TIMEOUT=60    # s a disrupted migration may take to complete
PAUSE_LIMIT=15       # s it may stay paused once the disruption is over
export PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-90}

want() { [ "$ONLY" = all ] || [[ ",$ONLY," == *",$1,"* ]]; }

TESTS=()
if want link-cut; then
    for ((r = 1; r <= CUT_ROUNDS; r++)); do
        TESTS+=("link cut mid-postcopy for a random 1-3 s, round $r/$CUT_ROUNDS: completes intact")
    done
fi
want kill-conn && TESTS+=(
    "connections killed (ss -K) mid-postcopy: pauses, recovers, completes intact")
want kill && TESTS+=(
    "SIGKILL of the destination daemon mid-postcopy (shmem, postcopy): restarted, completes intact"
    "SIGKILL of the source daemon mid-postcopy (shmem, postcopy): restarted, completes intact"
    "SIGKILL of the destination daemon mid-postcopy (anon, hybrid): restarted, completes intact"
    "SIGKILL of the source daemon mid-postcopy (anon, hybrid): restarted, completes intact")
want recover && TESTS+=(
    "recover right after a cut that paused the migration: completes intact")
want cancel && TESTS+=(
    "cancel during precopy: migrate exits non-zero reporting cancelled"
    "after the cancel the source VM runs unpaused: its workload progresses"
    "the cancelled VM migrates intact to the same destination guest")
want last-writes && TESTS+=(
    "adversarial guest (--last-writes 512), hybrid: 0 mismatches"
    "adversarial guest (--last-writes 512), precopy: 0 mismatches")
want garbage && TESTS+=(
    "garbage on the peer port, control and attach sockets: the daemons keep serving")
want keys && TESTS+=(
    "a wrong or missing pre-shared key is refused with a one-line reason"
    "the right pre-shared key (mode 0600): the migration works")


pcd_init "$build"
echo "1..${#TESTS[@]}"


pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
IF_SRC=pcs$$   # the source end of the veth pair (named by pcd_hosts_up)
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"
echo "# seed $SEED (rerun the same cut points with --seed $SEED)"

# ---------------------------------------------------------------- helpers

now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

# sleep_ms MS: interruptible sleep.
sleep_ms() {
    sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))" & wait $!
}

# json_get FILE|- PATH: one scalar of a query-migrate object printed by the
# CLI (lib.sh's pcd_json_get).
json_get() { pcd_json_get "$@"; }

# mig_field DAEMON VM FIELD: one field of `status --vm VM --json` there.
mig_field() {
    PCD_MIGRATE_TIMEOUT=10 pcd_migrate "$1" status --vm "$2" --json 2>/dev/null |
        json_get - "$3"
}

# wait_status DAEMON VM ERE TIMEOUT_S: poll the status until it matches;
# W_STATUS is the last one seen.
W_STATUS=
wait_status() {
    local d=$1 vm=$2 re=$3 end=$((SECONDS + $4))
    while :; do
        W_STATUS=$(mig_field "$d" "$vm" status)
        [[ $W_STATUS =~ $re ]] && return 0
        ((SECONDS >= end)) && return 1
        sleep 0.05 & wait $!
    done
}

# ---------------------------------------------------------------- daemons

declare -A D_FLAGS   # daemon name -> its extra flags, one per line
D_GEN=0

# daemon_start NAME [extra flags...]: remember the flags for a restart.
daemon_start() {
    local name=$1 ns ip
    shift
    if [ "$name" = src ]; then
        ns=$PCD_NS_SRC ip=$PCD_IP_SRC
    else
        ns=$PCD_NS_DST ip=$PCD_IP_DST
    fi
    D_FLAGS[$name]=$(printf '%s\n' "$@")
    # A previous incarnation's log and sockets: keep the log, drop the
    # sockets (pcd_daemon_start waits for them to appear).
    if [ -e "$(pcd_daemon_log "$name")" ]; then
        D_GEN=$((D_GEN + 1))
        mv "$(pcd_daemon_log "$name")" "$(pcd_daemon_log "$name").$D_GEN"
    fi
    rm -f "$(pcd_control "$name")" "$(pcd_attach "$name")"
    pcd_daemon_start "$name" "$ns" "$ip" "$@"
}

# daemon_restart NAME: start it again with the same flags and state dir.
daemon_restart() {
    local flags=()
    [ -n "${D_FLAGS[$1]:-}" ] && mapfile -t flags <<<"${D_FLAGS[$1]}"
    daemon_start "$1" "${flags[@]}"
}

# daemon_stop NAME: SIGTERM (SIGKILL after 3 s).
daemon_stop() {
    local pid
    pid=$(pcd_daemon_pid "$1")
    [ -n "$pid" ] && pcd_stop_pid "$pid" 30
}

# daemon_kill NAME: SIGKILL, now.
daemon_kill() {
    local pid
    pid=$(pcd_daemon_pid "$1")
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# ensure_daemons: one test's crash must not take the next ones with it.
ensure_daemons() {
    local d
    for d in src dst; do
        pcd_daemon_alive "$d" && continue
        if [ -n "$(pcd_daemon_pid "$d")" ]; then
            echo "# restarting the $d daemon (it died; its log follows)"
            tail -n 15 "$(pcd_daemon_log "$d")" | diag
            daemon_restart "$d" || return 1
        else
            daemon_start "$d" "${PEER_FLAGS[@]}" || return 1
        fi
    done
}

# ---------------------------------------------------------------- the link

link_down() { ip -n "$PCD_NS_SRC" link set "$IF_SRC" down; }
link_up() { ip -n "$PCD_NS_SRC" link set "$IF_SRC" up; }

THROTTLED=0
throttle_on() {
    if ip netns exec "$PCD_NS_SRC" tc qdisc replace dev "$IF_SRC" root \
        tbf rate "$THROTTLE" burst 64k latency 50ms 2>/dev/null; then
        THROTTLED=1
        echo "# source egress throttled to $THROTTLE (tbf)"
    else
        echo "# could not throttle the link (tc tbf): postcopy is short, cuts may miss it"
    fi
}
throttle_off() {
    ((THROTTLED)) || return 0
    ip netns exec "$PCD_NS_SRC" tc qdisc del dev "$IF_SRC" root 2>/dev/null
    THROTTLED=0
}

# ---------------------------------------------------------------- guests

# start_guest VM SIDE BACKING SIZE [ARGS...]: the source guest (SIDE src,
# running, with --verify) or the incoming destination guest (SIDE dst).
start_guest() {
    local vm=$1 side=$2 backing=$3 size=$4 role=--verify
    shift 4
    [ "$side" = dst ] && role=--incoming
    if ! pcd_guest_start "$vm-$side" "$side" --name "$vm" --backing "$backing" \
        --size "$size" --vcpus "$VCPUS" --workload random --dirty-rate "$RATE" \
        "$role" "$@" 2>>"$PCD_TMP/start-$vm"; then
        R_WHY+=("the $side guest did not attach:")
        return 1
    fi
}

# start_guests VM BACKING SIZE [--src ARGS...] [--dst ARGS...]: both.
start_guests() {
    local vm=$1 backing=$2 size=$3 to=src a
    local sargs=() dargs=()
    shift 3
    for a in "$@"; do
        case "$a" in
        --src) to=src ;;
        --dst) to=dst ;;
        *) if [ "$to" = src ]; then sargs+=("$a"); else dargs+=("$a"); fi ;;
        esac
    done
    : >"$PCD_TMP/start-$vm"
    start_guest "$vm" src "$backing" "$size" "${sargs[@]}" &&
        start_guest "$vm" dst "$backing" "$size" "${dargs[@]}"
}

stop_guests() {
    pcd_guest_stop "$1-src"
    pcd_guest_stop "$1-dst"
}

pages_of() { echo $(($(pcd_size_bytes "$1") / 4096)); }

# ---------------------------------------------------------------- migrations

R_WHY=()   # what went wrong in the current test
M_PID=     # the background postcopy-migrate
M_JSON=
M_ERR=
M_CLI=     # what the CLI reported: completed, postcopy-paused, lost, ...
M_LINE=    # the destination's verify line
M_ID=      # the migration id

# migrate_start VM [migrate args...]: postcopy-migrate migrate --json, in
# the background.
migrate_start() {
    local vm=$1
    shift
    M_JSON=$PCD_TMP/migrate-$vm.json
    M_ERR=$PCD_TMP/migrate-$vm.err
    M_ID='' M_LINE='' M_CLI=''
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --json \
        "$@" >"$M_JSON" 2>"$M_ERR" &
    M_PID=$!
}

# wait_postcopy VM: until the source says postcopy-active (1: never did).
wait_postcopy() {
    if ! wait_status src "$1" '^(postcopy-active|completed|failed|cancelled)$' 60; then
        R_WHY+=("postcopy never started: source status '$W_STATUS'")
        return 1
    fi
    if [ "$W_STATUS" != postcopy-active ]; then
        R_WHY+=("the migration was '$W_STATUS' before anything was done to it")
        return 1
    fi
    M_ID=$(mig_field src "$1" id)
}

# migrate_finish VM PAGES ALLOW: the CLI's outcome, both daemons' final
# status, the destination's verify line.  ALLOW lists what the CLI may have
# stopped at besides completed: "paused" (it stops following there) and
# "lost" (its daemon was killed).
migrate_finish() {
    local vm=$1 pages=$2 allow=" $3 " rc dpid limit=$FINISH_TIMEOUT
    local end paused_since src_final wait_s
    wait "$M_PID"
    rc=$?
    M_CLI=$(json_get "$M_JSON" status)
    if ((rc == 0)) && [ "$M_CLI" = completed ]; then
        :
    elif ((rc == 1)) && [ "$M_CLI" = postcopy-paused ] && [[ $allow == *" paused "* ]]; then
        :
    elif ((rc == 1)) && [[ $allow == *" lost "* ]] &&
        grep -q 'lost track of the migration' "$M_ERR"; then
        M_CLI=lost
    else
        R_WHY+=("postcopy-migrate exited with status $rc, status '$M_CLI': $(head -n 2 "$M_ERR")")
        limit=5   # no migration to wait for
    fi
    [ -n "$M_ID" ] || M_ID=$(mig_field src "$vm" id)
    # Whatever was done to it is over: a healthy source is back within a
    # backoff (2 s) or so.  Paused for PAUSE_LIMIT s in a row: stuck.
    end=$((SECONDS + limit)) paused_since=
    while :; do
        W_STATUS=$(mig_field src "$vm" status)
        [[ $W_STATUS =~ ^(completed|failed|cancelled)$ ]] && break
        if [ "$W_STATUS" = postcopy-paused ]; then
            paused_since=${paused_since:-$SECONDS}
            if ((SECONDS - paused_since >= PAUSE_LIMIT)); then
                R_WHY+=("the source stayed postcopy-paused for $PAUSE_LIMIT s after the disruption ended; its last reconnect attempt: $(grep -F "migration $M_ID: reconnect:" "$(pcd_daemon_log src)" | tail -n 1 | sed 's/^postcopyd: //')")
                break
            fi
        else
            paused_since=
        fi
        if ((SECONDS >= end)); then
            R_WHY+=("the source still says '$W_STATUS' after $limit s")
            break
        fi
        sleep 0.1 & wait $!
    done
    src_final=$W_STATUS
    [[ $W_STATUS =~ ^(completed|postcopy-paused|postcopy-active|active|setup)$ ]] ||
        R_WHY+=("the source says '$W_STATUS', expected completed: $(mig_field src "$vm" error-desc)")
    wait_status dst "$vm" '^(completed|failed|cancelled)$' 5 || true
    [ "$W_STATUS" = completed ] ||
        R_WHY+=("the destination says '$W_STATUS', expected completed")

    dpid=$(pcd_guest_pid "$vm-dst")
    wait_s=30
    [ "$src_final" = completed ] || wait_s=2
    M_LINE=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify: ' "$wait_s" "$dpid")
    if [ -z "$M_LINE" ]; then
        R_WHY+=("the destination guest printed no verify line")
    elif [[ $M_LINE =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches,\ ([0-9]+)\ overwritten ]]; then
        [ "${BASH_REMATCH[1]}" = "$pages" ] ||
            R_WHY+=("verify checked ${BASH_REMATCH[1]} pages, expected $pages")
        [ "${BASH_REMATCH[2]}" = 0 ] ||
            R_WHY+=("verify found ${BASH_REMATCH[2]} mismatching pages")
        [ "${BASH_REMATCH[3]}" = 0 ] ||
            R_WHY+=("${BASH_REMATCH[3]} pages were overwritten after the guest wrote them")
        if grep -q -- '--verify-write' "/proc/$dpid/cmdline" 2>/dev/null &&
            ! grep -q '^postcopy-guest: verify-write: wrote' "$(pcd_guest_out "$vm-dst")"; then
            R_WHY+=("the destination guest did not run its --verify-write pass")
        fi
    else
        R_WHY+=("unexpected verify line: $M_LINE")
    fi
    sleep 0.2 & wait $!
    pcd_guest_alive "$vm-dst" || R_WHY+=("the destination guest exited")
    [ -s "$(pcd_guest_err "$vm-dst")" ] &&
        R_WHY+=("the destination guest wrote to stderr: $(head -n 1 "$(pcd_guest_err "$vm-dst")")")
    pcd_daemon_alive src || R_WHY+=("the source daemon died")
    pcd_daemon_alive dst || R_WHY+=("the destination daemon died")
}

# log_count DAEMON ERE: matching lines in its current log.
log_count() { grep -c -E -- "$2" "$(pcd_daemon_log "$1")" 2>/dev/null; }

# dump_logs VM: for a failure report, what the daemons (every incarnation)
# logged about the migration (M_ID) or the VM, repeated lines folded, and
# the guests' output.
dump_logs() {
    local vm=$1 f g pat
    pat="vm ${vm}:|\\(${vm}[,)]"
    [ -n "$M_ID" ] && pat="$pat|$M_ID"
    for f in "$PCD_TMP"/src/daemon.log* "$PCD_TMP"/dst/daemon.log*; do
        grep -q -E -- "$pat" "$f" 2>/dev/null || continue
        echo "# ---- ${f#"$PCD_TMP"/} (about $vm, last 40 lines)"
        grep -E -- "$pat" "$f" | sed 's/^postcopyd: //' |
            awk '$0 == last { n++; next }
                 { if (n) print "   (" n " more like it)"; n = 0; last = $0; print }
                 END { if (n) print "   (" n " more like it)" }' |
            tail -n 40 | sed 's/^/#   | /'
    done
    for g in "$vm-src" "$vm-dst"; do
        for f in "$(pcd_guest_out "$g")" "$(pcd_guest_err "$g")"; do
            [ -s "$f" ] || continue
            echo "# ---- ${f#"$PCD_TMP"/} (last 10 lines)"
            tail -n 10 "$f" | sed 's/^/#   | /'
        done
    done
}

# report TITLE VM [COMMENT...]: ok / not ok from R_WHY, logs on failure.
report() {
    local title=$1 vm=$2
    shift 2
    if ((${#R_WHY[@]} == 0)); then
        ok "$title"
        [ $# -gt 0 ] && printf '#   %s\n' "$@"
        return 0
    fi
    not_ok "$title" "${R_WHY[@]}"
    [ $# -gt 0 ] && printf '#   %s\n' "$@"
    if [ -n "$M_ERR" ] && [ -s "$M_ERR" ]; then
        echo "#   postcopy-migrate stderr:"
        tail -n 5 "$M_ERR" | diag
    fi
    dump_logs "$vm"
    export PCD_KEEP=1   # the whole logs, for a failure
    return 1
}

# ---------------------------------------------------------------- 1. link cut

CUT_PASSED=0
CUT_PAUSED=0

# cut_round TITLE ROUND: one postcopy, the link cut at a random point of it
# for a random 1-3 s.
cut_round() {
    local title=$1 r=$2 vm=cut$2 delay cut paused recon t0 outcome
    R_WHY=() M_ERR=
    t0=$(now_ms)
    delay=$((RANDOM % 1000))
    cut=$((1000 + RANDOM % 2001))
    if ! ensure_daemons; then
        not_ok "$title" "a daemon is down and did not restart"
        return
    fi
    if ! start_guests "$vm" shmem "$CUT_SIZE" --dst --verify-write; then
        diag <"$PCD_TMP/start-$vm"
        report "$title" "$vm"
        stop_guests "$vm"
        return
    fi
    migrate_start "$vm" --mode postcopy
    if wait_postcopy "$vm"; then
        sleep_ms "$delay"
        link_down
        sleep_ms "$cut"
        link_up
    fi
    migrate_finish "$vm" "$(pages_of "$CUT_SIZE")" paused
    paused=$(log_count src "migration $M_ID \(.*, source\): postcopy-active -> postcopy-paused")
    recon=$(log_count src "migration $M_ID: reconnected to")
    if ((paused > 0)); then
        outcome="went through postcopy-paused $paused time(s), reconnected $recon time(s)"
        ((recon >= paused)) ||
            R_WHY+=("paused $paused time(s) but reconnected only $recon time(s)")
    else
        outcome="never paused: TCP retransmitted across the cut"
    fi
    if report "$title" "$vm" \
        "cut ${cut} ms, ${delay} ms into postcopy: $outcome; migrate said '$M_CLI'" \
        "${M_LINE:-no verify line}; $(($(now_ms) - t0)) ms"; then
        CUT_PASSED=$((CUT_PASSED + 1))
        ((paused > 0)) && CUT_PAUSED=$((CUT_PAUSED + 1))
    fi
    stop_guests "$vm"
}

section_link_cut() {
    local r t0=$SECONDS
    for ((r = 1; r <= CUT_ROUNDS; r++)); do
        cut_round "${TESTS[n]}" "$r"
    done
    echo "# link-cut summary: $CUT_PASSED of $CUT_ROUNDS rounds passed," \
        "$CUT_PAUSED paused and recovered, $((CUT_PASSED - CUT_PAUSED)) rode the" \
        "cut out without pausing; $((SECONDS - t0)) s (seed $SEED)"
}

# ---------------------------------------------------------------- ss -K

# The deterministic pause: the connections are killed, so TCP cannot ride
# it out.
section_kill_conn() {
    title=${TESTS[n]}
    vm=killconn
    R_WHY=() M_ERR=
    t0=$(now_ms)
    how=
    if ensure_daemons && start_guests "$vm" shmem "$CUT_SIZE" --dst --verify-write; then
        migrate_start "$vm" --mode postcopy
        if wait_postcopy "$vm"; then
            sleep_ms $((200 + RANDOM % 300))
            if ip netns exec "$PCD_NS_SRC" ss -K dst "$PCD_IP_DST" \
                dport = ":$PCD_PORT" >/dev/null 2>"$PCD_TMP/ss.err" &&
                pcd_wait_line "$(pcd_daemon_log src)" \
                    "migration $M_ID \(.*, source\): postcopy-active -> postcopy-paused" 3 >/dev/null; then
                how="ss -K"
            else
                # No SOCK_DESTROY here: a cut long enough for TCP_USER_TIMEOUT.
                how="a 3 s link cut (ss -K: $(head -n 1 "$PCD_TMP/ss.err"))"
                link_down
                sleep 3 & wait $!
                link_up
            fi
        fi
        migrate_finish "$vm" "$(pages_of "$CUT_SIZE")" paused
        paused=$(log_count src "migration $M_ID \(.*, source\): postcopy-active -> postcopy-paused")
        recon=$(log_count src "migration $M_ID: reconnected to")
        ((paused >= 1)) || R_WHY+=("the source never went postcopy-paused")
        ((recon >= 1)) || R_WHY+=("the source log has no 'reconnected to' line")
        (($(log_count dst "migration $M_ID \(.*\): recovered from") >= 1)) ||
            R_WHY+=("the destination log has no 'recovered from' line")
    else
        diag <"$PCD_TMP/start-$vm"
    fi
    report "$title" "$vm" \
        "connections killed with $how: paused ${paused:-?} time(s), reconnected ${recon:-?} time(s); migrate said '$M_CLI'" \
        "${M_LINE:-no verify line}; $(($(now_ms) - t0)) ms"
    stop_guests "$vm"
}

# ---------------------------------------------------------------- 2. SIGKILL

# kill_case TITLE VM BACKING MODE WHO: SIGKILL daemon WHO mid-postcopy,
# restart it (same flags, same state dir), the guests attach again.
kill_case() {
    local title=$1 vm=$2 backing=$3 mode=$4 who=$5 t0 st files margs=()
    local down_ms carried gargs=()
    R_WHY=() M_ERR=
    t0=$(now_ms)
    # Hybrid's postcopy moves only what round 1 left dirty, written after
    # the round passed it: at RATE that is under a second here, too short
    # to be sure of killing inside it (under ASan the CLI's own calls take
    # that long); a guest writing faster leaves seconds of it.
    if [ "$mode" = hybrid ]; then
        margs=(--max-rounds 1)
        gargs=(--dirty-rate $((RATE * 3)))
    fi
    if ! ensure_daemons ||
        ! start_guests "$vm" "$backing" "$KILL_SIZE" --src --reattach 30 \
            "${gargs[@]}" --dst --reattach 30 --verify-write; then
        diag <"$PCD_TMP/start-$vm" 2>/dev/null
        report "$title" "$vm"
        stop_guests "$vm"
        return
    fi
    migrate_start "$vm" --mode "$mode" "${margs[@]}"
    if wait_postcopy "$vm"; then
        # Soon: a hybrid postcopy (above) lasts a second or two here.
        sleep_ms $((RANDOM % 300))
        # The killed daemon's own view: the destination completes first.
        st=$(mig_field "$who" "$vm" status)
        daemon_kill "$who"
        [ "$st" = postcopy-active ] ||
            R_WHY+=("killed too late: the $who daemon's migration was already '$st'")
        files=$(cd "$PCD_TMP/$who/state" 2>/dev/null &&
            for f in "$M_ID".*; do [ -e "$f" ] && printf '%s ' "$f"; done)
        [ -n "$files" ] ||
            R_WHY+=("no session file for $M_ID in the $who daemon's state dir")
        down_ms=$((200 + RANDOM % 800))
        sleep_ms "$down_ms"
        daemon_restart "$who" || R_WHY+=("the $who daemon did not restart")
    fi
    migrate_finish "$vm" "$(pages_of "$KILL_SIZE")" "paused lost"
    carried=$(log_count "$who" "migration $M_ID \(.*\): carried on after a restart")
    ((carried >= 1)) ||
        R_WHY+=("the restarted $who daemon did not log that it carried on $M_ID")
    report "$title" "$vm" \
        "killed ${down_ms:-?} ms, left ${files:-no session file}; migrate said '$M_CLI'" \
        "${M_LINE:-no verify line}; $(($(now_ms) - t0)) ms"
    stop_guests "$vm"
}

section_kill() {
    kill_case "${TESTS[n]}" kill-dst-shmem shmem postcopy dst
    kill_case "${TESTS[n]}" kill-src-shmem shmem postcopy src
    kill_case "${TESTS[n]}" kill-dst-anon anon hybrid dst
    kill_case "${TESTS[n]}" kill-src-anon anon hybrid src
}

# ---------------------------------------------------------------- 3. recover

# The link stays down until the source pauses and its backoff reaches 2 s;
# recover as soon as it is back.
section_recover() {
    title=${TESTS[n]}
    vm=recover
    R_WHY=() M_ERR=
    t0=$(now_ms)
    lat=
    if ensure_daemons && start_guests "$vm" shmem "$CUT_SIZE" --dst --verify-write; then
        migrate_start "$vm" --mode postcopy
        if wait_postcopy "$vm"; then
            sleep_ms $((RANDOM % 500))
            link_down
            if wait_status src "$vm" '^postcopy-paused$' 15; then
                # Long enough for the reconnect backoff to reach its 2 s.
                sleep 3.5 & wait $!
                link_up
                t1=$(now_ms)
                if PCD_MIGRATE_TIMEOUT=10 pcd_migrate src recover --vm "$vm" \
                    >"$PCD_TMP/recover.out" 2>&1; then
                    wait_status src "$vm" '^(postcopy-active|completed)$' 10 &&
                        lat=$(($(now_ms) - t1))
                else
                    R_WHY+=("postcopy-migrate recover failed: $(head -n 1 "$PCD_TMP/recover.out")")
                fi
            else
                R_WHY+=("the link was down 15 s and the source still says '$W_STATUS'")
                link_up
            fi
        fi
        migrate_finish "$vm" "$(pages_of "$CUT_SIZE")" paused
        # recover on a migration that is not paused is refused, with a reason.
        if PCD_MIGRATE_TIMEOUT=10 pcd_migrate src recover --vm "$vm" \
            >"$PCD_TMP/recover2.out" 2>&1; then
            R_WHY+=("recover of a completed migration succeeded")
        elif ! grep -q 'paused' "$PCD_TMP/recover2.out"; then
            R_WHY+=("recover of a completed migration: unclear reason: $(head -n 1 "$PCD_TMP/recover2.out")")
        fi
    else
        diag <"$PCD_TMP/start-$vm"
    fi
    report "$title" "$vm" \
        "postcopy-active again ${lat:-?} ms after recover (the backoff alone waits up to 2000 ms)" \
        "recover of the completed migration: $(head -n 1 "$PCD_TMP/recover2.out" 2>/dev/null)" \
        "${M_LINE:-no verify line}; $(($(now_ms) - t0)) ms"
    stop_guests "$vm"
}

# ---------------------------------------------------------------- 4. cancel

# Still throttled: the first round of precopy alone takes seconds.  A 0 ms
# downtime limit never converges while the guest writes, so precopy goes
# on until cancelled (unthrottled, only a writer flat out guarantees that).
section_cancel() {
    vm=cancel
    R_WHY=() M_ERR=
    t0=$(now_ms)
    cancel_ok=0
    dst_status=
    rounds=
    ((THROTTLED)) || RATE=0
    if ensure_daemons && start_guests "$vm" shmem "$CANCEL_SIZE"; then
        # Precopy that cannot end by itself: no downtime is small enough,
        # no limit on rounds or time is reached.  (Hybrid would switch to
        # postcopy once a round leaves half its pages dirty, which on a
        # loaded machine can come within the 1.5 s below.)
        migrate_start "$vm" --mode precopy --downtime-limit 0 --max-rounds 1000000 \
            --max-precopy-time 600000
        if wait_status src "$vm" '^active$' 20; then
            sleep 1.5 & wait $!
            st=$(mig_field src "$vm" status)
            rounds=$(mig_field src "$vm" rounds)
            [ "$st" = active ] || R_WHY+=("precopy was not going on at the cancel: '$st'")
            PCD_MIGRATE_TIMEOUT=10 pcd_migrate src cancel --vm "$vm" \
                >"$PCD_TMP/cancel.out" 2>&1 ||
                R_WHY+=("postcopy-migrate cancel failed: $(head -n 1 "$PCD_TMP/cancel.out")")
            wait "$M_PID"
            rc=$?
            ((rc != 0)) || R_WHY+=("migrate exited 0 after the cancel")
            grep -qi 'cancelled' "$M_ERR" ||
                R_WHY+=("migrate did not report the cancel: $(head -n 1 "$M_ERR")")
            [ "$(json_get "$M_JSON" status)" = cancelled ] ||
                R_WHY+=("migrate --json status '$(json_get "$M_JSON" status)', expected cancelled")
            wait_status src "$vm" '^cancelled$' 5 ||
                R_WHY+=("the source says '$W_STATUS', expected cancelled")
            wait_status dst "$vm" '^(failed|cancelled|none)$' 10 ||
                R_WHY+=("the destination still says '$W_STATUS'")
            dst_status="'$W_STATUS' ($(mig_field dst "$vm" error-desc))"
        else
            R_WHY+=("precopy never started: '$W_STATUS'")
        fi
    else
        diag <"$PCD_TMP/start-$vm"
    fi
    RATE=64
    throttle_off
    report "${TESTS[n]}" "$vm" \
        "cancelled in round $((${rounds:-0} + 1)) of precopy: $(head -n 1 "$M_ERR")" \
        "the destination says $dst_status" && cancel_ok=1

    R_WHY=()
    if ((cancel_ok)); then
        spid=$(pcd_guest_pid "$vm-src")
        sleep 0.3 & wait $!
        cpu0=$(pcd_cpu_ms "$spid")
        sleep 1 & wait $!
        cpu1=$(pcd_cpu_ms "$spid")
        if [ -z "$cpu0" ] || [ -z "$cpu1" ] || ! pcd_guest_alive "$vm-src"; then
            R_WHY+=("the source guest exited")
        elif ((cpu1 - cpu0 < 10)); then
            R_WHY+=("the source guest used $((cpu1 - cpu0)) ms CPU in 1 s: left paused")
        fi
        [ -s "$(pcd_guest_err "$vm-src")" ] && R_WHY+=("the source guest wrote to stderr")
        pcd_guest_alive "$vm-dst" || R_WHY+=("the destination guest exited")
        pcd_daemon_alive src || R_WHY+=("the source daemon died")
        pcd_daemon_alive dst || R_WHY+=("the destination daemon died")
        report "${TESTS[n]}" "$vm" "the source guest used $((cpu1 - cpu0)) ms CPU in the second after the cancel"
    else
        not_ok "${TESTS[n]}" "the cancel did not go as expected"
    fi

    R_WHY=() M_ERR=
    if ((cancel_ok)) && pcd_guest_alive "$vm-src" && pcd_guest_alive "$vm-dst" &&
        ensure_daemons; then
        migrate_start "$vm" --mode hybrid --max-rounds 3
        migrate_finish "$vm" "$(pages_of "$CANCEL_SIZE")" ""
        report "${TESTS[n]}" "$vm" "${M_LINE:-no verify line}; whole test $(($(now_ms) - t0)) ms"
    else
        not_ok "${TESTS[n]}" "the cancelled migration left no guest pair to migrate again"
    fi
    stop_guests "$vm"
}

# ---------------------------------------------------------------- 5. last writes

section_last_writes() {
    for mode in hybrid precopy; do
        vm=lastw-$mode
        backing=shmem
        [ "$mode" = hybrid ] && backing=anon
        R_WHY=() M_ERR=
        t0=$(now_ms)
        if ensure_daemons && start_guests "$vm" "$backing" "$SMALL_SIZE" \
            --src --last-writes 512 --dst --verify-overlap --verify-write; then
            migrate_start "$vm" --mode "$mode"
            migrate_finish "$vm" "$(pages_of "$SMALL_SIZE")" ""
        else
            diag <"$PCD_TMP/start-$vm"
        fi
        report "${TESTS[n]}" "$vm" "$backing guest; ${M_LINE:-no verify line}; $(($(now_ms) - t0)) ms"
        stop_guests "$vm"
    done
}

# ---------------------------------------------------------------- 6. garbage

# unix_send PATH BYTES: connect to a unix socket, send BYTES of random data,
# close.  With python3 or socat; 2 when neither is installed.
unix_send() {
    if command -v python3 >/dev/null 2>&1; then
        timeout 10 python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(os.urandom(int(sys.argv[2])))
except OSError:
    pass
' "$1" "$2" 2>/dev/null
        return 0
    fi
    command -v socat >/dev/null 2>&1 || return 2
    head -c "$2" /dev/urandom | timeout 10 socat -u - "UNIX-CONNECT:$1" 2>/dev/null
    return 0
}

# unix_hold PATH MARKER: (in the background) connect, write "connected" to
# MARKER, and stay silent, at most 60 s.
unix_hold() {
    if command -v python3 >/dev/null 2>&1; then
        exec timeout 60 python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
with open(sys.argv[2], "w") as f:
    f.write("connected\n")
time.sleep(60)
' "$1" "$2" 2>/dev/null
    fi
    { sleep 1 && echo connected >"$2"; } &
    exec timeout 60 socat -u EXEC:"sleep 60" "UNIX-CONNECT:$1" 2>/dev/null
}

# tcp_send NS IP BYTES: random bytes to the peer port at IP, from NS.
tcp_send() {
    ip netns exec "$1" timeout 10 bash -c \
        'exec 3<>"/dev/tcp/$0/$1" || exit 1; head -c "$2" /dev/urandom >&3' \
        "$2" "$PCD_PORT" "$3" 2>/dev/null
    return 0
}

# tcp_header NS IP: a well-formed frame header announcing a 64 MiB message,
# then nothing: the daemon must neither wait for it nor allocate it.
tcp_header() {
    ip netns exec "$1" timeout 10 bash -c \
        'exec 3<>"/dev/tcp/$0/$1" || exit 1
         printf "\x50\x43\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04" >&3
         printf "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" >&3
         sleep 0.3' "$2" "$PCD_PORT" 2>/dev/null
    return 0
}

# Garbage first, then clients that connect and stay silent (a peer
# connection, the control and the attach sockets of both daemons) while a
# pair of guests attaches and migrates: one stuck client must not stop the
# daemon from serving the others.
section_garbage() {
    vm=garbage
    R_WHY=() M_ERR=
    t0=$(now_ms)
    notes=()
    have_unix=1
    if ensure_daemons; then
        tcp_send "$PCD_NS_SRC" "$PCD_IP_DST" 65536
        tcp_send "$PCD_NS_DST" "$PCD_IP_SRC" 65536
        tcp_header "$PCD_NS_SRC" "$PCD_IP_DST"
        tcp_header "$PCD_NS_DST" "$PCD_IP_SRC"
        for d in src dst; do
            for sock in "$(pcd_control "$d")" "$(pcd_attach "$d")"; do
                unix_send "$sock" 65536 || have_unix=0
            done
        done
        ((have_unix)) || notes+=("no socat or python3: the unix sockets got no garbage and no silent client")
        sleep 0.5 & wait $!
        pcd_daemon_alive src || R_WHY+=("the source daemon died of the garbage")
        pcd_daemon_alive dst || R_WHY+=("the destination daemon died of the garbage")

        idle=() attach_idle=()
        ip netns exec "$PCD_NS_SRC" timeout 60 bash -c \
            'exec 3<>"/dev/tcp/$0/$1" && sleep 60' "$PCD_IP_DST" "$PCD_PORT" \
            2>/dev/null &
        idle+=($!)
        if ((have_unix)); then
            for d in src dst; do
                unix_hold "$(pcd_control "$d")" "$PCD_TMP/hold-control-$d" &
                idle+=($!)
                unix_hold "$(pcd_attach "$d")" "$PCD_TMP/hold-attach-$d" &
                attach_idle+=($!)
            done
            for f in control-src control-dst attach-src attach-dst; do
                pcd_wait_line "$PCD_TMP/hold-$f" connected 10 >/dev/null ||
                    notes+=("the silent client on $f did not connect")
            done
        fi
        sleep 0.2 & wait $!
        : >"$PCD_TMP/start-$vm"
        if ((${#R_WHY[@]} == 0)) &&
            start_guests "$vm" shmem "$SMALL_SIZE" --dst --verify-write; then
            # The guests say ready once they have sent their hello: the
            # daemons' logs say when they took them.
            for d in src dst; do
                pcd_wait_line "$(pcd_daemon_log "$d")" "vm $vm: attached" 5 >/dev/null ||
                    R_WHY+=("the $d daemon did not take the guest's attach within 5 s while a silent client held its attach socket")
            done
            if ((${#R_WHY[@]} > 0)); then
                for pid in "${attach_idle[@]}"; do
                    kill "$pid" 2>/dev/null
                    wait "$pid" 2>/dev/null
                done
                for d in src dst; do
                    pcd_wait_line "$(pcd_daemon_log "$d")" "vm $vm: attached" 5 >/dev/null &&
                        notes+=("the $d daemon took the attach once the silent client left")
                done
            fi
            migrate_start "$vm" --mode hybrid
            migrate_finish "$vm" "$(pages_of "$SMALL_SIZE")" ""
        else
            diag <"$PCD_TMP/start-$vm"
        fi
        for pid in "${idle[@]}" "${attach_idle[@]}"; do
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        done
        notes+=("the destination logged: $(grep -E 'did not authenticate|bad frame|truncated frame|attach:|control:' \
            "$(pcd_daemon_log dst)" | grep -v -E 'debug: control: client gone' | sed 's/^postcopyd: //' |
            cut -c 1-110 | head -n 4 | paste -s -d '|' | sed 's/|/ | /g')")
    else
        R_WHY+=("a daemon is down and did not restart")
    fi
    report "${TESTS[n]}" "$vm" "${notes[@]}" "${M_LINE:-no verify line}; $(($(now_ms) - t0)) ms"
    stop_guests "$vm"
}

# ---------------------------------------------------------------- 6. keys

# refused_case LABEL VM: a migration refused before any data: exit 1, one
# line naming authentication; both daemons and the source guest alive.
refused_case() {
    local label=$1 vm=$2 rc lines
    M_JSON=$PCD_TMP/migrate-$vm-${label// /-}.json
    M_ERR=$PCD_TMP/migrate-$vm-${label// /-}.err
    PCD_MIGRATE_TIMEOUT=20 pcd_migrate src migrate --vm "$vm" \
        --to "$PCD_IP_DST:$PCD_PORT" --mode hybrid >"$M_JSON" 2>"$M_ERR" &
    wait $!
    rc=$?
    lines=$(grep -c . "$M_ERR")
    ((rc == 1)) || R_WHY+=("$label: exit status $rc, expected 1")
    ((lines == 1)) || R_WHY+=("$label: $lines lines on stderr, expected one reason")
    grep -qi 'authenticat' "$M_ERR" ||
        R_WHY+=("$label: the reason does not mention authentication: $(head -n 1 "$M_ERR")")
    pcd_daemon_alive src || R_WHY+=("$label: the source daemon died")
    pcd_daemon_alive dst || R_WHY+=("$label: the destination daemon died")
    pcd_guest_alive "$vm-src" || R_WHY+=("$label: the source guest exited")
    NOTES+=("$label: $(head -n 1 "$M_ERR")")
}

# The source keeps key A (and its guest) throughout; the destination has
# key B, then none, then key A.
section_keys() {
    KEY_A=$PCD_TMP/psk-a
    KEY_B=$PCD_TMP/psk-b
    (umask 077 && head -c 32 /dev/urandom | base64 >"$KEY_A" &&
        head -c 32 /dev/urandom | base64 >"$KEY_B")
    chmod 600 "$KEY_A" "$KEY_B"

    vm=psk
    R_WHY=() M_ERR=
    NOTES=()
    t0=$(now_ms)
    keys_ok=0
    daemon_stop src
    daemon_stop dst
    : >"$PCD_TMP/start-$vm"
    if daemon_start src "${PEER_FLAGS[@]}" --psk-file "$KEY_A" &&
        daemon_start dst "${PEER_FLAGS[@]}" --psk-file "$KEY_B" &&
        start_guest "$vm" src shmem "$SMALL_SIZE"; then
        keys_ok=1
        refused_case "wrong key" "$vm"
        # It answers the source's proof before it logs why it refused it.
        pcd_wait_line "$(pcd_daemon_log dst)" 'failed authentication' 10 >/dev/null ||
            R_WHY+=("the destination did not log the failed authentication")
        # Garbage where the destination expects an AuthChallenge.
        tcp_send "$PCD_NS_SRC" "$PCD_IP_DST" 65536
        tcp_header "$PCD_NS_SRC" "$PCD_IP_DST"
        pcd_daemon_alive dst ||
            R_WHY+=("garbage on the authenticating peer port killed the destination daemon")
        daemon_stop dst
        if daemon_start dst "${PEER_FLAGS[@]}" --psk-file '' --insecure; then
            refused_case "no key at the destination" "$vm"
        else
            R_WHY+=("the destination daemon did not restart without a key")
        fi
    else
        R_WHY+=("the daemons with keys, or the source guest, did not start")
        diag <"$PCD_TMP/start-$vm"
    fi
    report "${TESTS[n]}" "$vm" "${NOTES[@]}" || keys_ok=0

    R_WHY=() M_ERR=
    if ((keys_ok)); then
        daemon_stop dst
        if daemon_start dst "${PEER_FLAGS[@]}" --psk-file "$KEY_A" &&
            start_guest "$vm" dst shmem "$SMALL_SIZE" --verify-write; then
            migrate_start "$vm" --mode hybrid
            migrate_finish "$vm" "$(pages_of "$SMALL_SIZE")" ""
            [ "$(stat -c %a "$KEY_A")" = 600 ] || R_WHY+=("the key file is not mode 0600")
        else
            R_WHY+=("the destination daemon did not start with the right key, or its guest did not attach")
            diag <"$PCD_TMP/start-$vm"
        fi
        report "${TESTS[n]}" "$vm" "${M_LINE:-no verify line}; whole test $(($(now_ms) - t0)) ms"
    else
        not_ok "${TESTS[n]}" "the refused migrations did not go as expected"
    fi
    stop_guests "$vm"
}

# ---------------------------------------------------------------- run

ensure_daemons || fail_all "the daemons did not start"
# Tests 1-4 need a postcopy (or a precopy) that lasts seconds.
if want link-cut || want kill-conn || want kill || want recover || want cancel; then
    throttle_on
fi
want link-cut && section_link_cut
want kill-conn && section_kill_conn
want kill && section_kill
want recover && section_recover
want cancel && section_cancel
throttle_off
want last-writes && section_last_writes
want garbage && section_garbage
want keys && section_keys

exit $((failed > 0))
