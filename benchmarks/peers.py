"""Peer methods for the benchmark: ECLARE in its own virtual environment.

ECLARE (PyPI ``eclare``, Remedios et al.) is a self-supervised through-plane method for MRI. It is never a
dependency of ``sr4zct``: the benchmark installs it into ``benchmarks/.venv-eclare`` (git-ignored) and calls
its ``run-eclare`` command on a NIfTI file of the thick-slice input.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

from .measure import run_measured

ECLARE_VERSION = "1.0.1"
TORCH_VERSION = "2.13.0"
DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-eclare"


class PeerUnavailable(RuntimeError):
    """A peer method cannot run here; the message says why and ends up in the results table."""


def _venv_bin(venv_dir: Path, name: str) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    suffix = ".exe" if os.name == "nt" else ""
    return venv_dir / sub / f"{name}{suffix}"


def ensure_eclare(venv_dir: Path = DEFAULT_VENV, *, timeout_s: float = 1800.0) -> Path:
    """Create the ECLARE virtual environment when needed and return the path of ``run-eclare``.

    torch is installed first, pinned to the version this project uses: left to itself, pip resolves
    ``eclare``'s ``torch>=2.5`` to a build that pulls several GB of CUDA libraries.

    Raises
    ------
    PeerUnavailable
        When the environment cannot be created or the packages cannot be installed (no registry, ...).
    """
    venv_dir = Path(venv_dir)
    exe = _venv_bin(venv_dir, "run-eclare")
    if exe.is_file():
        return exe
    try:
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    except Exception as exc:  # noqa: BLE001 - any failure makes the peer unavailable, with its reason
        raise PeerUnavailable(f"could not create the virtual environment {venv_dir}: {exc}") from exc
    pip = [str(_venv_bin(venv_dir, "python")), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for packages in ([f"torch=={TORCH_VERSION}"], [f"eclare=={ECLARE_VERSION}"]):
        try:
            proc = subprocess.run(
                [*pip, *packages], capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerUnavailable(
                f"installing {' '.join(packages)} took longer than {timeout_s:.0f} s"
            ) from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise PeerUnavailable(f"pip could not install {' '.join(packages)}: {' / '.join(tail)}")
    if not exe.is_file():
        raise PeerUnavailable(f"eclare installed but {exe} is missing")
    return exe


def run_eclare(
    exe: Path,
    input_nifti: Path,
    out_dir: Path,
    *,
    relative_thickness_px: float,
    n_patches: int,
    batch_size: int = 32,
    timeout_s: float | None = None,
    log_path: Path | None = None,
) -> tuple[dict, Path | None]:
    """Run ``run-eclare`` on ``input_nifti`` (through-plane axis = largest voxel size).

    Returns the measurement record of :func:`benchmarks.measure.run_measured` and the output NIfTI path
    (``None`` when the run failed or timed out).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(exe),
        "--in-fpath",
        str(input_nifti),
        "--out-dir",
        str(out_dir),
        "--relative-slice-thickness",
        f"{relative_thickness_px:g}",
        "--relative-slice-profile-type",
        "rect",
        "--n-patches",
        str(int(n_patches)),
        "--batch-size",
        str(int(batch_size)),
    ]
    env = dict(os.environ)
    env.setdefault("TQDM_MININTERVAL", "5")
    record = run_measured(cmd, timeout_s=timeout_s, env=env, log_path=log_path)
    name = input_nifti.name.replace(".nii", "_eclare.nii")
    out = out_dir / name
    return record, (out if record["returncode"] == 0 and out.is_file() else None)


_TQDM = re.compile(r"(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)")


def eclare_progress(log_text: str, n_patches: int) -> str | None:
    """Where a killed ECLARE run was: training patches done, or inference slices of which rotation."""
    text = log_text.replace("\r", "\n")
    matches = list(_TQDM.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    done, total = int(last.group(1)), int(last.group(2))
    h, m, sec = int(last.group(3) or 0), int(last.group(4)), int(last.group(5))
    elapsed = h * 3600 + m * 60 + sec
    if total == n_patches:
        return f"training: {done}/{total} patches after {elapsed} s"
    rotation = min(max(1, _count_restarts(matches, total)), 2)
    rate = elapsed / done if done else None
    est = f", about {rate * total * 2 / 60:.0f} min for both rotations" if rate else ""
    return f"inference: slice {done}/{total} of rotation {rotation} of 2 after {elapsed} s{est}"


def _count_restarts(matches: list, total: int) -> int:
    count, previous = 0, None
    for x in matches:
        if int(x.group(2)) != total:
            continue
        done = int(x.group(1))
        if previous is None or done < previous:
            count += 1
        previous = done
    return count


if __name__ == "__main__":  # python -m benchmarks.peers: prepare the ECLARE environment only
    print(ensure_eclare(), file=sys.stdout)
