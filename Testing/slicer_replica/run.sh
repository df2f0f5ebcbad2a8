#!/usr/bin/env bash
# Build (or reuse) the Slicer-replica venv and run the replica tests in it. Part of the README's test command.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SR4ZCT_REPLICA_VENV:-$root/.venv-slicer}"
bash "$here/setup.sh" "$venv"
cd "$here"
# No PYTHONPATH from the caller: the tests put SR4ZCTModule/ on sys.path themselves, as Slicer does.
exec env -u PYTHONPATH QT_QPA_PLATFORM=offscreen "$venv/bin/python" -m pytest "$@"
