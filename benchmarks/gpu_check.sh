#!/usr/bin/env bash
# GPU check for a lent device machine (issue 16), at most 8 minutes in all:
#   1. the CUDA tests (Testing/python/test_gpu.py and the CUDA cases of test_acquisition.py),
#   2. `best` on the full L291 series on the GPU (wall time, stages, peak GPU memory),
#   3. `fast` and `best` at 5/2.5 mm (box) on vhm-head on the GPU,
# each through `python -m benchmarks.run`, so that results.json and BENCHMARKS.md get the rows; both files
# and a log are copied to $OUT (the device tool brings them back: copy them over the checkout's).
# The runs use `--precision auto`: on a CUDA GPU that is mixed precision as before (bf16 where the GPU has
# it, else fp16); the CUDA tests also check `--precision fp32` (no autocast) against the CPU.
#
# Data and packages: the device machine sees only the checkout, and it has torch, numpy, psutil and pytest
# but not pydicom (SimpleITK is not needed: inputs and outputs are DICOM there). Here, once:
#   python -m benchmarks.gpu_data pack --out .gpudata          # ~28 MiB: vhm-head exact, L291 geometry
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .gpudata/whl pydicom==3.0.2
#   echo /.gpudata/ >> "$(git rev-parse --git-common-dir)/info/exclude"
# and name `.gpudata` in the run's `carry`. Back here, with the files the tool returns:
#   python -m benchmarks.run --merge PATH/results.json
#
# Usage:  benchmarks/gpu_check.sh [--dry-run] [--smoke] [--budget-s S]
#   --dry-run   print the steps and their time limits, run nothing
#   --smoke     the same steps on the CPU at toy sizes (tests what can be tested without CUDA)
#   --budget-s  total seconds (default 480); every step gets what is left, later steps are skipped
#               (and say so) when too little is left
set -uo pipefail

cd "$(dirname "$0")/.."
BUDGET_S=480
DRY=0
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --smoke) SMOKE=1 ;;
    --budget-s) BUDGET_S="$2"; shift ;;
    *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

OUT_DIR="${OUT:-$(mktemp -d /tmp/sr4zct-gpu-check.XXXXXX)}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
export PYTHONPATH="$PWD/SR4ZCTModule${PYTHONPATH:+:$PYTHONPATH}"
START=$SECONDS
STATUS=0

log() { echo "[gpu_check $((SECONDS - START)) s] $*" | tee -a "$LOG"; }

# step NAME MIN_SECONDS MAX_SECONDS COMMAND...: run with the time left (at most MAX), skip below MIN
step() {
  local name="$1" min_s="$2" max_s="$3"
  shift 3
  local left=$((BUDGET_S - (SECONDS - START)))
  local limit=$((left < max_s ? left : max_s))
  if [ "$DRY" = 1 ]; then
    log "would run '$name' (limit ${max_s} s): $*"
    return 0
  fi
  if [ "$limit" -lt "$min_s" ]; then
    log "SKIPPED '$name': ${left} s left of ${BUDGET_S}, it needs at least ${min_s} s"
    STATUS=1
    return 0
  fi
  log "'$name' (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "'$name' ended with exit status $rc"
  [ "$rc" = 0 ] || STATUS=1
}

copy_results() {
  [ "$DRY" = 1 ] && return 0
  cp -f benchmarks/results.json "$OUT_DIR/results.json" 2>/dev/null || true
  cp -f BENCHMARKS.md "$OUT_DIR/BENCHMARKS.md" 2>/dev/null || true
}
trap copy_results EXIT

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  RESULTS=(--results "$OUT_DIR/results.json" --output "$OUT_DIR/BENCHMARKS.md")
  cp -f benchmarks/results.json "$OUT_DIR/results.json"
  copy_results() { :; }
else
  DEVICE=cuda
  RESULTS=()
fi

log "device check"
step "device" 5 60 "$PY" -c "
import torch, sys
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    print(p.name, f'{total / 2**30:.1f} GiB, free {free / 2**30:.1f} GiB, bf16', torch.cuda.is_bf16_supported())
elif '$DEVICE' == 'cuda':
    sys.exit('gpu_check: CUDA is not available here')
"
[ "$DRY" = 0 ] && [ "$STATUS" != 0 ] && { log "no usable device; stopping"; exit 1; }

GT=()
if ls .gpudata/whl/*.whl >/dev/null 2>&1; then
  step "install wheels" 5 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/sr4zct-site .gpudata/whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/sr4zct-site"
fi
if [ -f .gpudata/data.npz ]; then
  export SR4ZCT_DATA="${SR4ZCT_DATA:-/tmp/sr4zct-data}"
  step "unpack data" 20 120 "$PY" -m benchmarks.gpu_data unpack .gpudata "$SR4ZCT_DATA"
  GT=(--ground-truth "$SR4ZCT_DATA/vhm-head/vhm_head_1mm" --output-format dicom)
fi

step "CUDA tests" 30 100 "$PY" -m pytest -q -p no:cacheprovider Testing/python/test_gpu.py \
  Testing/python/test_acquisition.py -k "cuda or gpu or pass_pixels or device" -ra

if [ "$SMOKE" = 1 ]; then
  step "smoke: fast on a vhm-head crop (CPU)" 30 240 "$PY" -m benchmarks.run --smoke --device "$DEVICE" \
    "${GT[@]}" "${RESULTS[@]}"
else
  step "L291 best (GPU)" 90 200 "$PY" -m benchmarks.run --settings none --l291 best --device "$DEVICE" \
    --threads 0 "${GT[@]}"
  step "vhm-head 5/2.5 fast,best (GPU)" 60 200 "$PY" -m benchmarks.run --settings 5/2.5 --profiles box \
    --presets fast,best --device "$DEVICE" --threads 0 "${GT[@]}"
fi

log "done in $((SECONDS - START)) s (exit status $STATUS); results in $OUT_DIR"
exit $STATUS
