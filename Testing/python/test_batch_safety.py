"""Batch runs that never mix, lose or mislabel (reliability round 3; docs/errors.md rows ``batch-names``,
``batch-lock``, ``ledger-records``, ``batch-content``, ``batch-links``, ``batch-pipe``, ``summary-formulas``,
``manifest-bytes``, ``option-like-values``): each example of the issue through ``sr4zct batch`` and the
Python API.

Most tests need no job process: the ledger is written as a run would write it (:func:`record_attempt`),
so that the run under test has nothing left to do, or refuses before any work.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sr4zct.batch import Batch, BatchJob, Ledger, discover_jobs, read_manifest
from sr4zct.batch.jobs import check_output_names, output_path
from sr4zct.batch.ledger import safe_cell
from sr4zct.batch.lock import OutdirLock
from sr4zct.cli import main
from sr4zct.errors import InputError, OutputError, ParameterError
from sr4zct.io import read_volume, write_volume
from sr4zct.run.options import EnhanceOptions
from test_batch import good_series, run_cli, tiny_model  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[2]


def batch_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["batch", *[os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args]])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("sr4zct: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def nrrd_case(path: Path, seed: int = 1) -> Path:
    """A small NRRD volume SR4ZCT reads with its thickness (3 mm every 2 mm, 0.8 mm pixels)."""
    series = good_series(path.parent / f".src-{path.stem}-{seed}", f"P{seed}", seed)
    return write_volume(read_volume(series.folder), path)


def record_attempt(outdir: Path, jobs: list[BatchJob], status: str = "failed", **fields) -> Batch:
    """Write the ledger records an attempt of every job would leave (``running`` then ``status``)."""
    batch = Batch(outdir, jobs, EnhanceOptions(device="cpu"))
    from sr4zct.batch.plan import content_identity

    for planned in batch.plan(lock=False):
        base = {
            "ledger_version": 1, "job_id": planned.job.job_id, "attempt": planned.attempt, "time": time.time(),
            "input": planned.job.input_path, "description": planned.job.description, "output": str(planned.output),
            "fingerprint": planned.fingerprint, "content": content_identity(planned.job, whole=True),
        }  # fmt: skip
        batch.ledger.append({**base, "status": "running"})
        batch.ledger.append({**base, "status": status, "elapsed_s": 1.5, **fields})
    return batch


# --- output names over the whole job list ---------------------------------------------------------------------


def test_a_manifest_row_and_a_discovered_file_with_one_output_name_are_refused(tmp_path, capsys):
    found = nrrd_case(tmp_path / "cohort" / "ct.nrrd", 1)  # discovered: output name "ct"
    listed = nrrd_case(tmp_path / "more" / "ct.nrrd", 2)  # a manifest row: default output name "ct"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path\n{listed}\n")
    out = tmp_path / "out"
    for extra in ([], ["--dry-run"]):
        code, _, err = batch_cli(capsys, found.parent, "--manifest", manifest, "-o", out, *extra)
        assert code == 4, err
        one_error_line(err, "Two jobs would write the same output", str(found), str(listed))
    assert not out.exists()  # refused before any work
    jobs = read_manifest(manifest) + discover_jobs([found.parent])
    with pytest.raises(ParameterError, match="Two jobs would write the same output"):
        Batch(out, jobs).plan()
    # names as the file system compares them: NFC, ".", a suffix, and case where the disk ignores it
    for first, second in (("caf\u00e9", "cafe\u0301"), ("a/./b", "a/b"), ("x", "x.nrrd"), ("a//b", "a/b")):
        manifest.write_text(f"path,output_name\n{listed},{first}\n{found},{second}\n", encoding="utf-8")
        code, _, err = batch_cli(capsys, "--manifest", manifest, "-o", out, "--dry-run")
        assert code == 4 and "Two jobs would write the same output" in err, (first, second, err)
    named = [BatchJob.for_file(found, output_name="CT"), BatchJob.for_file(listed, output_name="ct")]
    with pytest.raises(ParameterError, match="same output"):
        check_output_names(named, fold_case=True)  # Windows, macOS
    check_output_names(named, fold_case=False)  # a case-sensitive disk: two files


def test_outputs_and_uncertainty_maps_may_not_collide(tmp_path, capsys):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    out = tmp_path / "out"
    code, _, err = batch_cli(capsys, a.parent, "-o", out, "--uncertainty", out, "--dry-run")
    assert code == 4 and "would be the same file" in err, err
    for name in ("batch.jsonl", "models/x", ".hidden", "../up", "a\x1bb"):
        with pytest.raises(ParameterError, match="unusable"):
            check_output_names([BatchJob.for_file(a, output_name=name)])


# --- one run per output folder ------------------------------------------------------------------------------------


HOLDER = """
import sys, time
from sr4zct.batch.lock import OutdirLock
lock = OutdirLock(sys.argv[1], sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(outdir: Path, scope: str = "all") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "SR4ZCTModule")}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(outdir), scope], stdout=subprocess.PIPE,
                              text=True, env=env)  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_batch_on_one_output_folder_refuses_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    out = tmp_path / "out"
    record_attempt(out, discover_jobs([a.parent]))  # failed before: a run has nothing to do (exit 8)
    before = (out / "batch.jsonl").read_bytes()
    holder = _hold_lock(out)  # another batch runs in this folder now
    try:
        code, _, err = batch_cli(capsys, a.parent, "-o", out, "--retry-failed")
        assert code == 5, err
        one_error_line(err, "Another sr4zct batch is running in", f"process {holder.pid} on")
        assert (out / "batch.jsonl").read_bytes() == before  # nothing ran, nothing recorded
        with pytest.raises(OutputError, match="Another sr4zct batch is running"):
            Batch(out, discover_jobs([a.parent])).plan()
        assert batch_cli(capsys, a.parent, "-o", out, "--dry-run")[0] == 0  # a dry run only looks
    finally:
        holder.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        holder.wait(30)
    # the holder died without releasing anything: its lock file is still there, and taken over
    assert (out / ".sr4zct-batch-all.lock").read_text().strip()
    code, _, err = batch_cli(capsys, a.parent, "-o", out)
    assert code == 8 and "job(s): 0 to run" in err, err


