"""Issue 11's data-safety reproductions through every entry point of the core: the command line (in this
process, and as a real process for the signals), the Python API and the background job. Each case snapshots
the user's folders (every path; every file's bytes and modification time) before and after: a refused,
failed or cancelled run leaves them exactly as they were, a successful one only adds its outputs.

The Slicer logic's cases are in Testing/slicer_replica/tests/test_data_safety_logic.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import SimpleITK as sitk
import sr4zct.io
import torch
from sr4zct.cli import main
from sr4zct.errors import SR4ZCTError
from sr4zct.io import read_volume, write_volume
from sr4zct.io.atomic import _host_tag, atomic_output, check_output_path
from sr4zct.io.image_headers import inspect_image_file
from sr4zct.run.background import BackgroundJob
from sr4zct.run.options import EnhanceOptions
from sr4zct.run.pipeline import enhance_file
from test_bad_input import ct_array, small_series, tiny_model_file

WAIT_S = 240
ENTRY_POINTS = ("cli", "api", "background")
# A short real training run (fast preset, 3 s limit) where a case needs training rather than a saved model.
TRAIN = {"preset": "fast", "max_minutes": 0.05}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A saved 2-step model for the user's series (3 mm every 2 mm, 0.8 mm pixels)."""
    return tiny_model_file(tmp_path_factory.mktemp("model"))


@dataclass
class User:
    """The user's files: a DICOM series from a scanner, the same CT as NRRD, unrelated files, and the
    folders a run writes into (``out``) and keeps temporaries in (``tmp``, the process's TMPDIR)."""

    root: Path
    scanner: Path  # folder of original scanner DICOM
    nrrd: Path
    out: Path
    tmp: Path

    def snapshot(self) -> dict[str, tuple]:
        return snapshot(self.root)


