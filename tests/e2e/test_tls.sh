#!/bin/bash
# test_tls.sh - end-to-end migrations over TLS 1.3 between two "hosts"
# (network namespaces joined by a veth pair), real daemons, real
# postcopy-guest VMs writing during the migration.  Prints TAP.  Run by
# tests/run-tests.sh or by hand:
#
#   tests/e2e/test_tls.sh --build build-g
#
# A migration test asserts what test_migrate.sh does: postcopy-migrate
# exits 0, the destination guest finds 0 mismatching pages, it still runs,
# both daemons are alive.  A refusal test asserts: postcopy-migrate fails
# with one line, the daemon that refused logs one line saying why, the
# source guest still runs its workload, both daemons are alive and the
# next migration between them works.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

pcd_test_args "$@"

SIZE=64M
RATE=64
TESTS=(
    "hybrid migration over TLS-PSK (shmem)"
    "hybrid migration over TLS-X.509 (anon)"
    "TLS destination, plaintext source: refused, source guest keeps running"
    "TLS-PSK migration on the same daemons after the refusal"
    "X.509 source certificate from another CA: refused, guest keeps running"
    "X.509 destination certificate for another host: the source refuses it"
    "X.509 source certificate for another host: the destination refuses it"
    "X.509 certificates naming neither address, tls-peer-name names them: migrates"
)

pcd_init "$build"
echo "1..${#TESTS[@]}"


pcd_preflight || skip_all "$PCD_SKIP_REASON"
command -v certtool >/dev/null || skip_all "certtool (gnutls-bin) is missing"
pcd_hosts_up || skip_all "$PCD_SKIP_REASON"
echo "# hosts: $PCD_NS_SRC ($PCD_IP_SRC) and $PCD_NS_DST ($PCD_IP_DST), logs in $PCD_TMP"

certs=$PCD_TMP/certs
psk=$PCD_TMP/psk
# peer-a and peer-b name both hosts' addresses; peer-wrong another host.
"$here/../lib/tls-certs.sh" "$certs" "$PCD_IP_SRC" "$PCD_IP_DST" ||
    skip_all "tls-certs.sh failed"
head -c 32 /dev/urandom | base64 >"$psk"
chmod 600 "$psk"
PSK=(--psk-file "$psk" --tls psk)
x509() { # x509 CERT: this daemon's certificate peer-CERT (a, b, wrong), trusting A
    echo --psk-file "$psk" --tls x509 --tls-cert-file "$certs/peer-$1.pem" \
        --tls-key-file "$certs/peer-$1.key" --tls-ca-file "$certs/ca-a.pem"
}

# restart NAME NS IP ARGS...: (re)start a daemon with these peer settings.
restart() {
    local name=$1 ns=$2 ip=$3 pid
    shift 3
    pid=$(pcd_daemon_pid "$name")
    if [ -n "$pid" ]; then
        pcd_stop_pid "$pid"
        mv "$(pcd_daemon_log "$name")" "$(pcd_daemon_log "$name").$n"
        rm -f "$(pcd_control "$name")" "$(pcd_attach "$name")"
    fi
    pcd_daemon_start "$name" "$ns" "$ip" "$@"
}
restart_src() { restart src "$PCD_NS_SRC" "$PCD_IP_SRC" "$@"; }
restart_dst() { restart dst "$PCD_NS_DST" "$PCD_IP_DST" "$@"; }

# guests BACKING VM: a writing source guest and an incoming one.
guests() {
    local common=(--name "$2" --backing "$1" --size "$SIZE" --vcpus 2
        --workload random --dirty-rate "$RATE")
    pcd_guest_start "$2-src" src "${common[@]}" --verify 2>"$PCD_TMP/$2.start" &&
        pcd_guest_start "$2-dst" dst "${common[@]}" --incoming 2>>"$PCD_TMP/$2.start"
}

# running GUEST: alive and using CPU (its workload, not paused): 10 ms
# within 2 s.  The kernel counts CPU time in 10 ms ticks, and this guest
# (64 MiB/s) uses 10-60 ms per 0.5 s here: one 0.5 s look read 0 once.
running() {
    local pid cpu0 cpu1 i
    pid=$(pcd_guest_pid "$1")
    pcd_guest_alive "$1" || return 1
    cpu0=$(pcd_cpu_ms "$pid") || return 1
    for i in 1 2 3 4; do
        sleep 0.5 & wait $!
        cpu1=$(pcd_cpu_ms "$pid") || return 1
        ((cpu1 - cpu0 >= 10)) && return 0
    done
    return 1
}