def test_shards_of_one_count_run_together_and_overlapping_runs_do_not(tmp_path):
    out = tmp_path / "out"
    with OutdirLock(out, "shard0of2"), OutdirLock(out, "shard1of2"):
        for scope in ("all", "shard0of2", "shard1of3"):
            with pytest.raises(OutputError, match="Another sr4zct batch is running"):
                OutdirLock(out, scope).acquire()
    with OutdirLock(out, "all"):  # both released: free again
        pass


# --- the ledger: no character splits a record, a damaged record is named by its line ----------------------------


NASTY = ["line\nbreak", "cr\rlf\r\n", "ls\u2028ps\u2029", "nel\x85", "vt\x0bff\x0c", "fs\x1cgs\x1drs\x1e",
         "nul\x00", "esc\x1b[31m", 'quote" back\\slash', "not utf-8 \udcff\udcfe", "emoji \U0001f600", "bom \ufeff"]  # fmt: skip


def test_no_character_can_split_or_corrupt_a_ledger_record(tmp_path):
    ledger = Ledger(tmp_path / "out")
    records = [
        {"ledger_version": 1, "job_id": f"file:/data/{text}.nrrd", "attempt": 1, "status": "failed",
         "description": text, "error_message": f"DICOM text {text}", "warnings": [text]}
        for text in NASTY
    ]  # fmt: skip
    for record in records:
        ledger.append(record)
    data = ledger.path.read_bytes()
    assert data.count(b"\n") == len(records) and data.isascii()  # one line per record
    assert Ledger(tmp_path / "out").records() == records  # read back exactly


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"job_id": "a", "attempt": "x", "status": "done"}', "attempt must be a whole number"),
        ('{"job_id": "a", "attempt": [1], "status": "done"}', "attempt must be a whole number"),
        ('{"job_id": "a", "attempt": true, "status": "done"}', "attempt must be a whole number"),
        ('{"job_id": null, "attempt": 1, "status": "done"}', "job_id must be non-empty text"),
        ('{"job_id": "a", "attempt": 1, "status": 5}', "status must be one of"),
        ('{"job_id": "a", "attempt": 1, "status": "done", "elapsed_s": "abc"}', "elapsed_s must be a number"),
        ('{"job_id": "a", "attempt": 1, "status": "done", "output": 7}', "output must be text"),
        (
            '{"job_id": "a", "attempt": 1, "status": "done", "protocol_values": "abc"}',
            "protocol_values must be",
        ),
        ('{"job_id": "a", "attempt": 1, "status": "done", "time": NaN}', "not one JSON object"),
        ('{"job_id": "a", "job_id": "b", "attempt": 1, "status": "done"}', "appears twice"),
        ('["job_id", "a"]', "a JSON list, not an object"),
        ('{"job_id": "a", "attempt": 1, "status": "done", "ledger_version": 9}', "ledger_version is 9"),
        ('{"job_id": "a", "attempt": 1e999, "status": "done"}', "not one JSON object"),
        ('{"job_id": "\xff", "attempt": 1, "status": "done"}', "not UTF-8 text"),
        ("[" * 100000 + "]" * 99999 + "}", "nested too deeply"),
    ],
)
def test_a_damaged_or_hand_edited_ledger_record_is_named_by_its_line(tmp_path, capsys, line, fragment):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    out = tmp_path / "out"
    record_attempt(out, discover_jobs([a.parent]))
    with open(out / "batch.jsonl", "ab") as f:
        f.write(line.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff") + b"\n")
    for extra in ([], ["--dry-run"]):
        code, _, err = batch_cli(capsys, a.parent, "-o", out, *extra)
        assert code == 5, err
        one_error_line(err, "batch.jsonl line 3 is damaged", fragment)
    with pytest.raises(OutputError, match="line 3 is damaged"):
        Ledger(out).records()


def test_a_record_cut_short_by_a_crash_is_skipped_with_a_note(tmp_path, capsys):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    out = tmp_path / "out"
    record_attempt(out, discover_jobs([a.parent]))
    with open(out / "batch.jsonl", "ab") as f:
        f.write(b'{"job_id": "x", "attempt": 1, "sta')
    code, _, err = batch_cli(capsys, a.parent, "-o", out)
    assert code == 8 and "line 3 was cut short" in err, err


# --- content identity: a replaced input is enhanced again --------------------------------------------------------


def test_a_job_whose_input_was_replaced_runs_again(tmp_path):
    image = nrrd_case(tmp_path / "in" / "ct.nrrd", 1)
    series = good_series(tmp_path / "in" / "dicom", "D1", 3)
    out = tmp_path / "out"
    record_attempt(out, discover_jobs([tmp_path / "in"]), status="done")
    for job in discover_jobs([tmp_path / "in"]):
        write_volume(read_volume(image), output_path(out, job, "nrrd"))  # the outputs are there

    def actions() -> dict[str, str]:
        batch = Batch(out, discover_jobs([tmp_path / "in"]))
        return {p.job.job_id.split(":")[0]: p.action for p in batch.plan(lock=False)}

    assert actions() == {"file": "done", "dicom": "done"}
    data = bytearray(image.read_bytes())  # another scan: same size, same first and last bytes
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    image.write_bytes(bytes(data))
    assert actions()["file"] == "run"  # was skipped: the fingerprint ignored the content
    original = bytes(data)
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    image.write_bytes(bytes(data))  # written again with the earlier bytes: a new time, the same content
    assert actions()["file"] == "done" and original != bytes(data)
    for path in series.paths:  # the series replaced by another acquisition (new SOPInstanceUIDs)
        path.unlink()
    good_series(tmp_path / "in" / "dicom", "D1", 4, series_uid=series.series_uid, study_uid=series.study_uid)
    assert actions()["dicom"] == "run"


# --- links and pipes in a cohort --------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and pipes are POSIX here")
def test_linked_folders_are_searched_and_pipes_never_opened(tmp_path, capsys):
    store = tmp_path / "store"
    series = good_series(store / "p1", "P1", 1)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "P1").symlink_to(store / "p1", target_is_directory=True)  # a linked patient folder
    split = good_series(tmp_path / "split", "P2", 2)
    (cohort / "P2").mkdir()
    for path in split.paths[:3]:
        path.rename(cohort / "P2" / path.name)
    (cohort / "P2" / "rest").symlink_to(split.folder, target_is_directory=True)  # slices in a linked folder
    (cohort / "P2" / "loop").symlink_to(cohort, target_is_directory=True)  # a loop
    os.mkfifo(cohort / "pipe.dcm")
    notes: list[str] = []
    jobs = {job.job_id: job for job in discover_jobs([cohort], warn=notes.append)}
    assert set(jobs) == {f"dicom:{series.series_uid}", f"dicom:{split.series_uid}"}  # were skipped silently
    assert (
        jobs[f"dicom:{split.series_uid}"].geometry.shape[0] == 6
        and jobs[f"dicom:{split.series_uid}"].problem is None
    )
    assert any("searched already" in n for n in notes) and any("not a regular file" in n for n in notes)
    done = run_cli(cohort, "-o", tmp_path / "out", "--dry-run", timeout=120)  # the pipe never hangs it
    assert done.returncode == 0 and "not a regular file" in done.stderr and done.stdout.count("run\t") == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_pipe_as_manifest_or_ledger_is_refused_without_waiting(tmp_path):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    os.mkfifo(tmp_path / "m.csv")
    done = run_cli("--manifest", tmp_path / "m.csv", "-o", tmp_path / "out", "--dry-run", timeout=120)
    assert done.returncode == 2 and "is not a regular file" in done.stderr, done.stderr
    out = tmp_path / "out2"
    out.mkdir()
    os.mkfifo(out / "batch.jsonl")
    done = run_cli(a.parent, "-o", out, "--dry-run", timeout=120)
    assert done.returncode == 5 and "is not a regular file" in done.stderr, done.stderr
    linked = tmp_path / "out3"
    record_attempt(tmp_path / "elsewhere", discover_jobs([a.parent]))
    linked.mkdir()
    (linked / "batch.jsonl").symlink_to(
        tmp_path / "elsewhere" / "batch.jsonl"
    )  # never read or written through
    before = (tmp_path / "elsewhere" / "batch.jsonl").read_bytes()
    done = run_cli(a.parent, "-o", linked, "--retry-failed", timeout=120)
    assert done.returncode == 5 and "is a symbolic link" in done.stderr, done.stderr
    assert (tmp_path / "elsewhere" / "batch.jsonl").read_bytes() == before


