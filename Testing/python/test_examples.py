"""The Python examples of README.md and docs/*.md run, as they are written, against a small phantom.

Every ```python block runs in its own interpreter, in a fresh folder that holds the files the examples name:
``ct.nrrd`` (a 3 mm / 2 mm phantom that records its thickness) and ``cohort/`` (a copy of it). Only the
training budget is not the reader's: a ``sitecustomize.py`` on the interpreters' ``PYTHONPATH`` (so in the
background and batch processes the examples start, too) shrinks every preset of
:data:`sr4zct.run.presets.PRESETS` to a few steps of a tiny network, keeping its name.

A block that cannot run here says so on the line before its fence, with the reason:
``<!-- example: not run (Slicer's Python console; the Slicer replica suite covers it) -->``.
:data:`NOT_RUN` lists the blocks of pages this suite's owner does not edit (signatures, not programs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
#: pages whose Python blocks are all signatures (a reference), with the reason
NOT_RUN = {"docs/architecture.md": "key signatures, not a program"}
TIMEOUT_S = 300

_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!-- example: not run \((.+?)\) -->")

SITECUSTOMIZE = """
# Written by Testing/python/test_examples.py: every preset shrunk to a few steps of a tiny network.
from sr4zct.run import presets

for _name, _preset in list(presets.PRESETS.items()):
    presets.PRESETS[_name] = _preset.replace(
        steps=6, patch_px=24, batch=2, validate_every=3, test_time_flips=False,
        network_config={"layers": 2, "channels": 4, "unshuffle": 2},
    )
"""


def _blocks() -> list[tuple[str, int, str, str | None]]:
    """(page relative to the repository root, line, code, reason it is not run or None) per block."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(REPO_ROOT).as_posix()
        for match in _FENCE.finditer(text):
            before = text[: match.start()].rstrip().splitlines()
            marker = _MARKER.fullmatch(before[-1].strip()) if before else None
            reason = NOT_RUN.get(name) or (marker.group(1) if marker else None)
            found.append((name, text.count("\n", 0, match.start()) + 1, match.group(1), reason))
    return found


BLOCKS = _blocks()
RUN = [(page, line, code) for page, line, code, reason in BLOCKS if reason is None]


def test_the_pages_have_examples_and_every_one_that_is_not_run_says_why():
    assert any(page == "README.md" for page, _, _ in RUN)
    skipped = [(page, line, reason) for page, line, _, reason in BLOCKS if reason is not None]
    assert all(reason.strip() for _, _, reason in skipped)
    # the Slicer console examples are the ones not run, and they say where they are covered
    slicer = [(page, line) for page, line, code, _ in BLOCKS if "import SR4ZCT\n" in code]
    assert slicer and all("Slicer" in reason for page, line, reason in skipped if (page, line) in slicer)
    assert not [(page, line) for page, line, _ in RUN if (page, line) in slicer]


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory) -> Path:
    """A folder with ct.nrrd (a 3 mm / 2 mm phantom, 40 x 64 x 64 at 1 mm before the acquisition) and
    cohort/ct.nrrd; a site folder beside it holds the sitecustomize.py that shrinks the presets."""
    import shutil

    import sr4zct
    from sr4zct.demo.phantom import make_demo_case

    root = tmp_path_factory.mktemp("examples")
    _, thick = make_demo_case(3.0, 2.0, "box", 0, shape=(40, 64, 64), voxel_mm=1.0)
    sr4zct.write_volume(thick, root / "work" / "ct.nrrd")
    (root / "work" / "cohort").mkdir()
    shutil.copy(root / "work" / "ct.nrrd", root / "work" / "cohort" / "ct.nrrd")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE), encoding="utf-8")
    return root


@pytest.mark.parametrize(("page", "line", "code"), RUN, ids=[f"{page}:{line}" for page, line, _ in RUN])
def test_the_example_runs(example_folder, tmp_path, page, line, code):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(example_folder / "work", work)
    env = dict(os.environ)
    paths = [str(example_folder / "site"), str(REPO_ROOT / "SR4ZCTModule"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    script = work / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, f"{page}, line {line}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
