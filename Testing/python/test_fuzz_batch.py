"""Property-based tests of the batch's text inputs: ledger records and manifest rows.

* Any record a run could append (text fields holding any character: line and paragraph separators,
  control characters, lone surrogates for file-name bytes that are not UTF-8) is one line of the ledger and
  reads back exactly.
* Any line a hand edit, a crash or another program could leave in ``batch.jsonl`` (random bytes, JSON of
  any shape, a valid record with one field changed to a value of any type) makes the reader return records
  whose fields have their documented types, or raise :class:`OutputError` naming the line; a batch plans
  from it or refuses the same way. Never another exception.
* Any manifest (cells of any text or bytes, quotes, separators, NUL, control characters, bytes that are
  not UTF-8) gives jobs with usable output names, or an :class:`SR4ZCTError` with a one-line message.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sr4zct.batch import Batch, BatchJob, Ledger, read_manifest
from sr4zct.batch.jobs import name_problem
from sr4zct.batch.ledger import FIELD_TYPES, check_record
from sr4zct.errors import OutputError, SR4ZCTError

SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
tricky = st.sampled_from(["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e",
                          "\x00", "\x1b[31m", '"', "\\", "\udcff", "\ufeff", "}", "{", ","])  # fmt: skip
text = st.lists(st.one_of(any_char, tricky), max_size=12).map("".join)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), text,
)  # fmt: skip
value = st.recursive(
    scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)  # fmt: skip


def good_record(job_id: str = "file:/data/ct.nrrd", attempt: int = 1, status: str = "done") -> dict:
    return {
        "ledger_version": 1, "job_id": job_id, "attempt": attempt, "status": status, "time": 1.0e9,
        "input": "/data/ct.nrrd", "description": "ct", "output": "/out/ct.nrrd", "fingerprint": "0123456789abcdef",
        "elapsed_s": 3.5, "protocol_values": [3.0, 2.0, 0.8, 0.8, "box"], "model_path": "/out/models/m.pt",
        "model_role": "train", "warnings": [], "options": {}, "content": {"files": []},
    }  # fmt: skip


@SETTINGS
@given(
    texts=st.lists(text, min_size=1, max_size=6),
    attempt=st.integers(min_value=1, max_value=2**62),
    status=st.sampled_from(["running", "done", "failed", "cancelled"]),
)
def test_fuzz_ledger_records_round_trip(texts, attempt, status):
    records = []
    for k, item in enumerate(texts):
        record = good_record(f"file:{item}{k}", attempt, status)
        record.update(description=item, error_message=item, warnings=[item], options={item: item})
        records.append(record)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(tmp)
        for record in records:
            ledger.append(record)
        data = ledger.path.read_bytes()
        assert data.isascii() and data.count(b"\n") == len(records)  # one line per record, whatever the text
        assert Ledger(tmp).records() == records


line = st.one_of(
    st.binary(max_size=60),
    text,
    value.map(lambda v: json.dumps(v, ensure_ascii=False, allow_nan=True)),
    st.tuples(
        st.sampled_from([*FIELD_TYPES, "job_id", "attempt", "status", "ledger_version", "protocol_values"]),
        value,
    ).map(lambda fv: json.dumps({**good_record(), fv[0]: fv[1]}, allow_nan=True)),  # fmt: skip
    st.tuples(st.sampled_from(["job_id", "attempt", "status"])).map(
        lambda f: json.dumps({k: v for k, v in good_record().items() if k != f[0]})
    ),
)


@SETTINGS
@given(lines=st.lists(line, min_size=1, max_size=5))
def test_fuzz_ledger_lines_are_read_or_refused_by_line(lines):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        raw = b"\n".join(
            item if isinstance(item, bytes) else item.encode("utf-8", "surrogatepass") for item in lines
        )
        (out / "batch.jsonl").write_bytes(raw + b"\n")
        try:
            records = Ledger(out).records()
        except OutputError as exc:
            assert "batch.jsonl line " in exc.message and "\n" not in exc.message, exc.message
            records = None
        for record in records or []:
            assert check_record(record) is None  # every record read has its documented types
        job = BatchJob.for_file(Path(tmp) / "data" / "ct.nrrd", thickness_mm=3.0)
        try:
            planned = Batch(out, [job]).plan(lock=False)
        except OutputError as exc:
            assert records is None and "line" in exc.message
            return
        assert records is not None and planned[0].action in ("run", "done", "failed")


cell = st.one_of(text, st.sampled_from(["", "#", "..", "../x", "/abs", "~", "a/b", "a\\b", "x.nrrd", "CT", "ct",
                                        "3", "-1", "nan", "1e400", "0x10", "batch.jsonl", ".hidden", "helical", "AUTO"]))  # fmt: skip
header = st.lists(st.sampled_from(["path", "input", "series_uid", "thickness_mm", "thickness", "output_name",
                                   "output", "scan_mode", "other", ""]), min_size=1, max_size=5)  # fmt: skip


@SETTINGS
@given(
    columns=header,
    rows=st.lists(st.lists(cell, min_size=0, max_size=6), max_size=4),
    junk=st.one_of(st.just(b""), st.binary(max_size=8)),
    delimiter_quote=st.booleans(),
)
def test_fuzz_manifest_rows(columns, rows, junk, delimiter_quote):
    def quoted(item: str) -> str:
        return '"' + item.replace('"', '""') + '"' if delimiter_quote else item

    body = ",".join(columns) + "\n" + "".join(",".join(quoted(c) for c in row) + "\n" for row in rows)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.csv"
        manifest.write_bytes(body.encode("utf-8", "surrogatepass") + junk)
        try:
            jobs = read_manifest(manifest)
        except SR4ZCTError as exc:
            assert exc.message and "\n" not in exc.message and "Traceback" not in exc.message, exc.message
            return
        assert jobs
        for job in jobs:
            assert name_problem(job.output_name) is None, job.output_name
            assert "\x00" not in job.input_path and Path(job.input_path).is_absolute()


@pytest.mark.parametrize("bad", [b"\xff", b"\x00", b"\xc3"])
def test_fuzz_examples_that_matter(tmp_path, bad):
    """The shapes the property tests draw, written out: a byte that is not UTF-8, a NUL, a cut character."""
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path\nct.nrrd" + bad + b"\n")
    with pytest.raises(SR4ZCTError, match="line 2"):
        read_manifest(manifest)
