# shellcheck shell=bash
# qemu.sh - real QEMU (TCG) running the test guest (tools/testvm), for tests,
# demos and benchmarks.  Source it from bash:
#
#   . tests/lib/qemu.sh
#   trap qemu_cleanup EXIT
#   qemu_start src 256 memfd "$tmp/src.serial" "$tmp/src.qmp" --append share=50
#   serial_wait_passes "$tmp/src.serial" 5 30      # prints "PASS ERRORS"
#   qmp_cmd "$tmp/src.qmp" '{"execute":"stop"}'    # prints QEMU's reply
#
# Every QEMU started here is recorded; qemu_stop NAME or qemu_cleanup stops
# it by its pid and removes its RAM file (shm, hugetlbfs).  The guest prints
# "pass N errors E" lines on its serial port (tools/testvm/testvm.c).
#
# Variables: QEMU_BIN (qemu-system-x86_64), QEMU_TESTVM (the kernel; default
# $POSTCOPYD_BUILD or build, /testvm/testvm.elf), QEMU_SHM_DIR (/dev/shm),
# QEMU_HUGETLBFS (a hugetlbfs mount; default: the first one mounted).
# Set by qemu_start: QEMU_PID[NAME], QEMU_RAM_FILE[NAME] (shm, hugetlbfs).

QEMU_BIN=${QEMU_BIN:-qemu-system-x86_64}
QEMU_SHM_DIR=${QEMU_SHM_DIR:-/dev/shm}
declare -A QEMU_PID
declare -A QEMU_RAM_FILE

qemu_testvm() {
    echo "${QEMU_TESTVM:-${POSTCOPYD_BUILD:-build}/testvm/testvm.elf}"
}

qemu_hugetlbfs() {
    [ -n "${QEMU_HUGETLBFS:-}" ] && { echo "$QEMU_HUGETLBFS"; return 0; }
    awk '$3 == "hugetlbfs" { print $2; found = 1; exit }
         END { exit !found }' /proc/mounts
}

# qemu_backend_args NAME MEM_MIB BACKING: sets QEMU_OBJ, the -object of
# guest RAM "ram0".  share=on everywhere: another process (postcopyd, a
# copier) maps the RAM.
qemu_backend_args() {
    local name=$1 mem=$2 backing=$3 dir file
    case "$backing" in
    memfd)
        QEMU_OBJ="memory-backend-memfd,id=ram0,size=${mem}M,share=on"
        return 0
        ;;
    shm) dir=$QEMU_SHM_DIR ;;
    hugetlbfs) dir=$(qemu_hugetlbfs) || {
        echo "qemu_start: no hugetlbfs mounted (set QEMU_HUGETLBFS)" >&2
        return 1
    } ;;
    *)
        echo "qemu_start: backing '$backing' is not memfd, shm or hugetlbfs" >&2
        return 1
        ;;
    esac
    file=$dir/pcd-testvm-$name-$$
    QEMU_RAM_FILE[$name]=$file
    QEMU_OBJ="memory-backend-file,id=ram0,size=${mem}M,mem-path=$file,share=on"
}

# qemu_start NAME MEM_MIB BACKING SERIAL_FILE QMP_SOCK [--incoming]
# (SERIAL_FILE may be a FIFO with a reader already waiting on it.)
#            [--append ARGS] [--netns NS] [--kernel ELF] [-- QEMU ARGS...]
# BACKING: memfd | shm | hugetlbfs (the caller reserves the huge pages).
# --incoming adds -incoming defer (then migrate-incoming over QMP).
# QEMU's stderr goes to SERIAL_FILE.err.  Returns once QMP listens.
qemu_start() {
    local name=$1 mem=$2 backing=$3 serial=$4 qmp=$5 pid i
    local append="" netns="" kernel incoming=() extra=() pre=()
    shift 5
    kernel=$(qemu_testvm)
    while [ $# -gt 0 ]; do
        case "$1" in
        --incoming) incoming=(-incoming defer); shift ;;
        --append) append=$2; shift 2 ;;
        --netns) netns=$2; shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "qemu_start: unknown option '$1'" >&2; return 2 ;;
        esac
    done
    [ -r "$kernel" ] || { echo "qemu_start: no guest kernel $kernel" >&2; return 1; }
    qemu_backend_args "$name" "$mem" "$backing" || return 1
    [ -n "$netns" ] && pre=(ip netns exec "$netns")
    rm -f "$qmp"
    # A FIFO stays: the caller reads the serial port through it.
    [ -p "$serial" ] || rm -f "$serial"
    "${pre[@]}" "$QEMU_BIN" -accel tcg -machine pc -nodefaults \
        -display none -vga none -no-reboot -m "$mem" \
        -object "$QEMU_OBJ" -machine memory-backend=ram0 \
        -kernel "$kernel" -append "$append" \
        -serial "file:$serial" -qmp "unix:$qmp,server=on,wait=off" \
        "${incoming[@]}" "${extra[@]}" </dev/null >"$serial.err" 2>&1 &
    pid=$!
    QEMU_PID[$name]=$pid
    for ((i = 0; i < 100; i++)); do
        [ -S "$qmp" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "qemu_start: QEMU '$name' did not come up:" >&2
    sed 's/^/  | /' "$serial.err" >&2
    return 1
}

