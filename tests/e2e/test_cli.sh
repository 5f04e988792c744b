#!/bin/bash
# test_cli.sh - what an operator sees first of each program: --version,
# --help in the user's locale (no "[OPTION?]"), the choices of every
# enumerated option, and the exit statuses.
# Prints TAP.  Run by tests/run-tests.sh, or: tests/e2e/test_cli.sh --build DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"
pcd_test_args "$@"
build=$(cd "$build" && pwd)
n=0 failed=0
version=$(sed -n 's/^#define POSTCOPYD_VERSION "\(.*\)"$/\1/p' \
    "$here/../../daemon/control/version.h")
progs=(postcopyd postcopy-migrate postcopy-guest)
echo "1..$((3 * ${#progs[@]} + 2))"

# A UTF-8 locale: GLib prints "[OPTION…]" there, "[OPTION?]" only when
# the program never called setlocale() and runs in the C locale.
export LC_ALL=C.UTF-8

for p in "${progs[@]}"; do
    t="$p --version prints '$p $version' and exits 0"
    out=$("$build/$p" --version 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "$p $version" ]; then
        ok "$t"
    else
        not_ok "$t" "exit $rc, printed:" "$out"
    fi

    t="$p --help is in the user's locale (no '[OPTION?]')"
    out=$("$build/$p" --help 2>&1)
    if printf '%s\n' "$out" | grep -qF '[OPTION?]'; then
        not_ok "$t" "$(printf '%s\n' "$out" | grep -F '[OPTION?]')"
    else
        ok "$t"
    fi

    t="$p --help documents its exit statuses"
    if printf '%s\n' "$out" | grep -q '^Exit status:' &&
        printf '%s\n' "$out" | grep -qE '^ +2 +'; then
        ok "$t"
    else
        not_ok "$t" "no 'Exit status:' section with status 2 in --help"
    fi
done

# Every enumerated option names its choices where --help shows it.
t="every enumerated option of postcopyd and postcopy-migrate lists its choices"
why=()
for want in "--dirty-tracking=auto|async-wp|sync-wp|soft-dirty" \
    "--mode=precopy|hybrid|postcopy" "--postcopy-bulk=on|off"; do
    "$build/postcopy-migrate" migrate --help 2>&1 | grep -qF -- "$want" ||
        why+=("migrate --help has no '$want'")
done
"$build/postcopy-migrate" attach --help 2>&1 | grep -qF -- "--uffd=syscall|device" ||
    why+=("attach --help has no '--uffd=syscall|device'")
for want in "--tls=off|psk|x509" "--log-level=" "--prealloc=on|off"; do
    "$build/postcopyd" --help 2>&1 | grep -qF -- "$want" ||
        why+=("postcopyd --help has no '$want'")
done
if ((${#why[@]} == 0)); then ok "$t"; else not_ok "$t" "${why[@]}"; fi

t="postcopy-guest --help lists the choices of --backing and --workload"
out=$("$build/postcopy-guest" --help 2>&1)
if printf '%s\n' "$out" | grep -qF -- "--backing=anon|shmem|hugetlbfs" &&
    printf '%s\n' "$out" | grep -qF -- "--workload=idle|seq|random|hotset"; then
    ok "$t"
else
    not_ok "$t" "$(printf '%s\n' "$out" | grep -E -- '--(backing|workload)')"
fi
exit $((failed > 0))
