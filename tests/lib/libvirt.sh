# shellcheck shell=bash
# shellcheck disable=SC2034
# libvirt.sh - a private libvirtd per test "host", no systemd, and TCG
# domains booting the test guest (tools/testvm).  Source it from bash:
#
#   . tests/lib/libvirt.sh
#   trap libvirt_cleanup EXIT
#   libvirt_start src "$tmp/libvirt-src" "$NETNS"     # sets LIBVIRT_URI[src]
#   libvirt_domain_xml vm1 128 "$tmp/vm1.serial" >vm1.xml
#   lvsh src create vm1.xml                           # virsh on that host
#
# A root libvirtd keeps its state under fixed paths (/etc/libvirt,
# /run/libvirt, /var/lib/libvirt, ...): each one started here runs in a
# mount namespace of its own where its directory is bound over those
# paths, so two can run side by side and nothing of the machine's own
# libvirt is touched.  Clients reach it through its socket
# (qemu:///system?socket=DIR/run/libvirt-sock).  Its qemu.conf runs QEMU
# as root without namespaces, cgroups or a security driver: the tests
# need nothing else, and postcopyd ptraces QEMU.  QEMU's -sandbox stays
# on, as libvirt's default.
#
# LIBVIRT_HOOK (a file): installed as the libvirtd's hooks/qemu.d/postcopyd.
# Variables set: LIBVIRT_URI[HOST], LIBVIRT_PID[HOST], LIBVIRT_DIR[HOST].

declare -A LIBVIRT_URI
declare -A LIBVIRT_PID
declare -A LIBVIRT_DIR

# The mount points the private directories are bound over.
LIBVIRT_PATHS="etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt \
log:/var/log/libvirt cache:/var/cache/libvirt"

libvirt_write_config() {
    local dir=$1
    cat >"$dir/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
EOF
    cat >"$dir/etc/libvirtd.conf" <<'EOF'
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:stderr"
EOF
}

# libvirt_start HOST DIR [NETNS]: libvirtd with its state in DIR (in
# NETNS if given); returns once it answers.
libvirt_start() {
    local host=$1 dir=$2 netns=${3:-} pre=() p binds="" i
    command -v libvirtd >/dev/null || { echo "libvirt_start: no libvirtd" >&2; return 1; }
    for p in $LIBVIRT_PATHS; do
        mkdir -p "$dir/${p%%:*}" "${p#*:}" || return 1
        binds="$binds mount --bind '$dir/${p%%:*}' '${p#*:}' &&"
    done
    libvirt_write_config "$dir"
    if [ -n "${LIBVIRT_HOOK:-}" ]; then
        mkdir -p "$dir/etc/hooks/qemu.d" &&
            install -m 755 "$LIBVIRT_HOOK" "$dir/etc/hooks/qemu.d/postcopyd" || return 1
    fi
    [ -n "$netns" ] && pre=(ip netns exec "$netns")
    "${pre[@]}" unshare -m --propagation private sh -c \
        "$binds exec libvirtd --pid-file '$dir/libvirtd.pid'" \
        </dev/null >"$dir/libvirtd.log" 2>&1 &
    LIBVIRT_PID[$host]=$!
    LIBVIRT_DIR[$host]=$dir
    LIBVIRT_URI[$host]="qemu:///system?socket=$dir/run/libvirt-sock"
    for ((i = 0; i < 200; i++)); do
        lvsh "$host" version >/dev/null 2>&1 && return 0
        kill -0 "${LIBVIRT_PID[$host]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "libvirt_start: libvirtd '$host' did not come up:" >&2
    grep -v -e dmidecode -e dnsmasq "$dir/libvirtd.log" | tail -n 5 | sed 's/^/  | /' >&2
    return 1
}

# lvsh HOST VIRSH_ARGS...: virsh on HOST's libvirtd.
lvsh() {
    local host=$1
    shift
    timeout -k 5 60 virsh -q -c "${LIBVIRT_URI[$host]}" "$@"
}

# libvirt_domain_state HOST NAME: "running", "paused", "shut off", or
# "none" when the domain is not known there.
libvirt_domain_state() {
    lvsh "$1" domstate "$2" 2>/dev/null | head -n 1 | grep . || echo none
}

# libvirt_domain_xml NAME MEM_MIB SERIAL [--private]: a TCG domain booting
# the test guest (share=50), serial to a file, no disk, no network; RAM in
# a shared memfd unless --private.
libvirt_domain_xml() {
    local name=$1 mem=$2 serial=$3 backing
    backing="<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
    [ "${4:-}" = --private ] && backing=""
    cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$mem</memory>
  $backing
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$(realpath "$(qemu_testvm)")</kernel>
    <cmdline>share=50</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>$(command -v "$QEMU_BIN")</emulator>
    <serial type='file'><source path='$serial'/><target port='0'/></serial>
    <memballoon model='none'/>
    <video><model type='none'/></video>
  </devices>
</domain>
EOF
}

# libvirt_cleanup: every domain destroyed and undefined, then each
# libvirtd stopped (QEMUs outlive a stopped libvirtd otherwise).
libvirt_cleanup() {
    local host d
    for host in "${!LIBVIRT_PID[@]}"; do
        for d in $(lvsh "$host" list --all --name 2>/dev/null); do
            lvsh "$host" destroy "$d" >/dev/null 2>&1
            lvsh "$host" undefine "$d" >/dev/null 2>&1
        done
        kill -TERM "${LIBVIRT_PID[$host]}" 2>/dev/null
        wait "${LIBVIRT_PID[$host]}" 2>/dev/null
    done
    LIBVIRT_PID=()
}
