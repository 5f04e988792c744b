# shellcheck shell=bash
# shellcheck disable=SC2015,SC2034
# lib.sh - helpers for the end-to-end tests and the demo: two "hosts" made of
# network namespaces joined by a veth pair, a postcopyd in each, and
# postcopy-guest processes attached to them.  Source it from bash:
#
#   . "$(dirname "$0")/lib.sh"
#   pcd_init "$build"          # temp dir, traps (cleanup on EXIT/INT/TERM)
#   pcd_hosts_up               # namespaces + veth + addresses, link checked
#   pcd_daemon_start src "$PCD_NS_SRC" "$PCD_IP_SRC"
#   pcd_daemon_start dst "$PCD_NS_DST" "$PCD_IP_DST"
#   pcd_guest_start vm1-src src --name vm1 --backing shmem --verify ...
#   pcd_wait_line "$(pcd_guest_out vm1-src)" '^postcopy-guest: ready' 10
#
# Everything this file starts is recorded and pcd_cleanup (run once, from
# the EXIT trap, also on Ctrl-C or SIGTERM) stops it: every process by its
# pid, then whatever is still inside our namespaces, then the namespaces
# (which takes the veth pair with them), the temp dir, and the huge pages we
# added.  Only addresses inside namespaces created here are used; nothing is
# routed or configured in the calling namespace.
#
# Variables set for the caller:
#   PCD_BUILD   build dir (binaries)         PCD_TMP   per-run temp dir
#   PCD_NS_SRC, PCD_NS_DST                   namespace names
#   PCD_IP_SRC, PCD_IP_DST                   their addresses (10.199.X.1/.2)
#   PCD_PORT                                 daemon listen port in each
#   PCD_PSK                                  the peer key every daemon gets
#   PCD_SKIP_REASON                          why a helper refused (skip)
#   PCD_KEEP=1 (env)                         keep the temp dir and logs

PCD_PORT=${PCD_PORT:-4444}
PCD_TMP=
PCD_NS_SRC=
PCD_NS_DST=
PCD_IP_SRC=
PCD_IP_DST=
PCD_SKIP_REASON=
PCD_PIDS=()          # every process started here, in start order
PCD_NAMESPACES=()    # namespaces created here
PCD_HP_ADDED=0       # huge pages added to /proc/sys/vm/nr_hugepages
PCD_CLEANED=0
declare -A PCD_PID   # name -> pid (daemons: "daemon-NAME", guests: NAME)
declare -A PCD_NS_OF # daemon name -> namespace

PCD_NR_HUGEPAGES=/proc/sys/vm/nr_hugepages

pcd_log() {
    echo "# $*" >&2
}

pcd_die() {
    echo "error: $*" >&2
    exit 1
}

# pcd_init BUILD_DIR: make the temp dir, set the traps (see pcd_preflight).
# pcd_test_args "$@": the options every test script takes (--tap, --build
# DIR, --keep); sets `build` (default $POSTCOPYD_BUILD, else build).
pcd_test_args() {
    build=${POSTCOPYD_BUILD:-build}
    while [ $# -gt 0 ]; do
        case "$1" in
        --tap) shift ;;
        --build) build=$2; shift 2 ;;
        --build=*) build=${1#*=}; shift ;;
        --keep) export PCD_KEEP=1; shift ;;
        *) echo "usage: $0 [--tap] [--build DIR] [--keep]" >&2; exit 2 ;;
        esac
    done
}

