#!/bin/sh
# Run a pytest folder (listing its 12 slowest steps, to keep make test within
# its budget); succeed when it has no tests yet (pytest exit 5).
[ -d "$1" ] || { echo "pytest: no $1 yet"; exit 0; }
/usr/bin/python3 -m pytest -q --durations=12 "$@"
rc=$?
[ $rc -eq 5 ] && { echo "pytest: no tests collected in $1"; exit 0; }
exit $rc
