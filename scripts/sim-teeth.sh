#!/bin/sh
# Prove the simulator has teeth: apply each bug in tests/sim/mutants/ to a
# throwaway copy of the tree, build the simulator there, run SEEDS seeds
# (default 20000) and report the first failing seed and how many failed.
# The real tree is never touched. Usage: scripts/sim-teeth.sh [mutant.py...]
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
seeds=${SEEDS:-20000}
jobs=${JOBS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ $# -gt 0 ] || set -- "$top"/tests/sim/mutants/*.py
for m in "$@"; do
    m=$(cd "$(dirname "$m")" && pwd)/$(basename "$m")
    name=$(basename "$m" .py)
    what=$(sed -n 's/^# Mutant: \(.*\)\.$/\1/p' "$m")
    copy="$work/$name"
    mkdir -p "$copy"
    (cd "$top" && git ls-files -z | xargs -0 -I{} cp --parents {} "$copy/")
    if ! (cd "$copy" && python3 "$m"); then
        echo "$name: the patch no longer applies ($what)"; continue
    fi
    if ! make -s -C "$copy" O=b b/sim >/dev/null 2>&1; then
        echo "$name: does not build ($what)"; continue
    fi
    out=$("$copy/b/sim" --seeds "$seeds" --jobs "$jobs" 2>/dev/null |
          grep -E "failing seeds|passed")
    # the smallest of the failing seeds listed (workers report out of order)
    first=$(echo "$out" | sed -n 's/^sim: failing seeds: //p' | tr ' ' '\n' |
            grep -E '^[0-9]+$' | sort -n | head -1)
    failed=$(echo "$out" | sed -n 's/.* passed, \([0-9]*\) failed.*/\1/p')
    echo "$name: first failing seed ${first:-none}, $failed of $seeds failed: $what"
    rm -rf "$copy"
done
