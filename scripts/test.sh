#!/usr/bin/env bash
# The test command from the README: installs what is missing, then runs the suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k codec).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
set +e
$PY -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, never a pass
if [ "$rc" -eq 5 ]; then echo "test: no tests were collected" >&2; exit 1; fi
exit "$rc"