pcd_init() {
    PCD_BUILD=${1:-${POSTCOPYD_BUILD:-build}}
    PCD_BUILD=${PCD_BUILD%/}
    PCD_TMP=$(mktemp -d /tmp/pcd-e2e.XXXXXX) || pcd_die "mktemp failed"
    # The daemons listen on the namespaces' addresses: a network listener
    # must authenticate its peers, so every daemon gets this key unless
    # its caller passes its own --psk-file (the last one wins).
    PCD_PSK=$PCD_TMP/peer.psk
    (umask 077 && head -c 32 /dev/urandom | base64 >"$PCD_PSK") ||
        pcd_die "cannot write $PCD_PSK"
    trap pcd_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# pcd_preflight: empty PCD_SKIP_REASON when two-host tests can run here.
pcd_preflight() {
    local b
    PCD_SKIP_REASON=
    if [ "$(id -u)" != 0 ]; then
        PCD_SKIP_REASON="needs root (network namespaces, userfaultfd)"
        return 1
    fi
    if ! command -v ip >/dev/null 2>&1; then
        PCD_SKIP_REASON="'ip' (iproute2) not found"
        return 1
    fi
    for b in postcopyd postcopy-guest postcopy-migrate; do
        if [ ! -x "$PCD_BUILD/$b" ]; then
            PCD_SKIP_REASON="$PCD_BUILD/$b not built"
            return 1
        fi
    done
    return 0
}

# ---------------------------------------------------------------- cleanup

# pcd_stop_pid PID [GRACE_TENTHS]: SIGTERM, wait, then SIGKILL.
pcd_stop_pid() {
    local pid=$1 grace=${2:-30} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < grace; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        pcd_log "pid $pid ignored SIGTERM for $((grace / 10)) s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

pcd_cleanup() {
    local rc=$? i pid ns left
    [ "$PCD_CLEANED" = 1 ] && return "$rc"
    PCD_CLEANED=1
    trap - INT TERM HUP
    trap '' INT TERM HUP   # finish cleaning even on a second Ctrl-C

    # Guests first (newest first), then the daemons they are attached to.
    for ((i = ${#PCD_PIDS[@]} - 1; i >= 0; i--)); do
        pcd_stop_pid "${PCD_PIDS[i]}" 30
    done
    # Anything still inside our namespaces was started by us (e.g. a
    # migrate CLI interrupted mid-run); the namespaces are ours alone.
    for ns in "${PCD_NAMESPACES[@]}"; do
        left=$(ip netns pids "$ns" 2>/dev/null)
        for pid in $left; do
            kill -KILL "$pid" 2>/dev/null
        done
    done
    for ns in "${PCD_NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null ||
            pcd_log "warning: could not delete namespace $ns"
    done
    pcd_hugepages_release
    if [ -n "$PCD_TMP" ] && [ -d "$PCD_TMP" ]; then
        if [ "${PCD_KEEP:-0}" = 1 ]; then
            pcd_log "logs kept in $PCD_TMP"
        else
            rm -rf "$PCD_TMP"
        fi
    fi
    return "$rc"
}

# ---------------------------------------------------------------- hosts

# pcd_sweep_stale: delete pcd-src-N / pcd-dst-N namespaces left by a run
# that was SIGKILLed (so never cleaned up): only when process N is gone and
# nothing runs inside.  Running harnesses are never touched.
pcd_sweep_stale() {
    local ns owner
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
        [[ $ns =~ ^pcd-(src|dst)-([0-9]+)$ ]] || continue
        owner=${BASH_REMATCH[2]}
        [ "$owner" = $$ ] && continue
        kill -0 "$owner" 2>/dev/null && continue
        [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] || continue
        ip netns del "$ns" 2>/dev/null &&
            pcd_log "deleted namespace $ns left by a killed run"
    done
}

# pcd_hosts_up: two namespaces joined by a veth pair, addressed, link checked.
pcd_hosts_up() {
    local id=$$ x
    pcd_sweep_stale
    x=$((id % 250 + 1))
    PCD_NS_SRC=pcd-src-$id
    PCD_NS_DST=pcd-dst-$id
    PCD_IP_SRC=10.199.$x.1
    PCD_IP_DST=10.199.$x.2
    local if_src=pcs$id if_dst=pcd$id

    ip netns add "$PCD_NS_SRC" ||
        { PCD_SKIP_REASON="ip netns add failed"; return 1; }
    PCD_NAMESPACES+=("$PCD_NS_SRC")
    ip netns add "$PCD_NS_DST" ||
        { PCD_SKIP_REASON="ip netns add failed"; return 1; }
    PCD_NAMESPACES+=("$PCD_NS_DST")
    # Both ends are created directly inside the namespaces: nothing ever
    # appears in the calling namespace.
    ip link add "$if_src" netns "$PCD_NS_SRC" type veth \
        peer name "$if_dst" netns "$PCD_NS_DST" ||
        { PCD_SKIP_REASON="cannot create a veth pair"; return 1; }
    ip -n "$PCD_NS_SRC" addr add "$PCD_IP_SRC/24" dev "$if_src" &&
        ip -n "$PCD_NS_DST" addr add "$PCD_IP_DST/24" dev "$if_dst" &&
        ip -n "$PCD_NS_SRC" link set lo up &&
        ip -n "$PCD_NS_DST" link set lo up &&
        ip -n "$PCD_NS_SRC" link set "$if_src" up &&
        ip -n "$PCD_NS_DST" link set "$if_dst" up ||
        { PCD_SKIP_REASON="cannot configure the veth pair"; return 1; }
    pcd_wait_link "$PCD_NS_SRC" "$PCD_IP_DST" 10 &&
        pcd_wait_link "$PCD_NS_DST" "$PCD_IP_SRC" 10 ||
        { PCD_SKIP_REASON="no link between $PCD_NS_SRC and $PCD_NS_DST"; return 1; }
}

# pcd_reach NS IP: one reachability probe from NS.  ping when installed;
# otherwise a TCP connect to a closed port: "connection refused" means the
# RST came back, i.e. the peer answered (no listener needed).
pcd_reach() {
    local ns=$1 ip=$2
    if command -v ping >/dev/null 2>&1; then
        ip netns exec "$ns" ping -c 1 -W 1 "$ip" >/dev/null 2>&1
        return
    fi
    ip netns exec "$ns" timeout 1 bash -c "exec 3<>/dev/tcp/$ip/9" 2>&1 |
        grep -qi 'refused'
}

# pcd_wait_link NS IP TIMEOUT_S
pcd_wait_link() {
    local ns=$1 ip=$2 end=$((SECONDS + $3))
    while ((SECONDS < end)); do
        pcd_reach "$ns" "$ip" && return 0
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------- daemons

# pcd_daemon_start NAME NS IP [extra postcopyd args...]
# Starts BUILD/postcopyd in NS, listening on IP:PCD_PORT, with its sockets
# and state dir under PCD_TMP/NAME, and waits for its control socket.
# PCD_DAEMON_ARGS (words, no quoting) go to every daemon started.  Every
# daemon gets --psk-file PCD_PSK first; later args override it (a test of
# a daemon without a key passes --psk-file '' --insecure).
pcd_daemon_start() {
    local name=$1 ns=$2 ip=$3 dir pid
    shift 3
    dir=$PCD_TMP/$name
    mkdir -p "$dir/state"
    ip netns exec "$ns" "$PCD_BUILD/postcopyd" \
        --listen "$ip:$PCD_PORT" \
        --control-socket "$dir/control.sock" \
        --attach-socket "$dir/attach.sock" \
        --state-dir "$dir/state" \
        --log-level "${PCD_LOG_LEVEL:-debug}" --psk-file "$PCD_PSK" \
        ${PCD_DAEMON_ARGS:-} "$@" \
        </dev/null >"$dir/daemon.log" 2>&1 &
    pid=$!
    PCD_PIDS+=("$pid")
    PCD_PID[daemon-$name]=$pid
    PCD_NS_OF[$name]=$ns
    if ! pcd_wait_socket "$dir/control.sock" "$pid" 10 ||
        ! pcd_wait_socket "$dir/attach.sock" "$pid" 5; then
        echo "postcopyd '$name' did not come up; its log:" >&2
        tail -n 20 "$dir/daemon.log" | sed 's/^/  | /' >&2
        return 1
    fi
}

# pcd_wait_socket PATH PID TIMEOUT_S: wait for a socket while PID lives.
pcd_wait_socket() {
    local path=$1 pid=$2 end=$((SECONDS + $3))
    while ((SECONDS < end)); do
        [ -S "$path" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

pcd_control() { echo "$PCD_TMP/$1/control.sock"; }
pcd_attach() { echo "$PCD_TMP/$1/attach.sock"; }
pcd_daemon_log() { echo "$PCD_TMP/$1/daemon.log"; }
pcd_daemon_pid() { echo "${PCD_PID[daemon-$1]:-}"; }

pcd_daemon_alive() {
    local pid=${PCD_PID[daemon-$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# pcd_migrate DAEMON [postcopy-migrate args after --socket...]: run the CLI
# in the daemon's namespace (bounded by PCD_MIGRATE_TIMEOUT, default 60 s).
pcd_migrate() {
    local name=$1
    shift
    ip netns exec "${PCD_NS_OF[$name]}" \
        timeout -k 5 "${PCD_MIGRATE_TIMEOUT:-60}" \
        "$PCD_BUILD/postcopy-migrate" --socket "$(pcd_control "$name")" "$@"
}

# ---------------------------------------------------------------- guests

# pcd_guest_start GUEST DAEMON [postcopy-guest args...]
# Starts BUILD/postcopy-guest in DAEMON's namespace attached to DAEMON, with
# stdout in pcd_guest_out GUEST and stderr in pcd_guest_err GUEST, and waits
# for its "ready" line (PCD_READY_TIMEOUT, default 20 s: filling 1 GiB
# takes a moment).
pcd_guest_start() {
    local guest=$1 daemon=$2 pid out err
    shift 2
    out=$PCD_TMP/guest-$guest.out
    err=$PCD_TMP/guest-$guest.err
    ip netns exec "${PCD_NS_OF[$daemon]}" "$PCD_BUILD/postcopy-guest" \
        --attach "$(pcd_attach "$daemon")" "$@" \
        </dev/null >"$out" 2>"$err" &
    pid=$!
    PCD_PIDS+=("$pid")
    PCD_PID[$guest]=$pid
    if ! pcd_wait_line "$out" '^postcopy-guest: ready' "${PCD_READY_TIMEOUT:-20}" "$pid" >/dev/null; then
        echo "postcopy-guest '$guest' did not attach to '$daemon':" >&2
        tail -n 5 "$err" "$out" 2>/dev/null | sed 's/^/  | /' >&2
        return 1
    fi
}

pcd_guest_out() { echo "$PCD_TMP/guest-$1.out"; }
pcd_guest_err() { echo "$PCD_TMP/guest-$1.err"; }
pcd_guest_pid() { echo "${PCD_PID[$1]:-}"; }

pcd_guest_alive() {
    local pid=${PCD_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# pcd_guest_stop GUEST: stop one guest now (frees its RAM between tests).
pcd_guest_stop() {
    local pid=${PCD_PID[$1]:-}
    [ -n "$pid" ] && pcd_stop_pid "$pid" 30
}

# pcd_wait_line FILE ERE TIMEOUT_S [PID]: wait until FILE has a line
# matching ERE; prints that (first) line.  Fails at the timeout, or early
# when PID (the writer) has exited without writing it.
pcd_wait_line() {
    local file=$1 re=$2 end=$((SECONDS + $3)) pid=${4:-} line
    while :; do
        line=$(grep -E -m 1 -- "$re" "$file" 2>/dev/null) &&
            { printf '%s\n' "$line"; return 0; }
        ((SECONDS >= end)) && return 1
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            # One last look: it may have written the line and exited.
            line=$(grep -E -m 1 -- "$re" "$file" 2>/dev/null) &&
                { printf '%s\n' "$line"; return 0; }
            return 1
        fi
        sleep 0.05
    done
}

# pcd_wait_prealloc DAEMON VM [TIMEOUT]: wait until DAEMON has preallocated
# the incoming VM's RAM ([daemon] prealloc, on by default); prints the
# daemon's line ("... N MiB of RAM preallocated in S s").  Fails on a
# timeout or when the daemon said it could not.
pcd_wait_prealloc() {
    local line
    line=$(pcd_wait_line "$(pcd_daemon_log "$1")" \
        "vm $2: (.* RAM preallocated in|cannot preallocate)" "${3:-120}") || return 1
    printf '%s\n' "$line"
    [[ $line == *"RAM preallocated in"* ]]
}

# ---------------------------------------------------------------- sizes

# pcd_size_bytes 1G|512M|64K|N: bytes (same units as postcopy-guest).
pcd_size_bytes() {
    local s=$1 n u
    s=${s%iB}
    s=${s%B}
    n=${s%[KkMmGgTt]}
    u=${s#"$n"}
    [[ $n =~ ^[0-9]+$ ]] || return 1
    case "$u" in
    '') echo "$n" ;;
    K | k) echo $((n << 10)) ;;
    M | m) echo $((n << 20)) ;;
    G | g) echo $((n << 30)) ;;
    T | t) echo $((n << 40)) ;;
    esac
}

# pcd_hugepage_size: default huge page size in bytes (0 when none).
pcd_hugepage_size() {
    awk '/^Hugepagesize:/ { print $2 * 1024; found = 1 } END { if (!found) print 0 }' \
        /proc/meminfo
}

# pcd_page_size BACKING: the guest's page size for that backing.
pcd_page_size() {
    if [ "$1" = hugetlbfs ]; then pcd_hugepage_size; else echo 4096; fi
}

# ---------------------------------------------------------------- huge pages

pcd_free_hugepages() {
    awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo
}

# pcd_hugepages_reserve N: make N default-size huge pages free, raising
# nr_hugepages by what is missing.  What we add is given back by cleanup
# (subtracted, so that concurrent users' changes survive).  On failure
# PCD_SKIP_REASON says why.
pcd_hugepages_reserve() {
    local want=$1 nr have add
    PCD_SKIP_REASON=
    if [ ! -r "$PCD_NR_HUGEPAGES" ] || [ "$(pcd_hugepage_size)" = 0 ]; then
        PCD_SKIP_REASON="no hugetlb support in this kernel"
        return 1
    fi
    nr=$(cat "$PCD_NR_HUGEPAGES")
    have=$(pcd_free_hugepages)
    ((have >= want)) && return 0
    add=$((want - have))
    if ! echo $((nr + add)) >"$PCD_NR_HUGEPAGES" 2>/dev/null; then
        PCD_SKIP_REASON="cannot write $PCD_NR_HUGEPAGES (not root?)"
        return 1
    fi
    # The kernel may grant only part of it; count what it actually added.
    PCD_HP_ADDED=$((PCD_HP_ADDED + $(cat "$PCD_NR_HUGEPAGES") - nr))
    have=$(pcd_free_hugepages)
    if ((have < want)); then
        PCD_SKIP_REASON="kernel reserved only $have of $want huge pages of $(($(pcd_hugepage_size) >> 20)) MiB (memory too fragmented?)"
        return 1
    fi
    return 0
}

pcd_hugepages_release() {
    local nr
    ((PCD_HP_ADDED > 0)) || return 0
    nr=$(cat "$PCD_NR_HUGEPAGES" 2>/dev/null) || return 0
    nr=$((nr - PCD_HP_ADDED))
    ((nr < 0)) && nr=0
    echo "$nr" >"$PCD_NR_HUGEPAGES" 2>/dev/null ||
        pcd_log "warning: could not give back $PCD_HP_ADDED huge pages"
    PCD_HP_ADDED=0
}

# ---------------------------------------------------------------- reporting

# pcd_dump_logs [PREFIX [GUEST...]]: the tails of the daemon logs and of
# the given guests' output (default: every guest), for a failure report
# (PREFIX "# " keeps TAP streams valid).
pcd_dump_logs() {
    local prefix=${1:-}
    local f files=("$PCD_TMP"/*/daemon.log)
    [ $# -gt 0 ] && shift
    if [ $# -eq 0 ]; then
        files+=("$PCD_TMP"/guest-*.err "$PCD_TMP"/guest-*.out)
    fi
    for f in "$@"; do
        files+=("$(pcd_guest_err "$f")" "$(pcd_guest_out "$f")")
    done
    for f in "${files[@]}"; do
        [ -s "$f" ] || continue
        echo "${prefix}---- ${f#"$PCD_TMP"/} (last 15 lines)"
        tail -n 15 "$f" | sed "s/^/${prefix}  | /"
    done
}

# pcd_cpu_ms PID: CPU time (user + system) the process has used, in ms.
pcd_cpu_ms() {
    local stat hz
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    hz=$(getconf CLK_TCK)
    # Fields after the ")" that ends the command name: utime is the 12th.
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $(((${12} + ${13}) * 1000 / hz))
}

# ---------------------------------------------------------------- TAP
# The e2e tests' output: "ok N - title", "not ok N - title" with reasons
# as comments, "ok N - title # SKIP reason"; diag indents a comment block.
n=0
failed=0
# Every test of the script (the titles in TESTS) skipped for reason $1, or
# failed with $1 and the logs; then exit.
skip_all() {
    local t
    for t in "${TESTS[@]}"; do skip "$t" "$1"; done
    exit 0
}
fail_all() {
    local t
    echo "# $1"
    pcd_dump_logs "# "
    for t in "${TESTS[@]}"; do not_ok "$t"; done
    exit 1
}

# (Re)start a daemon that is not running: one test's crash must not take
# the following tests with it (that test fails on its own).
pcd_ensure_daemon() {
    local name=$1 ns=$2 ip=$3
    pcd_daemon_alive "$name" && return 0
    if [ -n "$(pcd_daemon_pid "$name")" ]; then
        echo "# restarting the $name daemon (it died; its log follows)"
        tail -n 15 "$(pcd_daemon_log "$name")" | diag
        mv "$(pcd_daemon_log "$name")" "$(pcd_daemon_log "$name").$n"
        rm -f "$(pcd_control "$name")" "$(pcd_attach "$name")"
    fi
    pcd_daemon_start "$name" "$ns" "$ip"
}
pcd_ensure_daemons() {
    pcd_ensure_daemon src "$PCD_NS_SRC" "$PCD_IP_SRC" &&
        pcd_ensure_daemon dst "$PCD_NS_DST" "$PCD_IP_DST"
}

# pcd_json_get FILE PATH: one scalar of the query-migrate object the CLI
# printed (json-glib, pretty, indent 2: one member per line), PATH like
# "rounds" or "ram.postcopy-requests"; strings without their quotes.
# Prints nothing when the member is absent.  No jq needed.
pcd_json_get() {
    awk -v want="$2" '
        function path(k,   p, i) {
            p = ""
            for (i = 1; i <= depth; i++) p = p stack[i] "."
            return p k
        }
        {
            line = $0
            sub(/^[ \t]+/, "", line)
            sub(/[ \t]+$/, "", line)
            c = substr(line, 1, 1)
        }
        c == "}" || c == "]" { depth--; next }
        # The root object has no name; an object in an array is "#".
        line == "{" && !started { started = 1; next }
        line == "{" || line == "[" { stack[++depth] = "#"; next }
        match(line, /^"[^"]*" : /) {
            key = substr(line, 2, RLENGTH - 5)
            val = substr(line, RLENGTH + 1)
            if (val == "{" || val == "[") { stack[++depth] = key; next }
            sub(/,$/, "", val)
            if (val ~ /^".*"$/) val = substr(val, 2, length(val) - 2)
            if (path(key) == want) { print val; exit }
        }
    ' "$1"
}

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    shift
    [ $# -gt 0 ] && printf '#   %s\n' "$@"
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/#   /'; }