@pytest.fixture
def user(tmp_path, monkeypatch) -> User:
    root = tmp_path / "user"
    scanner = small_series(root / "scanner").folder
    nrrd = root / "ct.nrrd"
    write_volume(read_volume(scanner), nrrd)
    (root / "notes.txt").write_text("my notes")
    (root / "photos").mkdir()
    (root / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    out = root / "results"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result of mine")
    tmp = root / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    return User(root, scanner, nrrd, out, tmp)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: folders and links by name, files with content hash, size and mtime (ns)."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif path.is_dir():
            out[str(path.relative_to(root))] = ("dir",)
        else:
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = ("file", digest, st.st_size, st.st_mtime_ns)
    return out


def cases(names: str, values: list[tuple], *, background: list[tuple]) -> pytest.MarkDecorator:
    """Parameters ``entry`` + ``names``: every value in-process (CLI and API); through the background job
    only ``background`` (one process per kind of refusal: the refusal itself is the command line's, run
    in-process above)."""
    params = [(entry, *v) for entry in ("cli", "api") for v in values] + [
        ("background", *v) for v in background
    ]
    return pytest.mark.parametrize(("entry", *names.split(",")), params)


@dataclass
class Outcome:
    exit_code: int
    message: str  # the one-line error or cancel message
    read_input: bool  # whether the run got as far as reading the input (a refusal must come before)


def run_entry(entry: str, inp: Path, out: Path, capsys, monkeypatch, **options) -> Outcome:
    """One enhancement of ``inp`` into ``out`` through ``entry`` (``"cli"``, ``"api"``, ``"background"``)."""
    opts = EnhanceOptions(**{"device": "cpu", **options})
    if entry == "background":
        job = BackgroundJob(inp, out, opts, env={"TMPDIR": os.environ["TMPDIR"]})
        events = list(job.start().iter_events(timeout=WAIT_S))
        progress = [e for e in events if e["event"] == "progress"]
        return Outcome(job.returncode, job.terminal.get("message", ""), bool(progress))
    reads: list[Path] = []
    real_read_volume = sr4zct.io.read_volume

    def counted_read_volume(path, *args, **kwargs):  # the real reader, counted
        reads.append(Path(path))
        return real_read_volume(path, *args, **kwargs)

    monkeypatch.setattr(sr4zct.io, "read_volume", counted_read_volume)
    if entry == "api":
        try:
            enhance_file(inp, out, opts)
        except SR4ZCTError as exc:
            return Outcome(exc.exit_code, exc.message, bool(reads))
        return Outcome(0, "", bool(reads))
    code = main(["enhance", str(inp), "-o", str(out), *opts.to_args(), "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    if code != 0:
        assert len(lines) == 1 and lines[0].startswith("sr4zct: error: ") and "Traceback" not in err, err
    return Outcome(code, lines[0] if lines else "", bool(reads))


def assert_refused(outcome: Outcome, *fragments: str) -> None:
    """An output error (exit code 5) saying what is wrong, before the input was read."""
    assert outcome.exit_code == 5, outcome
    for fragment in fragments:
        assert fragment in outcome.message, outcome
    assert not outcome.read_input, "refused only after reading the input"


# --- (a) save_model_path is an existing folder -----------------------------------------------------------


@cases(
    "folder,overwrite,fragment",
    [
        ("user", True, "contains the input"),  # the folder holding the input image and unrelated files
        ("results", False, "is a folder; give a file name"),
        ("results", True, "is a folder; give a file name"),
    ],
    background=[("user", True, "contains the input"), ("results", True, "is a folder; give a file name")],
)
def test_save_model_folder_is_refused_and_kept(user, entry, folder, overwrite, fragment, capsys, monkeypatch):
    save_model = user.root if folder == "user" else user.out
    before = user.snapshot()
    outcome = run_entry(entry, user.nrrd, user.out / "o.nrrd", capsys, monkeypatch, save_model_path=str(save_model),
                        overwrite=overwrite, **TRAIN)  # fmt: skip
    assert_refused(outcome, fragment)
    assert user.snapshot() == before


# --- (b) folders named like temporaries, beside the output and in the temporary folder ------------------


def _decoys(user: User) -> list[Path]:
    """Files and folders of the user's named like SR4ZCT's temporaries (but not made by this run)."""
    host, pid = _host_tag(), os.getpid()  # pid: a live process, so not a leftover of a killed writer
    hex12 = uuid.uuid4().hex[:12]
    other_host = "00000000" if host != "00000000" else "11111111"
    names = {
        user.out: [f".o.sr4zct-tmp-{host}-{pid}-{hex12}.nrrd", f".o.sr4zct-tmp-{other_host}-1-{hex12}.nrrd",
                   f".m.sr4zct-tmp-{other_host}-1-{hex12}.pt", f".u.sr4zct-tmp-{host}-{pid}-{hex12}.nrrd",
                   f".o.nrrd.sr4zct-tmp-old-{hex12}/", "sr4zct-job-1/", "sr4zct-control-abc123/",
                   f".sr4zct-probe-{hex12}", f".m.pt.{pid}.tmp", f".u.nrrd.{pid}.tmp.png"],
        user.tmp: ["sr4zct-job-7/", "sr4zct-control-xyz/", "sr4zct-control-", "SR4ZCT-run/", "sr4zct-tmp"],
    }  # fmt: skip
    made = []
    for folder, entries in names.items():
        for name in entries:
            path = folder / name.rstrip("/")
            if name.endswith("/"):
                path.mkdir()
                (path / "control").write_text("cancel\n")  # a command that must never reach a run
                (path / "data.bin").write_bytes(os.urandom(64))
            else:
                path.write_bytes(os.urandom(64))
            made.append(path)
    return made


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_folders_named_like_temporaries_are_never_touched(user, entry, model, capsys, monkeypatch):
    decoys = _decoys(user)
    before = user.snapshot()
    outputs = {"o.nrrd": user.out / "o.nrrd", "u.nrrd": user.out / "u.nrrd"}
    # a successful run beside them, with a saved model ...
    outcome = run_entry(entry, user.nrrd, outputs["o.nrrd"], capsys, monkeypatch, model_path=str(model),
                        uncertainty_path=str(outputs["u.nrrd"]))  # fmt: skip
    assert outcome.exit_code == 0, outcome
    after = user.snapshot()
    added = {str(p.relative_to(user.root)) for p in outputs.values()}
    assert set(after) == set(before) | added
    assert {k: v for k, v in after.items() if k not in added} == before
    # ... and one refused there
    outcome = run_entry(
        entry, user.nrrd, user.out / "earlier.txt", capsys, monkeypatch, model_path=str(model)
    )
    assert outcome.exit_code == 5
    assert user.snapshot() == after
    assert all(p.exists() for p in decoys)


def _colliding_uuid(monkeypatch) -> str:
    """Make the next random temporary names predictable (to put a user's file where they would go)."""
    fixed = uuid.UUID(int=0x5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A)
    monkeypatch.setattr("sr4zct.io.atomic.uuid.uuid4", lambda: fixed)
    return fixed.hex[:12]


def test_a_users_file_with_the_write_probes_name_is_kept(tmp_path, monkeypatch):
    hex12 = _colliding_uuid(monkeypatch)
    probe = tmp_path / f".sr4zct-probe-{hex12}"
    probe.write_text("mine")
    with pytest.raises(SR4ZCTError, match="is not writable"):
        check_output_path(tmp_path / "o.nrrd")
    assert probe.read_text() == "mine"


def test_a_users_folder_with_the_temporary_output_folders_name_is_kept(tmp_path, monkeypatch):
    from sr4zct.io.atomic import temporary_name

    _colliding_uuid(monkeypatch)
    taken = temporary_name(tmp_path / "dicom_out")
    taken.mkdir()
    (taken / "mine.txt").write_text("mine")
    with (
        pytest.raises(SR4ZCTError, match="Cannot write"),
        atomic_output(tmp_path / "dicom_out", directory=True),
    ):
        pytest.fail("the block must not run")
    assert (taken / "mine.txt").read_text() == "mine" and not (tmp_path / "dicom_out").exists()


# --- (c) --overwrite with a folder of original scanner DICOM as the output ------------------------------


@cases("role", [("output",), ("uncertainty",)], background=[("output",)])
def test_overwrite_refuses_a_scanner_dicom_folder(user, entry, role, capsys, monkeypatch):
    before = user.snapshot()
    out = user.scanner if role == "output" else user.out / "o.nrrd"
    extra = {"uncertainty_path": str(user.scanner)} if role == "uncertainty" else {}
    outcome = run_entry(entry, user.nrrd, out, capsys, monkeypatch, overwrite=True, **TRAIN, **extra)
    assert_refused(outcome, f"Refusing to replace {user.scanner}", "DICOM files SR4ZCT did not write",
                   "not a previous output of SR4ZCT")  # fmt: skip
    assert user.snapshot() == before


# --- (e) overwrite over a file SR4ZCT did not write ------------------------------------------------------


def _foreign_files(user: User) -> dict[str, Path]:
    """Files under the names of SR4ZCT's outputs that other programs wrote."""
    image = sitk.GetImageFromArray(ct_array((5, 16, 16)).astype("int16"))
    files = {
        "output": user.out / "o.nrrd",
        "uncertainty": user.out / "u.nii.gz",
        "save_model": user.out / "m.pt",
    }
    sitk.WriteImage(image, str(files["output"]))
    sitk.WriteImage(image, str(files["uncertainty"]))
    torch.save({"state_dict": {"w": torch.zeros(3)}, "format": "another-tool"}, files["save_model"])
    files["text"] = user.out / "o.mha"
    files["text"].write_text("not an image at all")
    files["sidecar"] = user.out / "s.json"  # where the NIfTI output s.nii.gz keeps its metadata
    files["sidecar"].write_text('{"my": "settings"}')
    return files


@cases(
    "role",
    [("output",), ("uncertainty",), ("save_model",), ("text",), ("sidecar",)],
    background=[("output",)],
)
def test_overwrite_refuses_a_file_sr4zct_did_not_write(user, entry, role, capsys, monkeypatch):
    files = _foreign_files(user)
    before = user.snapshot()
    out = {"output": files["output"], "text": files["text"], "sidecar": user.out / "s.nii.gz"}.get(
        role, user.out / "new.nrrd"
    )
    extra = {f"{role}_path": str(files[role])} if role in ("uncertainty", "save_model") else {}
    outcome = run_entry(entry, user.nrrd, out, capsys, monkeypatch, overwrite=True, **TRAIN, **extra)
    reason = "it is not a sidecar SR4ZCT wrote" if role == "sidecar" else "not a previous output of SR4ZCT"
    assert_refused(outcome, f"Refusing to replace {files[role]}", reason)
    assert user.snapshot() == before


@pytest.mark.parametrize("entry", ["cli", "api"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_preview_never_replaces_an_earlier_result(user, entry, overwrite, model, capsys, monkeypatch):
    """The live preview replaces only an earlier preview, never an earlier result (even one SR4ZCT wrote)."""
    earlier = user.out / "earlier_result.nrrd"
    assert run_entry(entry, user.nrrd, earlier, capsys, monkeypatch, model_path=str(model)).exit_code == 0
    before = user.snapshot()
    outcome = run_entry(entry, user.nrrd, user.out / "o.nrrd", capsys, monkeypatch, preview_path=str(earlier),
                        overwrite=overwrite, **TRAIN)  # fmt: skip
    assert_refused(outcome, f"The preview {earlier} exists and is not an SR4ZCT preview")
    assert user.snapshot() == before


def test_a_preview_replaces_an_earlier_preview(user):
    preview = user.out / "preview.nrrd"
    enhance_file(
        user.nrrd, user.out / "a.nrrd", preset="fast", max_minutes=0.05, device="cpu", preview_path=preview
    )
    first = preview.read_bytes()
    assert inspect_image_file(preview).keys["sr4zct_content"].startswith("preview")
    enhance_file(
        user.nrrd, user.out / "b.nrrd", preset="fast", max_minutes=0.05, device="cpu", preview_path=preview
    )
    assert preview.is_file() and preview.stat().st_size == len(first)


@pytest.mark.parametrize("entry", ["cli", "api"])
@pytest.mark.parametrize("added", ["notes.txt", "scans/"])
def test_overwrite_refuses_an_sr4zct_folder_the_user_added_to(user, entry, added, model, capsys, monkeypatch):
    out = user.out / "dicom_out"
    assert run_entry(entry, user.nrrd, out, capsys, monkeypatch, model_path=str(model)).exit_code == 0
    if added.endswith("/"):
        (out / added).mkdir()
        (out / added / "IM1.dcm").write_bytes((sorted(user.scanner.iterdir())[0]).read_bytes())
    else:
        (out / added).write_text("mine")
    before = user.snapshot()
    outcome = run_entry(entry, user.nrrd, out, capsys, monkeypatch, overwrite=True, **TRAIN)
    reason = "it contains sub-folders" if added.endswith("/") else "it holds files that are not DICOM"
    assert_refused(outcome, f"Refusing to replace {out}", reason)
    assert user.snapshot() == before


@pytest.mark.parametrize("entry", ["cli", "api"])
def test_overwrite_replaces_only_sr4zct_outputs(user, entry, model, capsys, monkeypatch):
    """The positive side: SR4ZCT's own earlier outputs are replaced, everything else stays."""
    out, unc = user.out / "o.nrrd", user.out / "unc_dicom"
    options = {"model_path": str(model), "uncertainty_path": str(unc)}
    assert run_entry(entry, user.nrrd, out, capsys, monkeypatch, **options).exit_code == 0
    before = user.snapshot()
    time.sleep(0.01)  # a new mtime for the replaced files
    outcome = run_entry(entry, user.nrrd, out, capsys, monkeypatch, overwrite=True, **options)
    assert outcome.exit_code == 0, outcome
    after = user.snapshot()
    assert set(after) == set(before)
    changed = {k for k in after if after[k] != before[k]}
    assert changed and all(k == "results/o.nrrd" or k.startswith("results/unc_dicom/") for k in changed), (
        changed
    )


# --- (d) SIGTERM and SIGHUP during a run ---------------------------------------------------------------


def _process_env() -> dict[str, str]:
    """This process's environment, with the tested sr4zct first on the path."""
    package_parent = str(Path(sr4zct.io.__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")])}


def _read_until(stream, marker: str, seen: list[str], found: threading.Event) -> None:
    for chunk in iter(lambda: stream.read1(256), b""):
        seen.append(chunk.decode("utf-8", "replace"))
        if marker in "".join(seen):
            found.set()
    found.set()


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_during_training_leaves_nothing(user, signame):
    """The real command line, killed the way a scheduler (SIGTERM) or a closed terminal (SIGHUP) does."""
    decoys = _decoys(user)
    before = user.snapshot()
    command = [sys.executable, "-m", "sr4zct", "enhance", str(user.scanner), "-o", str(user.out / "dicom_out"),
               "--uncertainty", str(user.out / "u.nrrd"), "--save-model", str(user.out / "m.pt"),
               "--preset", "fast", "--max-minutes", "2", "--device", "cpu"]  # fmt: skip
    env = _process_env()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)  # fmt: skip
    seen: list[str] = []
    training = threading.Event()
    reader = threading.Thread(target=_read_until, args=(proc.stderr, "train", seen, training), daemon=True)
    reader.start()
    try:
        assert training.wait(WAIT_S) and proc.poll() is None, "".join(seen)
        proc.send_signal(getattr(signal, signame))
        code = proc.wait(60)
    finally:
        proc.kill()
    reader.join(10)
    err = "".join(seen).replace("\r", "\n")
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert code == 128 + getattr(signal, signame), err
    assert lines == [f"sr4zct: cancelled by {signame}; nothing was written."], err
    assert user.snapshot() == before
    assert all(p.exists() for p in decoys)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["background", "api"])
def test_a_cancel_during_training_leaves_nothing(user, entry):
    """The background job's cancel (``cancel`` on the process's stdin, as SIGINT would) and the API's
    should_stop, with every output asked for."""
    decoys = _decoys(user)
    before = user.snapshot()
    options = EnhanceOptions(preset="fast", max_minutes=2.0, device="cpu", uncertainty_path=str(user.out / "u.nrrd"),
                             save_model_path=str(user.out / "m.pt"))  # fmt: skip
    out = user.out / "dicom_out"
    if entry == "background":
        job = BackgroundJob(user.scanner, out, options, env={"TMPDIR": str(user.tmp)}).start()
        deadline = time.monotonic() + WAIT_S
        while job.progress is None or job.progress["stage"] != "train":
            assert time.monotonic() < deadline and not job.done, job.terminal
            job.poll()
            time.sleep(0.05)
        job.cancel(grace_s=30)
        terminal = job.wait(WAIT_S)
        assert terminal["event"] == "cancelled" and not terminal.get("forced"), terminal
        assert job.returncode == 130
    else:
        stages: list[str] = []
        with pytest.raises(SR4ZCTError, match="nothing was written") as info:
            enhance_file(user.scanner, out, options, progress=lambda p: stages.append(p.stage),
                         should_stop=lambda: "train" in stages)  # fmt: skip
        assert info.value.exit_code == 130
    assert user.snapshot() == before
    assert all(p.exists() for p in decoys)


def test_a_signal_before_training_leaves_nothing(user):
    """SIGTERM as soon as the process runs (while it imports and reads): the same clean end."""
    before = user.snapshot()
    command = [sys.executable, "-m", "sr4zct", "enhance", str(user.nrrd), "-o", str(user.out / "o.nrrd"),
               "--preset", "fast", "--max-minutes", "1", "--device", "cpu", "--quiet", "--events"]  # fmt: skip
    env = _process_env()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)  # fmt: skip
    started = proc.stdout.readline()  # the "started" event: the signal handlers are in place
    assert '"event":"started"' in started.replace(" ", ""), started + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert '"event":"cancelled"' in rest.replace(" ", "")
    assert user.snapshot() == before


# --- the demo's outputs ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_overwrite_replaces_only_its_own_outputs(tmp_path, capsys):
    from sr4zct.cli.demo import OUTPUT_FILES

    folder = tmp_path / "demo"
    folder.mkdir()
    for name in ("scores.json.tmp", "coronal_comparison.tmp.png", "notes.txt"):  # names it once wrote under
        (folder / name).write_text(f"my {name}")
    argv = [
        "demo",
        "-o",
        str(folder),
        "--size",
        "tiny",
        "--max-minutes",
        "0.05",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(argv) == 0
    first = snapshot(folder)
    assert main([*argv, "--overwrite"]) == 0  # its own outputs are replaced ...
    second = snapshot(folder)
    assert set(second) == set(first) and all(second[name] != first[name] for name in OUTPUT_FILES)
    assert all(
        (folder / n).read_text() == f"my {n}" for n in ("scores.json.tmp", "coronal_comparison.tmp.png")
    )
    capsys.readouterr()
    for name in ("scores.json", "coronal_comparison.png", "linear.nrrd"):  # ... nothing else, and up front
        own = (folder / name).read_bytes()
        (folder / name).write_bytes(b"another program's file")
        before = snapshot(folder)
        t0 = time.monotonic()
        assert main([*argv, "--overwrite"]) == 5
        assert f"Refusing to replace {folder / name}" in capsys.readouterr().err
        assert time.monotonic() - t0 < 5 and snapshot(folder) == before
        (folder / name).write_bytes(own)
