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
    for p in gcc python3-dev bird2 gobgpd; do
        dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || need="$need $p"
    done
    if [ -n "$need" ]; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
        # the interop tests (tests/interop) run their own bird/gobgpd on loopback: the
        # packages' system services must not hold port 179 on a systemd host
        case "$need" in *bird2*|*gobgpd*)
            if [ -d /run/systemd/system ]; then
                $SUDO systemctl disable --now bird.service gobgpd.service >/dev/null 2>&1 || true
            fi;;
        esac
    fi
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --upgrade pip setuptools wheel
$PY -m pip install -q -e '.[test]'
# pyenv installs console scripts behind shims that only appear after a rehash
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
# the compiled modules must have been built: fail loudly here rather than test only the pure codec
$PY -c "import rserver.codec._cupdate" || { echo "setup: the Cython codec (ext/_cupdate.pyx) did not build" >&2; exit 1; }
$PY -c "import rserver.rib._tables" || { echo "setup: the Cython RIB tables (ext/_rib.pyx) did not build" >&2; exit 1; }
