"""The worker running the real enhancement pipeline on a tiny NRRD volume (CPU, small time budget)."""

from __future__ import annotations

import time

import numpy as np
import psutil
import pytest
from sr4zct.run.jobs import BackgroundJob, JobSpec, lock_path_for

pytest.importorskip("sr4zct.run.pipeline")
sitk = pytest.importorskip("SimpleITK")

WAIT_S = 120
N_SLICES, N_PIXELS, PIXEL_MM, SPACING_MM, THICKNESS_MM = 12, 48, 0.75, 2.0, 3.0


@pytest.fixture(scope="module")
def tiny_nrrd(tmp_path_factory):
    """A 12 x 48 x 48 'CT': a disc of water in air whose HU change along z, 3 mm slices every 2 mm."""
    z, y, x = np.mgrid[0:N_SLICES, 0:N_PIXELS, 0:N_PIXELS]
    disc = ((y - 24) ** 2 + (x - 24) ** 2) < 18**2
    array = (-1000.0 + 1000.0 * disc + 200.0 * disc * np.sin(z / 2.0)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((PIXEL_MM, PIXEL_MM, SPACING_MM))
    path = tmp_path_factory.mktemp("tiny") / "tiny.nrrd"
    sitk.WriteImage(image, str(path))
    return path, array


def _spec(tiny, tmp_path, **changes):
    fields = dict(input_path=str(tiny), output_path=str(tmp_path / "out.nrrd"), thickness_mm=THICKNESS_MM,
                  preset="fast", device="cpu", max_minutes=0.3)  # fmt: skip
    fields.update(changes)
    return JobSpec(**fields)


@pytest.mark.slow
def test_enhance_job_writes_a_correct_result(tiny_nrrd, tmp_path):
    path, array = tiny_nrrd
    spec = _spec(path, tmp_path, uncertainty_path=str(tmp_path / "unc.nrrd"),
                 save_model_path=str(tmp_path / "model.pt"))  # fmt: skip
    job = BackgroundJob(spec).start()
    terminal = job.wait(WAIT_S)
    events = job.poll()
    assert terminal["event"] == "finished", job.error
    assert [e["event"] for e in events if e["event"] != "log"][0] == "started"
    assert sum(e["event"] in ("finished", "failed", "cancelled") for e in events) == 1
    started = events[0]
    assert started["input_shape"] == [N_SLICES, N_PIXELS, N_PIXELS] and started["planned_steps"] > 0
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {e["stage"] for e in events if e["event"] == "progress"} >= {"prepare", "train", "infer", "write"}

    # Output on the isotropic grid starting at the first slice centre, in HU.
    n_out = int(np.floor((N_SLICES - 1) * SPACING_MM / PIXEL_MM + 1e-6)) + 1
    assert terminal["output_shape"] == [n_out, N_PIXELS, N_PIXELS]
    out = sitk.ReadImage(terminal["output_path"])
    assert out.GetSize() == (N_PIXELS, N_PIXELS, n_out)
    assert out.GetSpacing()[2] == pytest.approx(PIXEL_MM)
    result = sitk.GetArrayFromImage(out)
    z_in = np.arange(N_SLICES) * SPACING_MM
    z_out = np.arange(n_out) * PIXEL_MM
    linear = np.stack(
        [np.interp(z_out, z_in, array[:, r, c]) for r in range(N_PIXELS) for c in range(N_PIXELS)], axis=1
    ).reshape(n_out, N_PIXELS, N_PIXELS)
    assert np.isfinite(result).all()
    assert np.abs(result - linear).mean() < 50.0  # a few training steps: close to linear interpolation
    assert terminal["parameters"]["thickness_mm"] == "3"
    assert (tmp_path / "unc.nrrd").exists() and (tmp_path / "model.pt").exists()
    assert not lock_path_for(tmp_path / "out.nrrd").exists()
    assert not job.temp_dir.exists()


@pytest.mark.slow
def test_cancel_real_training(tiny_nrrd, tmp_path):
    path, _ = tiny_nrrd
    job = BackgroundJob(_spec(path, tmp_path, max_minutes=2.0)).start()
    deadline = time.monotonic() + WAIT_S
    while (job.progress is None or job.progress["stage"] != "train") and time.monotonic() < deadline:
        if job.done:
            pytest.fail(f"job ended before training: {job.terminal}")
        time.sleep(0.05)
    pids = [job.pid] + [c.pid for c in psutil.Process(job.pid).children(recursive=True)]
    t0 = time.monotonic()
    job.cancel(timeout_s=5)
    terminal = job.wait(WAIT_S)
    assert time.monotonic() - t0 < 5
    assert terminal["event"] == "cancelled" and not terminal.get("forced")
    assert job.returncode == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