# --- the exit status survives a closed pipe; text from files is neither a formula nor an escape --------------------


def test_a_closed_pipe_never_turns_a_failed_batch_into_success(tmp_path):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    out = tmp_path / "out"
    record_attempt(out, discover_jobs([a.parent]), error_message="failed\n" * 5000)  # a long table
    env = {**os.environ, "PYTHONPATH": str(REPO / "SR4ZCTModule")}
    command = [sys.executable, "-m", "sr4zct", "batch", str(a.parent), "-o", str(out)]
    for streams in ("stdout", "both"):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line: every write fails with EPIPE
        done = subprocess.run(command, stdout=write, stderr=write if streams == "both" else subprocess.PIPE,
                              env=env, timeout=120)  # fmt: skip
        os.close(write)
        assert done.returncode == 8, done.stderr  # was 0 (and 120 when the flush at exit failed)
    if sys.platform != "win32":
        shell = f"{' '.join(map(str, command))} | true; exit ${{PIPESTATUS[0]}}"
        assert (
            subprocess.run(["bash", "-c", shell], env=env, timeout=120, capture_output=True).returncode == 8
        )


def test_summary_csv_neutralises_formulas_and_the_terminal_gets_no_escape_sequences(tmp_path, capsys):
    series = good_series(tmp_path / "in" / "s", "=HYPERLINK(\"http://x\",\"y\")", 1,
                         series_description="\x1b]0;owned\x07\x1b[2J@SUM(1+1)")  # fmt: skip
    out = tmp_path / "out"
    jobs = discover_jobs([tmp_path / "in"])
    record_attempt(out, jobs, error_message="-2+3+cmd|' /C calc'!A0 \x1b[31m", error_code="input")
    code, text, err = batch_cli(capsys, tmp_path / "in", "-o", out)
    assert code == 8
    assert "\x1b" not in text + err and "\\x1b" in text  # shown as an escape, not run by the terminal
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["description"].startswith("'=HYPERLINK") and row["error_message"].startswith("'-2+3")
    assert row["series_uid"] == series.series_uid and row["elapsed_s"] == "1.50"
    assert row["attempt"] == "1"
    for cell in ("=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1", "-cmd"):
        assert safe_cell(cell).startswith("'")
    for cell in ("-1.25", "+3", "1e-3", "plain", "", "a=b"):
        assert safe_cell(cell) == cell


