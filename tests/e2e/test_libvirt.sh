#!/bin/bash
# shellcheck disable=SC2015
# test_libvirt.sh - postcopyd migrates libvirt-managed QEMU domains (TCG,
# the test guest of tools/testvm, RAM in a shared memfd) between two
# "hosts" (network namespaces, lib.sh), each with its own libvirtd
# (tests/lib/libvirt.sh: no systemd, private run and config directories):
#
#   - attach --domain on both hosts, migrate --vm: every QMP step goes
#     through libvirt; the uffd is injected into QEMU under libvirt's
#     default -sandbox (seccomp); the guest's pass stream goes on without a gap and
#     with 0 errors at the destination; the destination libvirt says
#     running, the source libvirt no longer runs the domain;
#   - migrate --domain: postcopy-migrate starts the destination domain
#     from the source's XML, paused with -incoming defer, attaches both
#     (the destination with "ssh HOST postcopy-migrate attach", ssh faked
#     by a script that enters the destination namespace) and migrates; libvirt is left as virsh migrate --persistent
#     --undefinesource leaves it;
#   - a domain whose RAM is not shared: migrate --domain refuses it before
#     anything starts (nothing at the destination, the source runs on),
#     attach --domain refuses it too, both with the XML to add;
#   - the libvirt hook (tools/libvirt-hook/postcopyd, in both libvirtds)
#     lets the domains above start and refuses an incoming one whose RAM
#     is not shared;
#   - migrate --domain of a transient domain to a port no daemon listens
#     on fails: the source domain runs on, the destination domain is
#     destroyed; the retry (the source domain still attached) succeeds;
#   - the hook, at the destination, tells the daemon of each incoming
#     domain (postcopy-migrate expect, with the settings the test writes
#     in the libvirtd's hooks/postcopyd.conf): query-vms lists it as
#     expected, the daemon attaches it through libvirt once it runs, and
#     the attaches the tests above make there find it attached already;
#     with no daemon, or a silent one, the domain starts anyway, at once;
#   - the destination daemon killed in postcopy: restarted, it finds the
#     session file naming the libvirt domain and attaches it again through
#     libvirt by itself (no one runs attach), the source reconnects, the
#     migration completes and libvirt on both hosts agrees.
#
# Prints TAP.  Run by tests/run-tests.sh, or by hand:
#   tests/e2e/test_libvirt.sh --build build [--keep]
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
# shellcheck source=tests/lib/qemu.sh
. "$here/../lib/qemu.sh"
# shellcheck source=tests/lib/libvirt.sh
. "$here/../lib/libvirt.sh"

pcd_test_args "$@"
export POSTCOPYD_BUILD=$build
export PCD_MIGRATE_TIMEOUT=${PCD_MIGRATE_TIMEOUT:-120}
MEM=${QEMU_TEST_MEM:-128}
TESTS=(
    "attach --domain, migrate --vm: the guest goes on at the destination, 0 errors; both libvirts agree"
    "migrate --domain (destination attached over ssh): started from the XML; defined and running there, undefined at the source"
    "RAM not shared: migrate --domain refuses before anything starts, attach --domain refuses, both naming the XML to add"
    "the libvirt hook refuses to start an incoming domain whose RAM is not shared, with the XML to add"
    "migrate --domain to no daemon fails: the source runs on, the destination domain is gone; a retry succeeds"
    "destination daemon killed mid-postcopy: restarted, it attaches the domain again through libvirt by itself and carries on, 0 errors"
    "the libvirt hook tells the destination daemon of an incoming domain: listed as expected, attached by the daemon once it runs; migrate --vm needs no attach there"
    "the libvirt hook with no daemon, or one that does not answer: the domain starts within the hook's timeout, the hook says why"
)

pcd_init "$build"
echo "1..${#TESTS[@]}"
command -v "$QEMU_BIN" >/dev/null ||
    skip_all "$QEMU_BIN not installed (./configure --install-deps installs qemu-system-x86)"
