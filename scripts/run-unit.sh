#!/bin/sh
# Run each unit-test binary given; with VALGRIND=1 under valgrind. Prints a
# closing "N passed, N failed" line over the binaries and fails if any did.
pass=0; fail=0; failed=""
for t in "$@"; do
    if [ -n "$VALGRIND" ]; then
        valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$t"
    else
        "$t"
    fi
    if [ $? -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $t"; fi
done
[ -n "$failed" ] && echo "unit: failed:$failed"
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