# migrate_ok TITLE BACKING VM: a hybrid migration verified at the end.
migrate_ok() {
    local title=$1 vm=$3 rc line pages why=() out=$PCD_TMP/migrate-$3.out
    pages=$(($(pcd_size_bytes "$SIZE") / $(pcd_page_size "$2")))
    if ! guests "$2" "$vm"; then
        not_ok "$title" "a guest did not attach"
        diag <"$PCD_TMP/$vm.start"
        pcd_guest_stop "$vm-src"
        pcd_guest_stop "$vm-dst"
        return
    fi
    sleep 0.3 & wait $!
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode hybrid >"$out" 2>&1 &
    wait $!
    rc=$?
    ((rc == 0)) || why+=("postcopy-migrate exited with status $rc")
    line=$(pcd_wait_line "$(pcd_guest_out "$vm-dst")" '^verify: ' 20 \
        "$(pcd_guest_pid "$vm-dst")")
    if [[ $line =~ ^verify:\ ([0-9]+)\ pages\ checked,\ ([0-9]+)\ mismatches ]]; then
        [ "${BASH_REMATCH[1]}" = "$pages" ] ||
            why+=("verify checked ${BASH_REMATCH[1]} pages, expected $pages")
        [ "${BASH_REMATCH[2]}" = 0 ] ||
            why+=("verify found ${BASH_REMATCH[2]} mismatching pages")
        running "$vm-dst" || why+=("the destination guest is not running")
    else
        why+=("no verify line from the destination guest: '$line'")
    fi
    pcd_daemon_alive src || why+=("the source daemon died")
    pcd_daemon_alive dst || why+=("the destination daemon died")
    if ((${#why[@]} == 0)); then
        ok "$title"
        echo "#   $line"
        grep -E '^(status|downtime|throughput) ' "$out" | diag
    else
        not_ok "$title" "${why[@]}"
        tail -n 15 "$out" | diag
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
    pcd_guest_stop "$vm-src"
    pcd_guest_stop "$vm-dst"
}

# refused TITLE VM WHO ERE: the migration fails, daemon WHO logs ERE once.
refused() {
    local title=$1 vm=$2 who=$3 re=$4 rc lines why=() out=$PCD_TMP/migrate-$2
    if ! guests shmem "$vm"; then
        not_ok "$title" "a guest did not attach"
        diag <"$PCD_TMP/$vm.start"
        pcd_guest_stop "$vm-src"
        pcd_guest_stop "$vm-dst"
        return
    fi
    pcd_migrate src migrate --vm "$vm" --to "$PCD_IP_DST:$PCD_PORT" \
        --mode hybrid >"$out.stdout" 2>"$out.stderr" &
    wait $!
    rc=$?
    lines=$(grep -c . "$out.stderr")
    ((rc != 0)) || why+=("postcopy-migrate succeeded")
    ((lines == 1)) || why+=("$lines lines on stderr, expected one reason")
    # The refusing daemon may log after its peer has already seen the
    # refusal (a TLS alert goes out before gnutls returns to the daemon).
    pcd_wait_line "$(pcd_daemon_log "$who")" "$re" 10 >/dev/null ||
        why+=("the $who daemon did not log /$re/ within 10 s")
    running "$vm-src" || why+=("the source guest is not running its workload")
    pcd_daemon_alive src || why+=("the source daemon died")
    pcd_daemon_alive dst || why+=("the destination daemon died")
    if ((${#why[@]} == 0)); then
        ok "$title"
        diag <"$out.stderr"
        grep -E "$re" "$(pcd_daemon_log "$who")" | head -1 | diag
    else
        not_ok "$title" "${why[@]}"
        cat "$out.stdout" "$out.stderr" | head -10 | diag
        pcd_dump_logs "# " "$vm-src" "$vm-dst"
    fi
    pcd_guest_stop "$vm-src"
    pcd_guest_stop "$vm-dst"
}

if restart_src "${PSK[@]}" && restart_dst "${PSK[@]}"; then
    migrate_ok "${TESTS[0]}" shmem vm-psk
else
    not_ok "${TESTS[0]}" "the daemons did not start with tls = psk"
fi

# shellcheck disable=SC2046
if restart_src $(x509 a) && restart_dst $(x509 a); then
    migrate_ok "${TESTS[1]}" anon vm-x509
else
    not_ok "${TESTS[1]}" "the daemons did not start with tls = x509"
fi

if restart_src --psk-file "$psk" && restart_dst "${PSK[@]}"; then
    refused "${TESTS[2]}" vm-plain dst 'speaks plaintext, but this daemon requires TLS'
else
    not_ok "${TESTS[2]}" "the daemons did not start"
fi

if restart_src "${PSK[@]}"; then
    migrate_ok "${TESTS[3]}" shmem vm-after
else
    not_ok "${TESTS[3]}" "the source daemon did not start with tls = psk"
fi

# shellcheck disable=SC2046
if restart_src $(x509 b) && restart_dst $(x509 a); then
    refused "${TESTS[4]}" vm-ca dst 'peer certificate rejected: .*issuer is unknown'
else
    not_ok "${TESTS[4]}" "the daemons did not start with tls = x509"
fi

# shellcheck disable=SC2046
if restart_src $(x509 a) && restart_dst $(x509 wrong); then
    refused "${TESTS[5]}" vm-dname src 'does not match the expected'
else
    not_ok "${TESTS[5]}" "the daemons did not start with tls = x509"
fi

# shellcheck disable=SC2046
if restart_src $(x509 wrong) && restart_dst $(x509 a); then
    refused "${TESTS[6]}" vm-sname dst 'does not match the expected'
else
    not_ok "${TESTS[6]}" "the daemons did not start with tls = x509"
fi

# shellcheck disable=SC2046
if restart_src $(x509 wrong) --tls-peer-name wrong.invalid &&
    restart_dst $(x509 wrong) --tls-peer-name wrong.invalid; then
    migrate_ok "${TESTS[7]}" shmem vm-pname
else
    not_ok "${TESTS[7]}" "the daemons did not start with tls-peer-name"
fi

exit $((failed > 0))