# qemu_stop NAME: SIGTERM (QEMU exits cleanly), then SIGKILL after 5 s.
qemu_stop() {
    local name=$1 pid=${QEMU_PID[$1]:-} i
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    unset "QEMU_PID[$name]"
    [ -n "${QEMU_RAM_FILE[$name]:-}" ] && rm -f "${QEMU_RAM_FILE[$name]}"
    unset "QEMU_RAM_FILE[$name]"
    return 0
}

qemu_cleanup() {
    local name
    for name in "${!QEMU_PID[@]}"; do
        qemu_stop "$name"
    done
}

qemu_alive() {
    local pid=${QEMU_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# qemu_ram_map PID: /proc/PID/map_files/START-END of the guest RAM mapping
# (the one ram0 backend: memfd or the mem-path file), for copying RAM.
qemu_ram_map() {
    local range
    range=$(awk '/memory-backend-memfd|pcd-testvm-/ { print $1; exit }' \
        "/proc/$1/maps") || return 1
    [ -n "$range" ] || return 1
    echo "/proc/$1/map_files/$range"
}

# qmp_cmd SOCK JSON [TIMEOUT_S]: negotiate capabilities, run one command,
# print its reply line (events are skipped).  Fails on an "error" reply,
# a timeout (default 30 s) or no connection.
qmp_cmd() {
    local sock=$1 json=$2 t=${3:-30} reply
    if command -v socat >/dev/null 2>&1; then
        reply=$(qmp_cmd_socat "$sock" "$json" "$t")
    elif command -v python3 >/dev/null 2>&1; then
        reply=$(qmp_cmd_python "$sock" "$json" "$t")
    else
        echo "qmp_cmd: needs socat (or python3)" >&2
        return 1
    fi
    printf '%s\n' "$reply"
    [[ $reply == *'"return"'* ]]
}

# Replies are one line each; "return"/"error" ends a command's exchange.
qmp_cmd_socat() {
    local sock=$1 json=$2 t=$3 line reply cmd fd_in fd_out
    coproc QMP_CO { exec socat -t "$t" - "UNIX-CONNECT:$sock" 2>/dev/null; }
    fd_in=${QMP_CO[0]} fd_out=${QMP_CO[1]}
    read -r -t "$t" -u "$fd_in" line # greeting
    for cmd in '{"execute":"qmp_capabilities"}' "$json"; do
        reply='{"error": {"desc": "qmp_cmd: no reply from '"$sock"'"}}'
        printf '%s\n' "$cmd" 1>&"$fd_out" || break
        while read -r -t "$t" -u "$fd_in" line; do
            if [[ $line == *'"return"'* || $line == *'"error"'* ]]; then
                reply=$line
                break
            fi
        done
        [[ $reply == *'"return"'* ]] || break
    done
    printf '%s\n' "$reply"
    exec {fd_out}>&-
    kill "$QMP_CO_PID" 2>/dev/null
    wait "$QMP_CO_PID" 2>/dev/null
}

qmp_cmd_python() {
    python3 - "$1" "$2" "$3" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(float(sys.argv[3]))
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ('{"execute":"qmp_capabilities"}', sys.argv[2]):
    f.write(cmd + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line or '"return"' in line or '"error"' in line:
            break
print(line.rstrip())
EOF
}

# qmp_wait_migration SOCK TIMEOUT_S: poll query-migrate until "completed"
# (prints the last reply); fails on "failed"/"cancelled" or the timeout.
qmp_wait_migration() {
    local sock=$1 end=$((SECONDS + $2)) reply
    while ((SECONDS < end)); do
        reply=$(qmp_cmd "$sock" '{"execute":"query-migrate"}' 5)
        case "$reply" in
        *'"status": "completed"'*) printf '%s\n' "$reply"; return 0 ;;
        *'"status": "failed"'* | *'"status": "cancelled"'*)
            printf '%s\n' "$reply"
            return 1
            ;;
        esac
        sleep 0.1
    done
    printf '%s\n' "$reply"
    return 1
}

# serial_last_pass FILE: "PASS ERRORS" of the last complete pass line.
serial_last_pass() {
    local chunk
    chunk=$(tail -c 4096 "$1" 2>/dev/null; echo x)
    chunk=${chunk%x}
    # The guest may be mid-line: only newline-terminated lines count.
    [[ $chunk == *$'\n' ]] || chunk=${chunk%$'\n'*}
    printf '%s\n' "$chunk" |
        awk '/^pass [0-9]+ errors [0-9]+$/ { last = $2 " " $4 }
             END { if (last == "") exit 1; print last }'
}

# serial_wait_passes FILE N TIMEOUT_S [PID]: wait for pass N (or later);
# prints "PASS ERRORS".  Fails at the timeout or when PID has exited.
serial_wait_passes() {
    local file=$1 want=$2 end=$((SECONDS + $3)) pid=${4:-} last
    while :; do
        last=$(serial_last_pass "$file") && ((${last%% *} >= want)) &&
            { echo "$last"; return 0; }
        if ((SECONDS >= end)) ||
            { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; }; then
            echo "${last:-none}"
            return 1
        fi
        sleep 0.05
    done
}

# serial_stream_ok FILE...: the guest's serial output, concatenated across the
# QEMUs it ran in (a line may be split at the switch), is pass 0, 1, 2...
# without a gap, and every pass has 0 errors.  Prints "passes 0..N".
# Any other line (e.g. "bad page ...") is a failure.
# The last line may be cut short (the guest is mid-line) if it is the start
# of the next pass's line or a "testvm:" line.  One exception, at a switch only: QEMU's serial
# device can lose the bytes in flight when the VM moves (seen once in the
# bench: the destination's first line "ass 271 errors 0" after the
# source's "pass 270 errors 0").  The line across a switch may be the
# expected "pass N errors 0" with bytes missing where the QEMUs changed, as
# long as the destination's part holds the whole " errors 0": the count is
# never a guess.  Printed as "(K bytes lost at a switch)".
serial_stream_ok() {
    local f first=1
    for f; do
        ((first)) || printf '\001' # marks the switch
        first=0
        cat "$f"
    done | {
        cat
        printf '\002' # marks the end: alone on its line unless mid-line
    } | awk '
        pending != "" { print "unexpected: " pending; bad = 1; exit }
        /\002$/ {
            sub(/\002$/, "")
            gsub(/\001/, "")
            if ($0 == "" || index("pass " next_pass " errors 0", $0) == 1 ||
                index("testvm: ", $0) == 1 || /^testvm: /) { next }
        }
        /\001/ {
            split($0, part, "\001")
            line = part[1] part[2]
            want = "pass " next_pass " errors 0"
            lost = length(want) - length(line)
            if (line !~ /^pass [0-9]+ errors [0-9]+$/ && lost > 0 &&
                substr(want, 1, length(part[1])) == part[1] &&
                length(part[2]) >= length(" errors 0") &&
                substr(want, length(want) - length(part[2]) + 1) == part[2]) {
                lost_note = " (" lost " bytes lost at a switch)"
                next_pass++
                next
            }
            $0 = line
        }
        /^pass [0-9]+ errors [0-9]+$/ {
            if ($2 != next_pass) { print "pass " $2 " after " next_pass - 1; bad = 1; exit }
            if ($4 != 0) { print "pass " $2 ": " $4 " errors"; bad = 1; exit }
            next_pass = $2 + 1; next
        }
        /^testvm: / { next }
        { pending = $0 }
        END {
            if (!bad && pending != "") { print "unexpected: " pending; bad = 1 }
            if (!bad) print "passes 0.." next_pass - 1 lost_note
            exit bad
        }'
}