# --- manifests that are not text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        (b"path\nok.nrrd\n\xff\xfe.nrrd\n", 2, "line 3, is not UTF-8 text (byte 0xff)"),
        (b"path\na.nrrd\x00\n", 2, "line 2, holds a NUL byte"),
        (b"path,output_name\na.nrrd,x\x1by\n", 4, "line 2: output_name holds a control character"),
        (b"path,output_name\na.nrrd,../x\n", 4, "line 2: the output_name '../x' is unusable"),
        (b"path,input\na.nrrd,b.nrrd\n", 2, "names one field in two columns"),
        (b'path\n"' + b"x" * 200000 + b'"\n', 2, "line 2, is not valid CSV"),
        (b"path,series_uid\na.nrrd,1.2\x0b3\n", 4, "line 2: --series holds a control character"),
    ],
)
def test_a_manifest_that_is_not_clean_text_is_refused_by_line(tmp_path, capsys, content, code, fragment):
    nrrd_case(tmp_path / "a.nrrd", 1)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content)
    got, _, err = batch_cli(capsys, "--manifest", manifest, "-o", tmp_path / "out", "--dry-run")
    assert got == code, err
    one_error_line(err, fragment)
    with pytest.raises((InputError, ParameterError)):
        read_manifest(manifest)


def test_an_empty_path_is_refused_in_a_batch(tmp_path, capsys, monkeypatch):
    a = nrrd_case(tmp_path / "in" / "a.nrrd", 1)
    monkeypatch.chdir(a.parent)  # the current folder holds a volume that must not be taken
    for args in (["", "-o", tmp_path / "o"], [a.parent, "-o", ""], ["--manifest", "", "-o", tmp_path / "o"]):
        code, _, err = batch_cli(capsys, *args, "--dry-run")
        assert code == 4, (args, err)
        one_error_line(err, "must name a file or folder")
    with pytest.raises(ParameterError):
        discover_jobs([""])
    with pytest.raises(ParameterError):
        BatchJob.for_file("")
    with pytest.raises(ParameterError):
        Batch("", discover_jobs([a.parent]))


