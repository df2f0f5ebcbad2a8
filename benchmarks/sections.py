"""Sections of BENCHMARKS.md that a benchmark command other than ``benchmarks.run`` owns.

Each sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; the command that owns it replaces it (or
appends it when absent), and ``benchmarks.report`` keeps such sections when it regenerates the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(name: str, body: str, path: Path = REPORT) -> None:
    """Put ``body`` (Markdown) between the section's markers in ``path``, replacing the old one or appending."""
    begin, end = markers(name)
    text = f"{begin}\n{body.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def owned_sections(text: str) -> list[str]:
    """Every marked section in ``text``, markers included (what a regenerated report must keep)."""
    pattern = re.compile(r"<!-- (\w[\w-]*):begin -->.*?<!-- \1:end -->", re.DOTALL)
    return [match.group(0) for match in pattern.finditer(text)]
