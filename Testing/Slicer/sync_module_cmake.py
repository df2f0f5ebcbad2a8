"""Re-write the list of core package files in ``SR4ZCTModule/CMakeLists.txt``.

Slicer packages only the files a scripted module lists, so every Python file of the bundled ``sr4zct``
package must appear in ``MODULE_PYTHON_SCRIPTS`` and every other file in ``MODULE_PYTHON_RESOURCES``.
The lists live between the ``# BEGIN sr4zct ...`` and ``# END sr4zct ...`` markers; run::

    python Testing/Slicer/sync_module_cmake.py          # rewrite the blocks
    python Testing/Slicer/sync_module_cmake.py --check  # exit 1 when they are stale (CI)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "SR4ZCTModule"
CMAKE_FILE = MODULE_DIR / "CMakeLists.txt"
PACKAGE = "sr4zct"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
BLOCKS = {"scripts": "sr4zct python files", "resources": "sr4zct resource files"}


def package_files(module_dir: Path = MODULE_DIR) -> tuple[list[str], list[str]]:
    """Python files and other files of the bundled core package, relative to ``module_dir``, sorted."""
    scripts, resources = [], []
    for path in sorted((module_dir / PACKAGE).rglob("*")):
        rel = path.relative_to(module_dir)
        if not path.is_file() or SKIP_DIRS.intersection(rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        if path.name.endswith(".egg-info") or any(p.endswith(".egg-info") for p in rel.parts):
            continue
        (scripts if path.suffix == ".py" else resources).append(rel.as_posix())
    return scripts, resources


def _block_pattern(label: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?P<head>[ \t]*# BEGIN {label}[^\n]*\n)(?P<body>.*?)(?P<tail>[ \t]*# END {label})", re.S
    )


def render(text: str, scripts: list[str], resources: list[str]) -> str:
    """``text`` with both marked blocks replaced by the given file lists."""
    for key, files in (("scripts", scripts), ("resources", resources)):
        pattern = _block_pattern(BLOCKS[key])
        if not pattern.search(text):
            raise SystemExit(f"{CMAKE_FILE}: marker '# BEGIN {BLOCKS[key]}' not found")
        body = "".join(f"  {f}\n" for f in files)
        text = pattern.sub(lambda m, body=body: m["head"] + body + m["tail"], text, count=1)
    return text


def listed_files(text: str) -> set[str]:
    """Every file listed in the ``set(MODULE_PYTHON_SCRIPTS ...)`` and ``set(MODULE_PYTHON_RESOURCES ...)``
    blocks (comments dropped; ``${MODULE_NAME}`` must already be expanded by the caller)."""
    tokens: set[str] = set()
    for block in re.finditer(r"set\(MODULE_PYTHON_(?:SCRIPTS|RESOURCES)\b(.*?)\)", text, re.S):
        for line in block.group(1).splitlines():
            tokens.update(line.split("#", 1)[0].split())
    return tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the blocks are current")
    args = parser.parse_args(argv)
    text = CMAKE_FILE.read_text(encoding="utf-8")
    new = render(text, *package_files())
    if new == text:
        print(f"{CMAKE_FILE.name}: up to date")
        return 0
    if args.check:
        print(f"{CMAKE_FILE}: file lists are stale; run python {Path(__file__).name}")
        return 1
    CMAKE_FILE.write_text(new, encoding="utf-8")
    print(f"{CMAKE_FILE}: updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