# --- values that look like options ----------------------------------------------------------------------------


def test_an_event_can_carry_any_character():
    """The job process's events (docs/events.md) quote paths and DICOM text: a name that is not UTF-8 broke
    the event writer, and the job ended as "stopped unexpectedly" instead of with its own message."""
    from sr4zct.run.events import encode_event, make_event, parse_line

    event = make_event("failed", message="Cannot read /data/ct\udcff\u2028x.nrrd \x1b[31m", code="input")
    line = encode_event(event)
    assert line.isascii() and "\n" not in line
    assert parse_line(line + "\n")["message"] == event["message"]
    line.encode("utf-8")  # what the events writer does: never fails


def test_option_like_values_stay_values_on_the_background_command_line(tmp_path):
    from sr4zct.cli import build_parser
    from sr4zct.run.background import BackgroundJob

    options = EnhanceOptions(series_uid="-o", model_path="--overwrite", uncertainty_path="-x.nrrd",
                             preview_path="--events.png", device="cpu", seed=3)  # fmt: skip
    job = BackgroundJob("-x.nrrd", "--overwrite", options)
    parsed = build_parser().parse_args(job._command[4:])  # after "python -u -m sr4zct"
    assert parsed.input == os.path.abspath("-x.nrrd") and parsed.output == os.path.abspath("--overwrite")
    back = EnhanceOptions.from_args(parsed)
    assert back.series_uid == "-o" and back.model_path == os.path.abspath("--overwrite")
    assert back.uncertainty_path == os.path.abspath("-x.nrrd") and back.preview_path == "--events.png"
    assert not parsed.overwrite and back.seed == 3
    expected = ["--series=-o", "--model=--overwrite", "--device=cpu", "--uncertainty=-x.nrrd",
                "--preview=--events.png", "--seed=3"]  # fmt: skip
    assert sorted(options.to_args()) == sorted(expected)  # one argument per option: flag=value


