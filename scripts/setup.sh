#!/usr/bin/env bash
# Installs everything rserver needs on a fresh Debian 12 machine (root or sudo):
# the Debian packages (compiler, Python headers, real BGP daemons used as test peers)
# and the package itself with its test extras, building the Cython codec.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if command -v apt-get >/dev/null 2>&1; then
    need=""
    for p in gcc python3-dev; do
        dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
    done
    if [ -n "$need" ]; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
    fi
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --upgrade pip setuptools wheel
$PY -m pip install -q -e '.[test]'
# the compiled codec must have been built: fail loudly here rather than test only the pure one
$PY -c "import rserver.codec._cupdate" || { echo "setup: the Cython codec did not build" >&2; exit 1; }
