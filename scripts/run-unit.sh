#!/bin/sh
# Run each unit-test binary given; with VALGRIND=1 under valgrind. Prints a
# closing "N passed, N failed" line over the binaries and fails if any did.
# valgrind runs one thread at a time; by default a thread that keeps the CPU
# (a password hash on the worker) can starve the others for seconds, so that
# a test of what the loop thread answers meanwhile sees nothing answered:
# --fair-sched=yes hands the CPU round in turn.
pass=0; fail=0; failed=""
for t in "$@"; do
    if [ -n "$VALGRIND" ]; then
        valgrind -q --fair-sched=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$t"
    else
        "$t"
    fi
    if [ $? -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $t"; fi
done
[ -n "$failed" ] && echo "unit: failed:$failed"
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
