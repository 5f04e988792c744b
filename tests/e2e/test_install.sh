#!/bin/bash
# test_install.sh - `make install` into a DESTDIR: the tree it writes for
# PREFIX=/usr/local and PREFIX=/usr (UNITDIR follows the prefix; the test
# VMM in libexec, not bin), the unit pointing at the installed daemon, and
# `make uninstall` taking all of it back; the manuals and the bash
# completion installed, each page rendering with `man -l` without a
# warning, the unit naming them.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_install.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
root=$(cd "$here/../.." && pwd)
n=0 failed=0
echo "1..7"

tmp=$(mktemp -d /tmp/pcd-install.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# do_make DESTDIR TARGET [VAR=VALUE...]
do_make() {
    local dest=$1 target=$2
    shift 2
    make -C "$root" --no-print-directory BUILD="$build" DESTDIR="$dest" \
        "$@" "$target" >"$tmp/make.log" 2>&1
}

# The files (not directories) under DIR, relative, sorted.
tree() {
    (cd "$1" && find . -type f -o -type l | sed 's|^\./||' | sort)
}

# check_tree PREFIX UNITDIR: install there; the tree is exactly this.
check_tree() {
    local prefix=$1 unitdir=$2 dest=$tmp/root${1//\//_}
    local want
    want=$(printf '%s\n' "${prefix#/}/sbin/postcopyd" \
        "${prefix#/}/bin/postcopy-migrate" \
        "${prefix#/}/libexec/postcopyd/postcopy-guest" \
        "${unitdir#/}/postcopyd.service" "${unitdir#/}/postcopyd.socket" \
        etc/postcopyd/postcopyd.conf.example \
        etc/libvirt/hooks/qemu.d/postcopyd "${extra[@]}" | sort)
    t="make install PREFIX=$prefix writes the expected tree, the unit in $unitdir"
    if ! do_make "$dest" install PREFIX="$prefix"; then
        not_ok "$t" "make install failed:" "$(tail -5 "$tmp/make.log")"
        return 1
    fi
    got=$(tree "$dest")
    if [ "$got" != "$want" ]; then
        not_ok "$t" "differs from the expected tree (< want, > got):" \
            "$(diff <(echo "$want") <(echo "$got") | grep '^[<>]')"
        return 1
    fi
    if ! grep -qx "ExecStart=$prefix/sbin/postcopyd" "$dest/${unitdir#/}/postcopyd.service"; then
        not_ok "$t" "the unit's ExecStart is not $prefix/sbin/postcopyd"
        return 1
    fi
    ok "$t"
}

# Besides the programs, the unit and the example config (per prefix).
manuals=(man8/postcopyd.8 man1/postcopy-migrate.1 man5/postcopyd.conf.5)
extra=(usr/local/share/bash-completion/completions/postcopy-migrate
    "${manuals[@]/#/usr/local/share/man/}")
check_tree /usr/local /usr/local/lib/systemd/system
extra=(usr/share/bash-completion/completions/postcopy-migrate
    "${manuals[@]/#/usr/share/man/}")
check_tree /usr /lib/systemd/system

dest=$tmp/root_usr
for m in "${manuals[@]}"; do
    page=$dest/usr/share/man/$m
    t="the installed ${m#*/} renders with man -l, without warnings"
    if ! command -v man >/dev/null || ! command -v nroff >/dev/null; then
        skip "$t" "man or nroff missing (Debian man-db, groff-base: ./configure --install-deps)"
        continue
    fi
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >"$tmp/page")
    name=$(basename "$m")
    name=${name%.*}
    if [ -z "$out" ] && grep -q "^NAME" "$tmp/page" &&
        grep -qE "^ *${name//./\\.} +- " "$tmp/page" && grep -q "^EXIT STATUS\|^SEE ALSO" "$tmp/page"; then
        ok "$t"
    else
        not_ok "$t" "man said:" "$out" "$(head -5 "$tmp/page")"
    fi
done

t="the unit names the manuals; the completion offers every command and each one's options"
why=()
grep -qx "Documentation=man:postcopyd(8) man:postcopyd.conf(5) man:postcopy-migrate(1)" \
    "$dest/lib/systemd/system/postcopyd.service" || why+=("no Documentation= line naming the manuals")
comp=$dest/usr/share/bash-completion/completions/postcopy-migrate
# complete WORD...: what the installed completion offers after WORDs.
complete_words() {
    (
        # shellcheck disable=SC1090
        . "$comp" || exit 1
        COMP_WORDS=(postcopy-migrate "$@" "")
        COMP_CWORD=${#COMP_WORDS[@]}
        COMP_CWORD=$((COMP_CWORD - 1))
        _postcopy_migrate 2>/dev/null
        printf '%s\n' "${COMPREPLY[@]}"
    )
}
commands=$("$build/postcopy-migrate" --help |
    awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }')
[ -n "$commands" ] || why+=("postcopy-migrate --help lists no command")
for cmd in $commands; do
    complete_words | grep -qx -- "$cmd" || why+=("the completion lacks the command $cmd")
    offered=$(complete_words "$cmd")
    for opt in $("$build/postcopy-migrate" "$cmd" --help | grep -o '^  --[a-z-]*'); do
        grep -qx -- "$opt" <<<"$offered" || why+=("the completion lacks $cmd $opt")
    done
done
for choice in auto async-wp sync-wp soft-dirty precopy hybrid postcopy; do
    grep -qw -- "$choice" "$comp" 2>/dev/null || why+=("the completion lacks '$choice'")
done
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

t="make uninstall removes every installed file, keeps the operator's postcopyd.conf"
dest=$tmp/root_usr
echo "[daemon]" >"$dest/etc/postcopyd/postcopyd.conf"
if do_make "$dest" uninstall PREFIX=/usr && [ "$(tree "$dest")" = etc/postcopyd/postcopyd.conf ]; then
    ok "$t"
else
    not_ok "$t" "left:" "$(tree "$dest")" "$(tail -5 "$tmp/make.log")"
fi
exit $((failed > 0))