command -v libvirtd >/dev/null && command -v virsh >/dev/null ||
    skip_all "libvirtd or virsh not installed (./configure --install-deps installs them)"
[ -r "$(qemu_testvm)" ] || skip_all "$(qemu_testvm) not built"
pcd_preflight || skip_all "$PCD_SKIP_REASON"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
trap 'libvirt_cleanup; pcd_cleanup' EXIT
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"
pcd_ensure_daemons || fail_all "the daemons did not start"
# Both libvirtds run the hook make install installs: the migrations below
# pass it, refuse_hook checks its refusal.
LIBVIRT_HOOK=$here/../../tools/libvirt-hook/postcopyd
libvirt_start src "$PCD_TMP/libvirt-src" "$PCD_NS_SRC" &&
    libvirt_start dst "$PCD_TMP/libvirt-dst" "$PCD_NS_DST" ||
    fail_all "libvirtd did not start"

qdir=$PCD_TMP/qemu
mkdir -p "$qdir"
# The destination libvirtd's hook tells the destination daemon.
hook_conf() {
    cat >"${LIBVIRT_DIR[dst]}/etc/hooks/postcopyd.conf" <<EOF
POSTCOPYD_SOCKET='${1:-$(pcd_control dst)}'
POSTCOPYD_CONNECT='${LIBVIRT_URI[dst]}'
POSTCOPY_MIGRATE='$(realpath "$PCD_BUILD")/postcopy-migrate'
EOF
}
hook_conf
# serial HOST DOMAIN: the guest's serial output on HOST.  The domain XML
# names /var/lib/libvirt/DOMAIN.serial, one file per host since each
# libvirtd has its own /var/lib/libvirt: the same XML runs on both.
serial() { echo "${LIBVIRT_DIR[$1]}/lib/$2.serial"; }
serial_xml_path() { echo "/var/lib/libvirt/$1.serial"; }

