#!/usr/bin/env bash
# Build (or reuse) a Slicer-replica venv: exactly the Python packages one 3D Slicer release bundles
# (pins/slicer-<release>.txt, read from Slicer's SuperBuild files by slicer_pins.py), plus what the SR4ZCT
# extension adds in a real Slicer (torch, as the PyTorch extension installs it), Slicer's real MRML
# (slicer-core) and the test tools. The sr4zct core is NOT installed: the tests put SR4ZCTModule/ on
# sys.path, as Slicer does.
#
# Usage: bash Testing/slicer_replica/setup.sh RELEASE [VENV_DIR]     RELEASE: 5.10 or 5.12 (pins/)
#        (default VENV_DIR: .venv-slicer-RELEASE at the repository root)
# Python: $SR4ZCT_REPLICA_PYTHON, else python3.11 from pyenv or PATH. Slicer 5.10 and 5.12 run Python 3.12;
# this uses 3.11 because the registry's torch for 3.12 is the multi-GB CUDA build, and 3.11 is the
# interpreter the local CPU build of torch 2.13.0 is for. Every pin has a CPython 3.11 wheel
# (slicer_pins.py --check-wheels 3.11), and only wheels are installed: a missing one fails here.
# Re-running is cheap: a venv whose packages are exactly the pins is used as it is. A folder that is not such
# a venv and was not made by this script is never removed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
release="${1:?usage: setup.sh RELEASE [VENV_DIR] (RELEASE: $(cd "$here/pins" && ls | sed 's/^slicer-//; s/\.txt$//' | tr '\n' ' '))}"
pins="$here/pins/slicer-$release.txt"
[ -f "$pins" ] || { echo "slicer_replica/setup.sh: no pin set $pins" >&2; exit 2; }
venv="${2:-$root/.venv-slicer-$release}"

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

# Up to date: Python 3.11 and every pin of the three lists installed at its version.
check='
import importlib.metadata as md, sys
wrong = []
for path in sys.argv[1:]:
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            try:
                found = md.version(name)
            except md.PackageNotFoundError:
                found = None
            if found is None or found.split("+")[0] != version:
                wrong.append(f"{name} {found} (pinned {version})")
if wrong:
    print("not as pinned: " + ", ".join(wrong), file=sys.stderr)
sys.exit(sys.version_info[:2] != (3, 11) or bool(wrong))
'
lists=("$pins" "$here/requirements-mrml.txt" "$here/requirements-extra.txt")
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" "${lists[@]}" 2>/dev/null; then
  echo "slicer_replica: $venv has the Slicer $release pins"
  exit 0
fi
if [ -e "$venv" ] && [ ! -f "$venv/.replica-venv" ] && [ -n "$(ls -A "$venv")" ]; then
  echo "slicer_replica/setup.sh: $venv exists and was not made by this script; not replacing it" >&2
  exit 2
fi

start=$(date +%s)
rm -rf "$venv"
"$python" -m venv "$venv"
touch "$venv/.replica-venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q)
# 1. Slicer's bundle, exactly: the list is complete, so no dependency resolution; wheels only.
"${pip[@]}" --no-deps --only-binary=:all: -r "$pins"
# 2. Slicer's real MRML. Slicer builds VTK itself (no matplotlib): install vtk without its dependencies.
"${pip[@]}" --no-deps -r "$here/requirements-mrml.txt"
# 3. torch (with its own dependencies, as the PyTorch extension installs it) and the test tools, never
#    changing a Slicer package (constraints).
"${pip[@]}" -c "$pins" -r "$here/requirements-extra.txt"
for forbidden in psutil tqdm pylibjpeg matplotlib sr4zct; do
  if "$venv/bin/python" -m pip show -q "$forbidden" >/dev/null 2>&1; then
    echo "slicer_replica/setup.sh: $forbidden got installed; Slicer does not ship it" >&2
    exit 1
  fi
done
if ! "$venv/bin/python" -c "$check" "${lists[@]}"; then
  echo "slicer_replica/setup.sh: $venv does not hold exactly the pins" >&2
  exit 1
fi
echo "slicer_replica: built $venv (Slicer $release pins, $("$venv/bin/python" -V)) in $(( $(date +%s) - start )) s"
