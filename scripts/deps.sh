#!/bin/sh
# Install the Debian packages craftd needs, if any is missing: `deps.sh run`
# what building and running the daemon needs (make run), `deps.sh` all that
# building everything and testing it needs (make test). Runs apt-get only
# as root; otherwise says what to install. prometheus is there for promtool
# (tests/cluster/test_ops.py checks the /metrics text with `promtool check
# metrics`).
set -e
RUN_PKGS="build-essential pkg-config libuv1-dev libh2o-dev libssl-dev libcrypt-dev zlib1g-dev
libjansson-dev libsystemd-dev"
PKGS="$RUN_PKGS libcmocka-dev libcurl4-openssl-dev python3 python3-pytest iptables iproute2
valgrind clang openssl help2man whois prometheus"
[ "${1:-}" = run ] && PKGS=$RUN_PKGS
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q $missing >/dev/null
else
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run 'sudo apt-get install$missing' (or make test as root)" >&2
    exit 1
fi