# dump HOST:DOMAIN...: serial tails, libvirt's QEMU logs, the daemons' logs.
dump() {
    local hd host d
    for hd in "$@"; do
        host=${hd%%:*} d=${hd#*:}
        tail -n 3 "$(serial "$host" "$d")" 2>/dev/null | diag
        tail -n 5 "${LIBVIRT_DIR[$host]}/log/qemu/$d.log" 2>/dev/null | diag
    done
    pcd_dump_logs "# "
}

# start_domain HOST NAME [--incoming]: a transient domain on HOST; an
# incoming one starts paused with -incoming defer, as migrate --domain
# starts it.
start_domain() {
    local host=$1 name=$2 xml=$qdir/$2-$1.xml
    libvirt_domain_xml "$name" "$MEM" "$(serial_xml_path "$name")" >"$xml"
    if [ "${3:-}" = --incoming ]; then
        sed -i -e "s|<domain type='qemu'>|<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>|" \
            -e "s|</domain>|<qemu:commandline><qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline></domain>|" "$xml"
        lvsh "$host" create "$xml" --paused >/dev/null
    else
        lvsh "$host" create "$xml" >/dev/null
    fi
}

# check_after VM: the guest went on at the destination, libvirt agrees.
# Appends to why[].
check_after() {
    local vm=$1 last got st
    last=$(serial_last_pass "$(serial src "$vm")")
    if ! got=$(serial_wait_passes "$(serial dst "$vm")" $((${last%% *} + 20)) 60); then
        why+=("the destination guest did not run 20 passes past ${last%% *}: $got")
    elif ! got=$(serial_stream_ok "$(serial src "$vm")" "$(serial dst "$vm")"); then
        why+=("the guest's pass stream: $got")
    fi
    st=$(libvirt_domain_state dst "$vm")
    [ "$st" = running ] || why+=("destination libvirt: '$st', not running")
    # The source daemon destroys it once the destination owns every page;
    # libvirt says "in shutdown" while QEMU exits.
    for _ in $(seq 100); do
        st=$(libvirt_domain_state src "$vm")
        [ "$st" = none ] || [ "$st" = "shut off" ] && break
        sleep 0.1
    done
    [ "$st" = none ] || [ "$st" = "shut off" ] ||
        why+=("source libvirt: '$st', not shut off or gone")
    summary="$got; source stopped at pass ${last%% *}"
}

# qemu_sandboxed ATTACH_OUTPUT: the QEMU attach reported runs under
# seccomp (libvirt's default -sandbox on), so the uffd was injected there.
qemu_sandboxed() {
    local pid
    pid=$(sed -n 's/^attached [^:]*: pid \([0-9]*\),.*/\1/p' "$1")
    [ -n "$pid" ] && grep -q '^Seccomp:[[:space:]]*2' "/proc/$pid/status"
}

attach_vm() {
    local title=$1 vm=lv-attach why=() summary
    if ! start_domain src "$vm" || ! start_domain dst "$vm" --incoming; then
        not_ok "$title" "a domain did not start"
        dump "src:$vm" "dst:$vm"
        return
    fi
    if ! serial_wait_passes "$(serial src "$vm")" 3 60 >/dev/null; then
        why+=("the source guest did not reach pass 3")
    elif ! pcd_migrate src attach --domain "$vm" --connect "${LIBVIRT_URI[src]}" \
        >"$qdir/$vm-src.attach" 2>&1; then
        why+=("attach at the source failed: $(cat "$qdir/$vm-src.attach")")
    elif ! pcd_migrate dst attach --domain "$vm" --connect "${LIBVIRT_URI[dst]}" \
        --incoming >"$qdir/$vm-dst.attach" 2>&1; then
        why+=("attach at the destination failed: $(cat "$qdir/$vm-dst.attach")")
    elif ! qemu_sandboxed "$qdir/$vm-src.attach"; then
        why+=("the source QEMU is not under its -sandbox seccomp filter: $(cat "$qdir/$vm-src.attach")")
    elif ! pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        >"$qdir/$vm.migrate" 2>&1; then
        why+=("postcopy-migrate migrate failed:" "$(tail -n 5 "$qdir/$vm.migrate")")
    fi
    [ ${#why[@]} -eq 0 ] && check_after "$vm"
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $summary; $(grep -m1 -E '^(downtime|total time)' "$qdir/$vm.migrate")"
    else
        not_ok "$title" "${why[@]}"
        dump "src:$vm" "dst:$vm"
    fi
    lvsh src destroy "$vm" >/dev/null 2>&1
    lvsh dst destroy "$vm" >/dev/null 2>&1
    pcd_ensure_daemons >/dev/null || fail_all "the daemons did not come back"
}
attach_vm "${TESTS[0]}"

# fake_ssh: an "ssh" for POSTCOPY_MIGRATE_SSH that runs the remote
# command line in the destination namespace, with the destination
# daemon's socket, and logs "HOST COMMAND" to $qdir/ssh.log.
fake_ssh() {
    local f=$qdir/fake-ssh
    cat >"$f" <<EOF
#!/bin/sh
while [ "\$1" != -- ]; do host=\$1; shift; done
shift
echo "\$host \$*" >>"$qdir/ssh.log"
exec ip netns exec "$PCD_NS_DST" env PATH="$(realpath "$PCD_BUILD"):\$PATH" \\
    POSTCOPYD_SOCKET="$(pcd_control dst)" sh -c "\$*"
EOF
    chmod 755 "$f"
    echo "$f"
}

# migrate --domain: postcopy-migrate starts the destination domain from
# the source's XML, attaches both, and leaves libvirt as virsh migrate
# --persistent --undefinesource would: defined and running at the
# destination, unknown at the source.
migrate_domain() {
    local title=$1 vm=lv-domain why=() summary xml=$qdir/lv-domain.xml
    libvirt_domain_xml "$vm" "$MEM" "$(serial_xml_path "$vm")" >"$xml"
    if ! lvsh src define "$xml" >/dev/null || ! lvsh src start "$vm" >/dev/null; then
        not_ok "$title" "the domain did not start"
        dump "src:$vm"
        return
    fi
    if ! serial_wait_passes "$(serial src "$vm")" 3 60 >/dev/null; then
        why+=("the source guest did not reach pass 3")
    elif ! POSTCOPY_MIGRATE_SSH=$(fake_ssh) pcd_migrate src migrate --domain "$vm" \
        --connect "${LIBVIRT_URI[src]}" --dest-connect "${LIBVIRT_URI[dst]}" \
        --to "$PCD_IP_DST:$PCD_PORT" >"$qdir/$vm.migrate" 2>&1; then
        why+=("postcopy-migrate migrate --domain failed:" "$(tail -n 5 "$qdir/$vm.migrate")")
    elif ! grep -q "^$PCD_IP_DST postcopy-migrate attach --incoming --domain '$vm'" "$qdir/ssh.log"; then
        why+=("the destination was not attached through ssh $PCD_IP_DST: $(cat "$qdir/ssh.log")")
    fi
    [ ${#why[@]} -eq 0 ] && check_after "$vm"
    lvsh dst dominfo "$vm" 2>/dev/null | grep -q '^Persistent: *yes' ||
        why+=("the destination libvirt has no persistent definition")
    [ "$(libvirt_domain_state src "$vm")" = none ] ||
        why+=("the source libvirt still knows the domain")
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $summary; $(grep -m1 -E '^(downtime|total time)' "$qdir/$vm.migrate")"
    else
        not_ok "$title" "${why[@]}"
        dump "src:$vm" "dst:$vm"
    fi
    lvsh src destroy "$vm" >/dev/null 2>&1
    lvsh dst destroy "$vm" >/dev/null 2>&1
    pcd_ensure_daemons >/dev/null || fail_all "the daemons did not come back"
}
migrate_domain "${TESTS[1]}"

refuse_private() {
    local title=$1 vm=lv-private why=() xml=$qdir/lv-private.xml out
    libvirt_domain_xml "$vm" "$MEM" "$(serial_xml_path "$vm")" --private >"$xml"
    lvsh src create "$xml" >/dev/null || { not_ok "$title" "the domain did not start"; return; }
    if pcd_migrate src migrate --domain "$vm" --connect "${LIBVIRT_URI[src]}" \
        --dest-connect "${LIBVIRT_URI[dst]}" --dest-socket "$(pcd_control dst)" \
        --to "$PCD_IP_DST:$PCD_PORT" >"$qdir/$vm.migrate" 2>&1; then
        why+=("migrate --domain succeeded")
    fi
    out=$(cat "$qdir/$vm.migrate")
    [[ $out == *"<access mode='shared'/>"* ]] ||
        why+=("migrate --domain did not name the XML to add: $out")
    [ "$(libvirt_domain_state dst "$vm")" = none ] ||
        why+=("a domain was started at the destination")
    [ "$(libvirt_domain_state src "$vm")" = running ] ||
        why+=("the source domain is not running")
    if pcd_migrate src attach --domain "$vm" --connect "${LIBVIRT_URI[src]}" \
        >"$qdir/$vm.attach" 2>&1; then
        why+=("attach --domain succeeded")
    fi
    out=$(cat "$qdir/$vm.attach")
    [[ $out == *"not shared"*"<access mode='shared'/>"* ]] ||
        why+=("attach --domain did not name the XML to add: $out")
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $(head -n 1 "$qdir/$vm.migrate")"
        echo "# $(head -n 1 "$qdir/$vm.attach")"
    else
        not_ok "$title" "${why[@]}"
    fi
    lvsh src destroy "$vm" >/dev/null 2>&1
}
refuse_private "${TESTS[2]}"

# An incoming domain (as migrate --domain starts it) with private RAM.
refuse_hook() {
    local title=$1 vm=lv-hook xml=$qdir/lv-hook.xml out
    libvirt_domain_xml "$vm" "$MEM" "$(serial_xml_path "$vm")" --private |
        sed -e "s|<domain type='qemu'>|<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>|" \
            -e "s|</domain>|<qemu:commandline><qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline></domain>|" >"$xml"
    if out=$(lvsh dst create "$xml" --paused 2>&1); then
        not_ok "$title" "the domain started: $out"
    elif [[ $out != *"postcopyd: domain $vm: its RAM is not in shared memory"*"<source type='memfd'/><access mode='shared'/>"* ]]; then
        not_ok "$title" "refused, but not by the hook: $out"
    elif [ "$(libvirt_domain_state dst "$vm")" != none ]; then
        not_ok "$title" "the domain is there after the refusal"
    else
        ok "$title"
        echo "# $(printf '%s\n' "$out" | grep -m1 postcopyd)"
    fi
    lvsh dst destroy "$vm" >/dev/null 2>&1
}
refuse_hook "${TESTS[3]}"

fail_then_retry() {
    local title=$1 vm=lv-retry why=() summary xml=$qdir/lv-retry.xml st
    local domargs=(--domain "$vm" --connect "${LIBVIRT_URI[src]}"
        --dest-connect "${LIBVIRT_URI[dst]}" --dest-socket "$(pcd_control dst)")
    libvirt_domain_xml "$vm" "$MEM" "$(serial_xml_path "$vm")" >"$xml"
    lvsh src create "$xml" >/dev/null || { not_ok "$title" "the domain did not start"; return; }
    if ! serial_wait_passes "$(serial src "$vm")" 3 60 >/dev/null; then
        why+=("the source guest did not reach pass 3")
    elif pcd_migrate src migrate "${domargs[@]}" --to "$PCD_IP_DST:1" \
        >"$qdir/$vm.fail" 2>&1; then
        why+=("migrate --domain to port 1 succeeded")
    fi
    st=$(libvirt_domain_state src "$vm")
    [ "$st" = running ] || why+=("after the failure the source is '$st', not running")
    st=$(libvirt_domain_state dst "$vm")
    [ "$st" = none ] || why+=("after the failure the destination is '$st', not gone")
    if [ ${#why[@]} -eq 0 ] &&
        ! pcd_migrate src migrate "${domargs[@]}" --to "$PCD_IP_DST:$PCD_PORT" \
            >"$qdir/$vm.migrate" 2>&1; then
        why+=("the retry failed:" "$(tail -n 5 "$qdir/$vm.migrate")")
    fi
    [ ${#why[@]} -eq 0 ] && check_after "$vm"
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $(grep -m1 '^postcopy-migrate:' "$qdir/$vm.fail"); retry: $summary"
    else
        not_ok "$title" "${why[@]}"
        dump "src:$vm" "dst:$vm"
    fi
    lvsh src destroy "$vm" >/dev/null 2>&1
    lvsh dst destroy "$vm" >/dev/null 2>&1
}
fail_then_retry "${TESTS[4]}"

# Postcopy over a throttled link, the destination daemon killed in the
# middle and restarted: nobody attaches the domain again, the daemon
# does it from its session file (through libvirt: a --domain VM).
restart_dst() {
    local title=$1 vm=lv-restart why=() cli summary if_src=pcs$$
    if ! ip netns exec "$PCD_NS_SRC" tc qdisc replace dev "$if_src" root \
        tbf rate 300mbit burst 64k latency 50ms 2>/dev/null; then
        skip "$title" "cannot throttle the link (tc tbf): postcopy would end before the kill"
        return
    fi
    if ! start_domain src "$vm" || ! start_domain dst "$vm" --incoming; then
        not_ok "$title" "a domain did not start"
        return
    fi
    if ! serial_wait_passes "$(serial src "$vm")" 3 60 >/dev/null ||
        ! pcd_migrate src attach --domain "$vm" --connect "${LIBVIRT_URI[src]}" >/dev/null ||
        ! pcd_migrate dst attach --domain "$vm" --connect "${LIBVIRT_URI[dst]}" \
            --incoming >/dev/null; then
        not_ok "$title" "set-up failed"
        dump "src:$vm" "dst:$vm"
        return
    fi
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" --mode postcopy \
        >"$qdir/$vm.migrate" 2>&1 &
    cli=$!
    if ! pcd_wait_line "$(pcd_daemon_log src)" \
        "migration .* \\($vm, source\\): device -> postcopy-active" 30 >/dev/null; then
        why+=("postcopy never started")
    else
        sleep 0.2
        kill -KILL "$(pcd_daemon_pid dst)"
        wait "$(pcd_daemon_pid dst)" 2>/dev/null
        pcd_ensure_daemons >/dev/null 2>&1 || why+=("the destination daemon did not restart")
        pcd_wait_line "$(pcd_daemon_log dst)" "vm $vm: libvirt domain $vm attached again" 30 \
            >/dev/null || why+=("the restarted daemon did not attach the domain again")
    fi
    wait "$cli" || why+=("postcopy-migrate migrate failed:" "$(tail -n 3 "$qdir/$vm.migrate")")
    ip netns exec "$PCD_NS_SRC" tc qdisc del dev "$if_src" root 2>/dev/null
    grep -qE "reconnected to" "$(pcd_daemon_log src)" ||
        why+=("the source log has no 'reconnected to' line: the kill missed postcopy")
    [ ${#why[@]} -eq 0 ] && check_after "$vm"
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $summary; $(grep -m1 -E '^total time' "$qdir/$vm.migrate")"
        echo "# $(grep -m1 "attached again" "$(pcd_daemon_log dst)")"
    else
        not_ok "$title" "${why[@]}"
        dump "src:$vm" "dst:$vm"
    fi
    lvsh src destroy "$vm" >/dev/null 2>&1
    lvsh dst destroy "$vm" >/dev/null 2>&1
}
restart_dst "${TESTS[5]}"

# query-vms at the destination: "expected", "attached" or "none".
dst_vm_state() {
    pcd_migrate dst list --json 2>/dev/null | jq -r --arg n "$1" \
        '[.[] | select(.name == $n and .incoming)][0] |
         if . == null then "none" elif .expected then "expected"
         else "attached" end'
}

# A persistent incoming domain, defined (not running) at the destination:
# expected, it is listed as such until libvirt starts it (the hook tells
# the daemon again), then the daemon attaches it; the source is attached
# and migrated with no attach at the destination.
hook_expect() {
    local title=$1 vm=lv-expect why=() summary xml=$qdir/lv-expect-dst.xml st i
    libvirt_domain_xml "$vm" "$MEM" "$(serial_xml_path "$vm")" |
        sed -e "s|<domain type='qemu'>|<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>|" \
            -e "s|</domain>|<qemu:commandline><qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline></domain>|" >"$xml"
    if ! lvsh dst define "$xml" >/dev/null || ! start_domain src "$vm"; then
        not_ok "$title" "a domain was not defined or started"
        return
    fi
    pcd_migrate dst expect --domain "$vm" --connect "${LIBVIRT_URI[dst]}" \
        >"$qdir/$vm.expect" 2>&1 || why+=("expect failed: $(cat "$qdir/$vm.expect")")
    st=$(dst_vm_state "$vm")
    [ "$st" = expected ] || why+=("before the start the daemon lists it '$st', not expected")
    lvsh dst start "$vm" --paused >/dev/null || why+=("the destination domain did not start")
    for i in $(seq 100); do
        st=$(dst_vm_state "$vm")
        [ "$st" = attached ] && break
        sleep 0.1
    done
    [ "$st" = attached ] || why+=("10 s after the start the daemon lists it '$st', not attached")
    grep -q "vm $vm: libvirt domain $vm attached (it was expected)" \
        "$(pcd_daemon_log dst)" || why+=("no 'attached (it was expected)' line in the daemon's log")
    if [ ${#why[@]} -eq 0 ]; then
        if ! serial_wait_passes "$(serial src "$vm")" 3 60 >/dev/null; then
            why+=("the source guest did not reach pass 3")
        elif ! pcd_migrate src attach --domain "$vm" --connect "${LIBVIRT_URI[src]}" >/dev/null ||
            ! pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
                >"$qdir/$vm.migrate" 2>&1; then
            why+=("attach or migrate at the source failed:" "$(tail -n 5 "$qdir/$vm.migrate")")
        fi
    fi
    [ ${#why[@]} -eq 0 ] && check_after "$vm"
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
        echo "# $summary; $(grep -m1 -E '^downtime ' "$qdir/$vm.migrate")"
        echo "# $(grep -m1 "vm $vm: libvirt domain $vm attached" "$(pcd_daemon_log dst)")"
    else
        not_ok "$title" "${why[@]}"
        dump "src:$vm" "dst:$vm"
    fi
    lvsh src destroy "$vm" >/dev/null 2>&1
    lvsh dst destroy "$vm" >/dev/null 2>&1
    lvsh dst undefine "$vm" >/dev/null 2>&1
}
hook_expect "${TESTS[6]}"

# The hook run as libvirt runs it, with a daemon that is not there and
# one that accepts and never answers: exit 0 within its timeout (2 s
# here), saying why; then a real start through libvirt with no daemon.
hook_no_daemon() {
    local title=$1 why=() conf=$qdir/hook.conf silent=$qdir/silent.sock lpid
    local xml t0 took out sock vm=lv-nodaemon
    xml=$(libvirt_domain_xml x 64 /dev/null |
        sed "s|</domain>|<qemu:commandline><qemu:arg value='-incoming'/><qemu:arg value='defer'/></qemu:commandline></domain>|")
    socat UNIX-LISTEN:"$silent",fork SYSTEM:'sleep 30' 2>/dev/null &
    lpid=$!
    for sock in "$qdir/none.sock" "$silent"; do
        printf 'POSTCOPYD_SOCKET=%s\nPOSTCOPY_MIGRATE=%s\nPOSTCOPYD_HOOK_TIMEOUT=2\n' \
            "$sock" "$(realpath "$PCD_BUILD")/postcopy-migrate" >"$conf"
        [ "$sock" = "$silent" ] && pcd_wait_socket "$silent" "$lpid" 5
        t0=$(date +%s%N)
        out=$(printf '%s\n' "$xml" | env -i PATH=/usr/bin:/bin POSTCOPYD_HOOK_CONF="$conf" \
            "$LIBVIRT_HOOK" x prepare begin - 2>&1) || why+=("$sock: the hook refused: $out")
        took=$((($(date +%s%N) - t0) / 1000000))
        [ "$took" -lt 3500 ] || why+=("$sock: the hook took $took ms")
        [[ $out == *"postcopyd: domain x: the local postcopyd was not told"* ]] ||
            why+=("$sock: the hook did not say why: $out")
        echo "# $(basename "$sock"): $took ms: $out"
    done
    kill "$lpid" 2>/dev/null
    wait "$lpid" 2>/dev/null
    hook_conf "$qdir/none.sock"
    start_domain dst "$vm" --incoming || why+=("libvirt did not start the incoming domain")
    [ "$(libvirt_domain_state dst "$vm")" = paused ] ||
        why+=("the incoming domain is '$(libvirt_domain_state dst "$vm")', not paused")
    hook_conf
    lvsh dst destroy "$vm" >/dev/null 2>&1
    if [ ${#why[@]} -eq 0 ]; then
        ok "$title"
    else
        not_ok "$title" "${why[@]}"
    fi
}
hook_no_daemon "${TESTS[7]}"
