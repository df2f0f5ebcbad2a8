#!/usr/bin/env bash
# Build the Slicer-replica environment: a venv with exactly the Python packages 3D Slicer 5.13 bundles
# (requirements-slicer.txt, Slicer's own pins), plus what the SR4ZCT extension adds in a real Slicer (torch,
# as the PyTorch extension installs it), Slicer's real MRML (slicer-core) and the test tools.
# The sr4zct core is NOT installed: the tests put SR4ZCTModule/ on sys.path, as Slicer does.
#
# Usage: bash Testing/slicer_replica/setup.sh [VENV_DIR]      (default: .venv-slicer at the repository root)
# Python: $SR4ZCT_REPLICA_PYTHON, else python3.11 from pyenv or PATH. Slicer 5.13 runs Python 3.12; this
# uses 3.11 because the registry's torch for 3.12 is the multi-GB CUDA build, and 3.11 is the interpreter
# the local CPU build of torch 2.13.0 is for. Every Slicer pin has a 3.11 wheel.
# Re-running is cheap: a stamp of the interpreter and the requirement files skips an up-to-date venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/.venv-slicer}"

python="${SR4ZCT_REPLICA_PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11.*/bin/python3.11 "$(command -v python3.11 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then python="$candidate"; fi
  done
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "slicer_replica/setup.sh: no Python 3.11 found (set SR4ZCT_REPLICA_PYTHON to one)" >&2
  exit 2
fi

stamp_text="$("$python" -VV) $(cat "$here"/requirements-*.txt | sha256sum)"
if [ -f "$venv/.replica-stamp" ] && [ "$(cat "$venv/.replica-stamp")" = "$stamp_text" ]; then
  echo "slicer_replica: $venv is up to date"
  exit 0
fi

start=$(date +%s)
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q)
# 1. Slicer's bundle, exactly: the list is complete, so no dependency resolution.
"${pip[@]}" --no-deps -r "$here/requirements-slicer.txt"
# 2. Slicer's real MRML. Slicer builds VTK itself (no matplotlib): install vtk without its dependencies.
"${pip[@]}" --no-deps -r "$here/requirements-mrml.txt"
# 3. torch (with its own dependencies, as the PyTorch extension installs it) and the test tools, never
#    changing a Slicer package (constraints).
"${pip[@]}" -c "$here/requirements-slicer.txt" -r "$here/requirements-extra.txt"
for forbidden in psutil tqdm pylibjpeg matplotlib sr4zct; do
  if "$venv/bin/python" -m pip show -q "$forbidden" >/dev/null 2>&1; then
    echo "slicer_replica/setup.sh: $forbidden got installed; Slicer does not ship it" >&2
    exit 1
  fi
done
echo "$stamp_text" > "$venv/.replica-stamp"
echo "slicer_replica: built $venv with $("$venv/bin/python" -V) in $(( $(date +%s) - start )) s"
