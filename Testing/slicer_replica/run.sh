#!/usr/bin/env bash
# The Slicer-replica suite in every pin set (the README's test command runs this): for each 3D Slicer release
# in pins/ (5.10: pydicom 2.4.4, numpy 2.0.2; 5.12: pydicom 3.0.2, numpy 2.4.6, the same pins as the 5.13
# preview), build or reuse its venv (setup.sh) and run the module's tests in it. Fails if any run fails.
#
# Usage: bash Testing/slicer_replica/run.sh [--pins RELEASE] [pytest arguments]
#   --pins 5.10 runs one pin set; SR4ZCT_REPLICA_VENV then names its venv (default .venv-slicer-RELEASE).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
releases=()
if [ "${1:-}" = "--pins" ]; then
  releases=("${2:?--pins needs a release}")
  shift 2
else
  for path in "$here"/pins/slicer-*.txt; do
    name="$(basename "$path" .txt)"
    releases+=("${name#slicer-}")
  done
  if [ -n "${SR4ZCT_REPLICA_VENV:-}" ]; then
    echo "slicer_replica/run.sh: SR4ZCT_REPLICA_VENV names one venv: give --pins RELEASE too" >&2
    exit 2
  fi
fi
failed=()
for release in "${releases[@]}"; do
  venv="${SR4ZCT_REPLICA_VENV:-$root/.venv-slicer-$release}"
  echo "=== Slicer-replica suite, Slicer $release pins ($venv)"
  start=$(date +%s)
  bash "$here/setup.sh" "$release" "$venv"
  # No PYTHONPATH from the caller: the tests put SR4ZCTModule/ on sys.path themselves, as Slicer does.
  if (cd "$here" && env -u PYTHONPATH QT_QPA_PLATFORM=offscreen SR4ZCT_REPLICA_PINS="$release" \
      "$venv/bin/python" -m pytest "$@"); then
    echo "=== Slicer $release pins: passed in $(( $(date +%s) - start )) s"
  else
    echo "=== Slicer $release pins: FAILED after $(( $(date +%s) - start )) s" >&2
    failed+=("$release")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "slicer_replica: the suite failed with the Slicer ${failed[*]} pins" >&2
  exit 1
fi
