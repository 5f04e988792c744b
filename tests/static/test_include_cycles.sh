#!/bin/bash
# test_include_cycles.sh - no include cycle among the folders of daemon/.
# A folder depends on another when one of its files includes a header that
# lives there; those dependencies must form a DAG (the data path reads
# one way: control -> roles -> migration -> uffd / vmm).  Prints TAP, the
# dependency list as comments, and each cycle it finds.  Run by `make
# check`, or by hand from the top of the tree:
#
#   tests/static/test_include_cycles.sh
#
# Plain bash and awk: nothing to install.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1

echo "1..1"
# "from to file header": a file of folder "from" includes a header of "to".
# One awk over every file: the header table first, then the includes.
uses=$(awk '
    FNR == 1 { n = split(FILENAME, part, "/"); folder = part[2]; file = FILENAME }
    FILENAME == "-" { home[$2] = $1; next }
    /^[ \t]*#[ \t]*include[ \t]*"/ {
        h = $0
        sub(/^[^"]*"/, "", h)
        sub(/".*/, "", h)
        sub(/.*\//, "", h)
        if ((h in home) && home[h] != folder) {
            print folder, home[h], file, h
        }
    }' - daemon/*/*.[ch] < <(for h in daemon/*/*.h; do
    f=${h#daemon/}
    echo "${f%%/*} ${f##*/}"
done))
edges=$(echo "$uses" | awk 'NF { print $1, $2 }' | sort -u)

echo "$edges" | sed 's/^/# depends: /'
cycles=$(echo "$edges" | awk '
    NF == 2 { adj[$1] = adj[$1] " " $2; nodes[$1]; nodes[$2] }
    function dfs(n, path,    i, k, next_nodes) {
        color[n] = 1
        k = split(adj[n], next_nodes, " ")
        for (i = 1; i <= k; i++) {
            if (color[next_nodes[i]] == 1) {
                print path " -> " next_nodes[i]
                found = 1
            } else if (!color[next_nodes[i]]) {
                dfs(next_nodes[i], path " -> " next_nodes[i])
            }
        }
        color[n] = 2
    }
    END {
        for (n in nodes) {
            if (!color[n]) {
                dfs(n, n)
            }
        }
    }')
if [ -n "$cycles" ]; then
    echo "$cycles" | sed 's/^/# cycle: /'
    echo "$uses" | awk 'NF { print "# " $3 " includes " $4 " (" $2 ")" }'
    echo "not ok 1 - no include cycle among daemon/ folders"
    exit 1
fi
echo "ok 1 - no include cycle among daemon/ folders"
