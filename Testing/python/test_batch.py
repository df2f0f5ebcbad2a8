"""``sr4zct batch``: discovery, manifest, shards, ledger, and whole batches of tiny synthetic series run by
the real engine (a background process per job).

The end-to-end runs apply a tiny saved model (no training) or train for a few seconds
(``--preset fast --max-minutes 0.1``), so that each job takes a few seconds, mostly process start-up.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import write_series
from sr4zct.batch import Batch, BatchJob, Ledger, LocalEngine, discover_jobs, read_manifest, select_shard
from sr4zct.batch.jobs import output_path, parse_shard
from sr4zct.batch.protocol import Protocol, assign_protocols, model_file
from sr4zct.cli import main
from sr4zct.errors import InputError, OutputError, ParameterError
from sr4zct.io import read_volume, write_volume
from sr4zct.run.options import EnhanceOptions
from sr4zct.run.pipeline import enhance
from sr4zct.run.presets import Preset
from sr4zct.volume import Volume, make_geometry

REPO = Path(__file__).resolve().parents[2]
TINY = Preset(
    "tiny", steps=2, patch_px=16, batch=2, max_minutes=1.0, validate_every=2,
    network_config={"layers": 2, "channels": 4, "unshuffle": 2},
)  # fmt: skip
QUICK_TRAINING = ["--preset", "fast", "--max-minutes", "0.1", "--device", "cpu"]


def ct_hu(shape=(6, 24, 24), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, 4:-4, 4:-4] = 40 + rng.integers(-60, 60, (shape[0], shape[1] - 8, shape[2] - 8))
    return hu


def good_series(folder: Path, patient: str, seed: int, **kwargs):
    """6 slices of 24 x 24 at 0.8 mm, 3 mm every 2 mm (the tiny model's protocol)."""
    kwargs = {"n_slices": 6, "rows": 24, "columns": 24, "pixel_spacing_mm": (0.8, 0.8), **kwargs}
    return write_series(folder, hu=ct_hu(seed=seed), extra_tags={"PatientID": patient}, seed=seed, **kwargs)


def broken_series(folder: Path):
    """A series with one truncated file: the reader refuses it (a slice must never go missing)."""
    series = good_series(folder, "BROKEN", seed=99)
    damaged = series.paths[2]
    damaged.write_bytes(damaged.read_bytes()[:400])
    return series


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three good series (one folder each, one nested deeper) and one broken one."""
    root = tmp_path_factory.mktemp("cohort")
    good_series(root / "p1" / "study", "P1", 1)
    good_series(root / "p2", "P2", 2)
    good_series(root / "p3" / "a" / "b", "P3", 3)
    broken_series(root / "p4")
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    geometry = make_geometry(
        (8, 24, 24), slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    enhance(Volume(ct_hu((8, 24, 24)), geometry), preset=TINY, save_model_path=path, device="cpu")
    return path


def cli(*args) -> int:
    return main(["batch", *[str(a) for a in args]])


def run_cli(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "SR4ZCTModule")}
    return subprocess.run(
        [sys.executable, "-m", "sr4zct", "batch", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, env=env, **kwargs,
    )  # fmt: skip


def records(outdir: Path) -> list[dict]:
    return Ledger(outdir).records()


def latest(outdir: Path) -> dict[str, dict]:
    return Ledger(outdir).latest()


# --- discovery, manifest, names, shards (no enhancement) ---------------------------------------------


def test_discovery_finds_every_series_once_and_names_cannot_collide(tmp_path):
    root = tmp_path / "in"
    a = good_series(root / "pat" / "s1", "PAT", 1)
    b = good_series(
        root / "pat" / "s1", "PAT", 2, series_number=2, name_pattern="B{index:04d}.dcm"
    )  # same folder
    c = good_series(root / "other" / "deep" / "er", "PAT/../x", 3)  # a patient id that is not a file name
    copy = root / "copy"
    copy.mkdir()
    for path in a.paths:  # the same images stored twice
        (copy / path.name).write_bytes(path.read_bytes())
    for name in ("x", "y"):  # two image files of the same name in different folders
        volume = read_volume(a.folder, series_uid=a.series_uid)
        write_volume(volume, tmp_path / "img" / name / "ct.nrrd")
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    out = root / "out"  # the output folder inside an input folder is not searched
    write_volume(read_volume(a.folder, series_uid=a.series_uid), out / "old.nrrd")

    jobs = discover_jobs([root, tmp_path / "img"], exclude=[out])
    by_id = {job.job_id: job for job in jobs}
    assert set(by_id) == {
        f"dicom:{a.series_uid}", f"dicom:{b.series_uid}", f"dicom:{c.series_uid}",
        f"file:{tmp_path / 'img' / 'x' / 'ct.nrrd'}", f"file:{tmp_path / 'img' / 'y' / 'ct.nrrd'}",
    }  # fmt: skip
    job_a = by_id[f"dicom:{a.series_uid}"]
    assert job_a.output_name == f"PAT/{a.study_uid}/{a.series_uid}"
    assert job_a.series_uid == a.series_uid and job_a.geometry.shape == (6, 24, 24)
    assert (
        Path(job_a.input_path) == copy
    )  # found first (copy/ < pat/); its copies in pat/s1 are the same images
    assert by_id[f"dicom:{c.series_uid}"].output_name.startswith("PAT_.._x/")
    assert by_id[f"dicom:{c.series_uid}"].input_path == str(c.folder)
    assert by_id[f"file:{tmp_path / 'img' / 'x' / 'ct.nrrd'}"].output_name == "x/ct"
    paths = [output_path(tmp_path / "o", job, "nii.gz") for job in jobs]
    assert len(set(paths)) == len(paths)
    assert all(".." not in p.relative_to(tmp_path / "o").parts for p in paths)
    assert output_path(tmp_path / "o", job_a, "dicom").name == a.series_uid  # a folder per series

    with pytest.raises(InputError, match="does not exist"):
        discover_jobs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No DICOM series or image files found"):
        discover_jobs([tmp_path / "empty"])


def test_a_folder_of_damaged_files_is_a_job_that_fails(tmp_path):
    good_series(tmp_path / "in" / "good", "G", 1)
    bad = broken_series(tmp_path / "in" / "bad")
    for path in bad.paths:
        path.write_bytes(path.read_bytes()[:400])
    notes = []
    jobs = discover_jobs([tmp_path / "in"], warn=notes.append)
    assert [job.job_id for job in jobs][-1] == f"path:{bad.folder}"
    assert jobs[-1].problem.startswith(f"DICOM file {bad.paths[0]} is damaged")
    assert len(notes) == len(bad.paths)


def test_manifest(tmp_path):
    a = good_series(tmp_path / "a", "A", 1)
    write_volume(read_volume(a.folder), tmp_path / "vols" / "ct.nrrd")
    image = write_volume(read_volume(a.folder), tmp_path / "more" / "ct.nrrd")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,series_uid,thickness_mm,output_name\n"
        f"a,{a.series_uid},,first\n"
        "vols/ct.nrrd,,5,\n"
        "# a comment row,,,\n"
        f"{image},,2.5,\n"
    )
    jobs = read_manifest(manifest)
    assert [job.job_id for job in jobs[:1]] == [f"dicom:{a.series_uid}"]
    assert jobs[0].output_name == "first" and jobs[0].input_path == str(a.folder)
    assert jobs[1].options == {"thickness_mm": 5.0}
    # two files of the same name without output names: the default names get a hash of the row's input
    assert jobs[1].output_name != jobs[2].output_name and jobs[1].output_name.startswith("ct-")
    assert jobs[2].options == {"thickness_mm": 2.5} and jobs[2].input_path == str(image)

    manifest.write_text(f"path\nvols/ct.nrrd\n{tmp_path / 'vols' / 'ct.nrrd'}\n")
    with pytest.raises(ParameterError, match="lists .* twice"):
        read_manifest(manifest)
    manifest.write_text("path,output_name\na,x\nvols/ct.nrrd,x\n")
    with pytest.raises(ParameterError, match="Two jobs would write the same output: 'x'"):
        read_manifest(manifest)
    manifest.write_text("path,thickness\nvols/ct.nrrd,-1\n")
    with pytest.raises(ParameterError, match="line 2: thickness_mm must be a positive number"):
        read_manifest(manifest)
    manifest.write_text("path,scan_mode\nvols/ct.nrrd,Helical\na,auto\n")
    jobs = read_manifest(manifest)
    assert jobs[0].options == {"scan_mode": "helical"} and jobs[1].options == {}
    assert jobs[0].enhance_options(EnhanceOptions(scan_mode="sequential")).scan_mode == "helical"
    manifest.write_text("path,scan_mode\nvols/ct.nrrd,spiral\n")
    with pytest.raises(ParameterError, match="line 2: scan_mode must be helical or sequential"):
        read_manifest(manifest)
    manifest.write_text("file,thickness\nvols/ct.nrrd,3\n")
    with pytest.raises(InputError, match="'path' column"):
        read_manifest(manifest)
    manifest.write_text("path,output_name\nvols/ct.nrrd,../../etc/x\n")
    with pytest.raises(ParameterError, match="must be a relative path inside the output folder"):
        read_manifest(manifest)


def test_shards_cover_every_job_exactly_once(tmp_path, capsys):
    jobs = [BatchJob.for_file(tmp_path / f"v{i}.nrrd") for i in range(11)]
    for count in (1, 2, 3, 5):
        slices = [select_shard(list(reversed(jobs)) if k % 2 else jobs, k, count) for k in range(count)]
        ids = [job.job_id for part in slices for job in part]
        assert sorted(ids) == sorted(job.job_id for job in jobs)  # every job once, whatever the input order
        assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(ParameterError, match="shard"):
            parse_shard(bad)

    root = tmp_path / "in"
    for i in range(5):
        good_series(root / f"p{i}", f"P{i}", i)
    listed = {}
    for shard in ("0/2", "1/2"):
        assert cli(root, "-o", tmp_path / "out", "--shard", shard, "--dry-run") == 0
        listed[shard] = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    assert not set(listed["0/2"]) & set(listed["1/2"])
    assert sorted(listed["0/2"] + listed["1/2"]) == sorted(job.job_id for job in discover_jobs([root]))
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    assert cli(root, "-o", tmp_path / "out", "--shard", "2/2", "--dry-run") == 4


def test_protocol_groups_follow_the_model_tolerance():
    def p(thickness, spacing=2.0, pixel=0.8, profile="box"):
        return Protocol(thickness, spacing, (pixel, pixel), profile)

    groups = assign_protocols(
        {"a": p(3.0), "b": p(3.03), "c": p(3.2), "d": p(3.0, pixel=0.81), "e": p(3.0, profile="gaussian"),
         "f": None, "g": p(3.0, spacing=2.5)}
    )  # fmt: skip
    assert groups["a"] == groups["b"] == groups["d"] == p(3.0)  # within 2 %: the first job's protocol
    assert groups["c"] == p(3.2) and groups["e"].profile == "gaussian" and groups["g"] == p(3.0, spacing=2.5)
    assert groups["f"] is None  # unreadable: runs on its own
    assert p(3.0).key == "T3_d2_px0.8x0.8_box"


def test_a_known_scan_mode_keeps_helical_and_sequential_series_apart():
    """With ``--profile auto`` the scan mode fixes the family before training, so it is part of the protocol."""
    import dataclasses

    from sr4zct.batch.protocol import job_protocol

    geometry = make_geometry(
        (8, 32, 32), slice_spacing_mm=2.0, pixel_spacing_mm=(0.8, 0.8), slice_thickness_mm=3.0
    )
    helical = dataclasses.replace(geometry, scan_mode="helical", scan_mode_source="SpiralPitchFactor 1")
    sequential = dataclasses.replace(
        geometry, scan_mode="sequential", scan_mode_source="AcquisitionType SEQUENCED"
    )

    def protocol(geometry, **options):
        return job_protocol(
            BatchJob("j", "in.nrrd", "out.nrrd", geometry=geometry), EnhanceOptions(**options)
        )

    assert protocol(helical).profile == "gaussian" and protocol(sequential).profile == "box"
    assert protocol(geometry).profile == "auto"  # unknown: the estimate decides when the model trains
    assert protocol(helical, profile="box").profile == "box"  # a given profile wins
    assert protocol(geometry, scan_mode="sequential").profile == "box"
    assert not protocol(helical).matches(protocol(sequential))


# --- the ledger ----------------------------------------------------------------------------------------


def test_ledger_appends_whole_lines_and_survives_a_cut_line(tmp_path):
    ledger = Ledger(tmp_path / "out")
    ledger.append({"job_id": "a", "attempt": 1, "status": "running", "value": float("nan")})
    with open(ledger.path, "ab") as f:
        f.write(b'{"job_id": "b", "attempt": 1, "sta')  # a crash in the middle of a line
    ledger.append({"job_id": "a", "attempt": 1, "status": "done"})
    ledger.append({"job_id": "b", "attempt": 2, "status": "failed"})
    lines = ledger.path.read_text().splitlines()
    assert len(lines) == 4 and lines[1].endswith('"sta')
    assert [r["status"] for r in ledger.records()] == ["running", "done", "failed"]
    assert ledger.records()[0]["value"] is None  # strict JSON
    assert {k: [r["status"] for r in v] for k, v in ledger.attempts().items()} == {
        "a": ["done"],
        "b": ["failed"],
    }


# --- batches of real jobs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_records_the_broken_series_and_a_rerun_does_no_work(cohort, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(cohort, "-o", out, "--model", tiny_model, "--device", "cpu")
    captured = capsys.readouterr()
    assert code == 8, captured.err
    state = latest(out)
    assert len(state) == 4
    done = {k: r for k, r in state.items() if r["status"] == "done"}
    failed = [r for r in state.values() if r["status"] == "failed"]
    assert len(done) == 3 and len(failed) == 1
    assert failed[0]["error_code"] == "input" and "is damaged" in failed[0]["error_message"]
    assert failed[0]["exit_code"] == 2
    for record in done.values():
        output = Path(record["output"])
        assert output.is_file() and out in output.parents
        assert record["model_role"] == "given" and record["device"].startswith("CPU")
        assert record["timings_s"]["total"] > 0 and record["options"]["model_path"] == str(tiny_model)
        assert read_volume(output).geometry.slice_spacing_mm == pytest.approx(0.8)
    table = captured.out.splitlines()
    assert table[0].split() == ["status", "time", "model", "steps", "gain", "dB", "series", "note"]
    assert [line.split()[0] for line in table[1:5]].count("done") == 3
    assert any(line.startswith("failed") and "BROKEN" in line for line in table)
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("job_id,status,attempt") and len(summary) == 5
    assert sum("is damaged and cannot be read" in line for line in summary) == 1
    mtimes = {k: os.stat(r["output"]).st_mtime_ns for k, r in done.items()}
    n_records = len(records(out))

    t0 = time.monotonic()
    assert cli(cohort, "-o", out, "--model", tiny_model, "--device", "cpu", "--quiet") == 8
    assert time.monotonic() - t0 < 10  # no job ran
    assert len(records(out)) == n_records
    assert {k: os.stat(r["output"]).st_mtime_ns for k, r in done.items()} == mtimes

    assert cli(cohort, "-o", out, "--model", tiny_model, "--device", "cpu", "--quiet", "--retry-failed") == 8
    new = records(out)[n_records:]
    assert [(r["status"], r["attempt"]) for r in new] == [("running", 2), ("failed", 2)]
    assert new[0]["job_id"] == failed[0]["job_id"]

    # other options: every job runs again, replacing the batch's own outputs
    assert (
        cli(cohort, "-o", out, "--model", tiny_model, "--device", "cpu", "--quiet", "--target-spacing", "1")
        == 8
    )
    assert all(os.stat(done[k]["output"]).st_mtime_ns != mtimes[k] for k in done)
    assert read_volume(next(iter(done.values()))["output"]).geometry.slice_spacing_mm == pytest.approx(1.0)


def test_batch_usage_errors(cohort, tmp_path, capsys):
    assert cli("-o", tmp_path / "o") == 2  # nothing to enhance
    assert "Give input folders or files" in capsys.readouterr().err
    assert cli(cohort, "-o", tmp_path / "o", "--save-model", tmp_path / "m.pt") == 4
    assert "--save-model does not apply to a batch" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    assert cli(cohort, "-o", foreign, "--dry-run") == 5
    assert "not a batch's output folder" in capsys.readouterr().err
    assert (foreign / "mine.txt").read_text() == "keep me"
    with pytest.raises(SystemExit) as exc:
        cli(cohort, "-o", tmp_path / "o", "--format", "png")
    assert exc.value.code == 2
    assert cli(cohort, "-o", cohort / "p2" / "out", "--dry-run") == 5  # inside an input DICOM folder
    assert "inside the input DICOM folder" in capsys.readouterr().err


def test_jobs_are_clamped_without_gpus():
    engine = LocalEngine(4, device="cpu")
    assert engine.slots == 1 and "run one at a time" in engine.note
    assert LocalEngine(2, gpus=["0", "1", "2"]).slots == 2
    three = LocalEngine(4, gpus=["5", "7"])
    assert three.slots == 2 and "only 2 GPU(s)" in three.note and three._gpus == ["5", "7"]
    with pytest.raises(ParameterError, match="cannot be combined with jobs"):
        LocalEngine(2, device="cuda:1", gpus=["0", "1"])


@pytest.mark.slow
def test_a_job_that_crashes_its_interpreter_does_not_stop_the_batch(tmp_path, tiny_model):
    """The job process of the second series dies of SIGSEGV (a stand-in interpreter kills itself): it is
    recorded as failed (code crashed) and the other series are enhanced."""
    root = tmp_path / "in"
    series = [good_series(root / f"p{i}", f"P{i}", i) for i in range(3)]
    crashing = str(series[1].folder)
    wrapper = tmp_path / "python-crashing"
    wrapper.write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = "{crashing}" ] && kill -SEGV $$; done\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    jobs = discover_jobs([root])
    batch = Batch(tmp_path / "out", jobs, EnhanceOptions(model_path=str(tiny_model), device="cpu"),
                  engine=LocalEngine(python_executable=str(wrapper)))  # fmt: skip
    result = batch.run()
    assert result.exit_code == 8
    by_input = {row["input"]: row for row in result.rows}
    assert by_input[crashing]["status"] == "failed" and by_input[crashing]["error_code"] == "crashed"
    assert "SIGSEGV" in by_input[crashing]["error_message"]
    assert sum(row["status"] == "done" for row in result.rows) == 2


@pytest.mark.slow
def test_killed_batch_resumes_without_redoing_finished_jobs(tmp_path, tiny_model):
    root = tmp_path / "in"
    for i in range(4):
        good_series(root / f"p{i}", f"P{i}", i)
    out = tmp_path / "out"
    args = [root, "-o", out, "--model", tiny_model, "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "SR4ZCTModule")}

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "sr4zct", "batch", *map(str, args)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def wait_until(condition, timeout_s=300):
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.2)

    def statuses():
        return [r["status"] for r in records(out)]

    # SIGKILL (as a reboot would) once the first job is done and the second has started
    proc = start()
    wait_until(lambda: statuses().count("done") == 1 and statuses().count("running") == 2)
    proc.kill()
    proc.communicate()
    first_done = {k for k, r in latest(out).items() if r["status"] == "done"}
    assert len(first_done) == 1

    # SIGTERM: the running job is cancelled and recorded, nothing half-written stays, exit 143
    proc = start()
    wait_until(lambda: sum(r["status"] == "running" and r["pid"] == proc.pid for r in records(out)) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    mine = [r for r in records(out) if r["pid"] == proc.pid]
    assert mine[-1]["status"] == "cancelled" and mine[-1]["job_id"] not in first_done
    assert not [p for p in out.rglob("*sr4zct-tmp*")]

    # the re-run finishes only the rest
    before = len(records(out))
    proc = start()
    proc.communicate(timeout=600)
    assert proc.returncode == 0
    rerun = records(out)[before:]
    assert {r["job_id"] for r in rerun}.isdisjoint(first_done)
    assert {r["job_id"] for r in rerun if r["status"] == "done"} == set(latest(out)) - first_done
    assert all(r["status"] == "done" for r in latest(out).values())


@pytest.mark.slow
def test_protocol_reuse_trains_once_per_protocol(tmp_path):
    root = tmp_path / "in"
    for i in range(3):
        good_series(root / f"a{i}", f"A{i}", i)  # 3 mm every 2 mm
    good_series(root / "b", "B", 7, thickness_mm=5.0, spacing_mm=2.5)  # another protocol
    each, shared = tmp_path / "each", tmp_path / "shared"
    assert cli(root, "-o", each, "--reuse-model", "none", "--quiet", *QUICK_TRAINING) == 0
    assert cli(root, "-o", shared, "--quiet", *QUICK_TRAINING) == 0

    roles = {r["description"]: r["model_role"] for r in latest(shared).values()}
    assert sorted(roles.values()) == ["apply", "apply", "train", "train"]
    assert roles["B #1 synthetic"] == "train"
    models = sorted(p.name for p in (shared / "models").iterdir())
    assert (
        len(models) == 2
        and models[0].startswith("T3_d2_px0.8x0.8_auto-")
        and models[1].startswith("T5_d2.5_")
    )
    assert not (each / "models").exists()
    assert {r["model_role"] for r in latest(each).values()} == {"own"}

    def trainings(outdir):  # jobs that spent time training (time-capped, so seconds are too noisy to compare)
        return sum(r["timings_s"]["train"] > 0 for r in latest(outdir).values())

    assert (trainings(each), trainings(shared)) == (4, 2)  # the wall-time gain: benchmarks/cohort.py
    applied = [r for r in latest(shared).values() if r["model_role"] == "apply"]
    assert all(r["timings_s"]["train"] == 0 and r["model_path"].endswith(models[0]) for r in applied)
    assert all(r["training_steps"] == 0 and r["validation_gain_db"] is None for r in applied)
    trained = [r for r in latest(shared).values() if r["model_role"] == "train"]
    assert all(r["validation_gain_db"] is not None and r["protocol_values"][-1] == "auto" for r in trained)


def test_other_training_options_get_other_model_files(tmp_path):
    protocol = Protocol(3.0, 2.0, (0.8, 0.8), "box")
    base = EnhanceOptions(preset="fast")
    name = model_file(tmp_path, protocol, base)
    assert name.parent == tmp_path / "models" and name.name.startswith("T3_d2_px0.8x0.8_box-")
    assert model_file(tmp_path, protocol, base.replace(device="cpu", target_spacing_mm=1.0)) == name
    for change in ({"seed": 1}, {"preset": "best"}, {"network": "msd"}, {"max_minutes": 3.0}):
        assert model_file(tmp_path, protocol, base.replace(**change)) != name
    assert model_file(tmp_path, protocol, base, "shard0of2").name.endswith("-shard0of2.pt")


@pytest.mark.slow
def test_ray_engine_gives_the_same_outputs(cohort, tiny_model, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from sr4zct.batch.ray_engine import RayEngine

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # bit-identical results need the same thread count
    options = EnhanceOptions(model_path=str(tiny_model), device="cpu")
    jobs = discover_jobs([cohort])
    local = Batch(tmp_path / "local", jobs, options).run()
    engine = RayEngine(num_cpus=1, init_kwargs={"num_cpus": 2, "object_store_memory": 80 * 2**20})
    assert engine.num_gpus == 0 and "1 node(s)" in engine.note
    ray_batch = Batch(tmp_path / "ray", jobs, options, engine=engine)
    result = ray_batch.run()
    assert result.exit_code == local.exit_code == 8
    assert [r["status"] for r in result.rows] == [r["status"] for r in local.rows]
    assert {r["engine"] for r in Ledger(tmp_path / "ray").records()} == {"ray"}
    for ours, theirs in zip(local.rows, result.rows, strict=True):
        if ours["status"] == "done":
            a, b = read_volume(ours["output"]), read_volume(theirs["output"])
            assert np.array_equal(a.array, b.array)
            assert Path(theirs["output"]).relative_to(tmp_path / "ray") == Path(ours["output"]).relative_to(
                tmp_path / "local"
            )
    failed = [r for r in result.rows if r["status"] == "failed"]
    assert failed[0]["error_code"] == "input"


def test_ray_engine_without_ray_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from sr4zct.batch.ray_engine import RayEngine
    from sr4zct.errors import ResourceError

    with pytest.raises(ResourceError, match=r'pip install "sr4zct\[ray\]"'):
        RayEngine()


def test_output_folder_must_be_a_batch_folder(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("")
    with pytest.raises(OutputError, match="not a batch's output folder"):
        Batch(tmp_path / "o", [BatchJob.for_file(tmp_path / "v.nrrd")]).plan()
    with pytest.raises(ParameterError, match="reuse_model must be one of"):
        Batch(tmp_path / "p", [], reuse_model="always")
    assert json.loads(json.dumps(EnhanceOptions().to_dict()))  # options are recorded as JSON


def test_cohort_benchmark_section_replaces_only_its_own_markers(tmp_path):
    sys.path.insert(0, str(REPO))
    from benchmarks.cohort import BEGIN, END, write_section

    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nother rows\n")
    write_section(f"{BEGIN}\nfirst\n{END}", report)
    assert report.read_text() == f"# Benchmarks\n\nother rows\n\n{BEGIN}\nfirst\n{END}\n"
    report.write_text(report.read_text() + "\n## later section\n")
    write_section(f"{BEGIN}\nsecond\n{END}", report)
    text = report.read_text()
    assert "first" not in text and f"{BEGIN}\nsecond\n{END}" in text
    assert text.startswith("# Benchmarks\n\nother rows\n") and text.endswith("## later section\n")