@pytest.mark.slow
def test_option_like_values_through_a_background_job_and_the_batch_engine(tmp_path, tiny_model, monkeypatch):  # noqa: F811
    from sr4zct.run.background import BackgroundJob

    monkeypatch.chdir(tmp_path)
    nrrd_case(tmp_path / "-x.nrrd", 1)
    (tmp_path / "-m.pt").write_bytes(tiny_model.read_bytes())
    job = BackgroundJob(
        "-x.nrrd", "-o.nrrd", model_path="-m.pt", series_uid="--overwrite", device="cpu"
    ).start()
    finished = job.wait(300)
    assert finished["event"] == "finished", job.terminal
    assert job.started["options"]["series_uid"] == "--overwrite" and (tmp_path / "-o.nrrd").is_file()
    series = good_series(tmp_path / "dicom", "P", 5)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"path,series_uid,output_name\n{series.folder},-o,first\n{series.folder},--overwrite,second\n"
    )
    result = Batch(tmp_path / "out", read_manifest(manifest), EnhanceOptions(model_path=str(tiny_model),
                   device="cpu")).run()  # fmt: skip
    assert result.exit_code == 8
    messages = sorted(row["error_message"] for row in result.rows)
    assert messages[0].startswith("Series --overwrite is not in") and messages[1].startswith(
        "Series -o is not in"
    )


@pytest.mark.slow
def test_characters_from_files_through_a_real_batch(tmp_path, tiny_model):  # noqa: F811
    """DICOM text with line separators and escape sequences, and file names with a line break and bytes
    that are not UTF-8: one ledger line per record, every job recorded, no abort."""
    cohort = tmp_path / "cohort"
    from dicom_factory import write_series
    from test_batch import ct_hu

    write_series(
        cohort / "s",
        hu=ct_hu(seed=1),
        n_slices=6,
        rows=24,
        columns=24,
        pixel_spacing_mm=(0.8, 0.8),
        series_description="a\r\nb\x85c\u2029d\x1b[31m",
        extra_tags={"PatientID": "P\u2028X\x85", "SpecificCharacterSet": "ISO_IR 192"},
    )  # UTF-8 text
    nrrd_case(cohort / "line\nbreak.nrrd", 2)
    bad = os.fsencode(cohort) + b"/bad\xff.nrrd"
    os.rename(os.fsencode(nrrd_case(cohort / "tmp.nrrd", 3)), bad)
    done = run_cli(cohort, "-o", tmp_path / "out", "--model", tiny_model, "--device", "cpu", timeout=900)
    assert done.returncode == 8, done.stderr  # the file SimpleITK cannot open failed; the batch went on
    records = Ledger(tmp_path / "out").records()
    data = (tmp_path / "out" / "batch.jsonl").read_bytes()
    assert data.count(b"\n") == len(records) == 6  # 3 jobs, 2 records each
    latest = Ledger(tmp_path / "out").latest()
    statuses = sorted(r["status"] for r in latest.values())
    assert statuses == ["done", "done", "failed"]
    failed = next(r for r in latest.values() if r["status"] == "failed")
    assert "not valid UTF-8" in failed["error_message"] and "\x1b" not in done.stdout + done.stderr
    described = [r["description"] for r in latest.values()]
    assert any("\u2028" in d and "\u2029" in d for d in described), described  # kept, on one line
    assert {Path(r["input"]).name for r in latest.values()} >= {"line\nbreak.nrrd"}
    json.dumps(records)  # every record is plain JSON data
