"""The Python packages a 3D Slicer release bundles, read from its SuperBuild files: the replica's pin sets.

Slicer pins every Python package it bundles in ``SuperBuild/External_python-*.cmake`` (hash-locked
requirement lines inside ``file(WRITE ... [===[ ... ]===])``); SimpleITK is one of them from 5.12 on, and was
built from source before (``External_SimpleITK.cmake``: its ``slicer-vX.Y.Z`` tag, taken as PyPI's X.Y.Z).
This script reads those files at a tag of Slicer's repository (a git directory, e.g. the one the project's
``fetch`` of ``github:Slicer/Slicer`` gives, or any clone) and writes ``pins/slicer-<major.minor>.txt``,
one ``name==version`` a line, grouped by the SuperBuild file they come from. Nothing of Slicer's code is
copied; only the pins are.

The pin sets in ``pins/`` were made with::

    python Testing/slicer_replica/slicer_pins.py SLICER_GIT_DIR v5.10.0 v5.12.3 --check-wheels 3.11

(Slicer main at 583e9b37, the 5.13 preview of 2026-08, has exactly the pins of v5.12.3.)
``--check-wheels 3.11`` asks the package index, through pip and without installing or downloading a
wheel, whether every pin has a wheel for CPython 3.11 on Linux x86-64 (the replica's interpreter, see
setup.sh); it fails, naming the pins, when one has none.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS_DIR = HERE / "pins"
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)==([^\s\\]+)")
_BLOCK = re.compile(r"file\(WRITE\s+\$\{requirements_file\}\s+\[===\[(.*?)\]===\]\)", re.S)
_SIMPLEITK_TAG = re.compile(r'"[0-9a-f]{7,40}"\s*#\s*slicer-v(\d+\.\d+\.\d+)')
_PYTHON = re.compile(r'set\(Slicer_REQUIRED_PYTHON_VERSION\s+"([0-9.]+)"\)')
# Linux x86-64 platform tags a CPython 3.11 wheel may carry (manylinux1 .. 2_28).
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def git_show(git_dir: Path, ref: str, path: str) -> str | None:
    """The file ``path`` at ``ref``, or None when it does not exist there."""
    result = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{ref}:{path}"], capture_output=True,
                            text=True)  # fmt: skip
    return result.stdout if result.returncode == 0 else None


def superbuild_files(git_dir: Path, ref: str) -> list[str]:
    listing = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "--name-only", ref, "SuperBuild/"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    return sorted(p for p in listing if re.fullmatch(r"SuperBuild/External_python-.*\.cmake", p))


def pins_in(text: str) -> list[tuple[str, str]]:
    """``(name, version)`` of every requirement line in the file's ``file(WRITE ...)`` blocks."""
    found = []
    for block in _BLOCK.findall(text):
        for line in block.splitlines():
            match = _PIN.match(line)
            if match and not line.lstrip().startswith("#"):
                found.append((match.group(1), match.group(2)))
    return found


def read_pins(git_dir: Path, ref: str) -> tuple[dict[str, list[tuple[str, str]]], str]:
    """The pins at ``ref`` by source file, and Slicer's Python version there."""
    groups: dict[str, list[tuple[str, str]]] = {}
    seen: dict[str, tuple[str, str]] = {}
    for path in superbuild_files(git_dir, ref):
        for name, version in pins_in(git_show(git_dir, ref, path) or ""):
            key = name.lower().replace("_", "-")
            if key in seen:
                if seen[key][1] != version:
                    raise SystemExit(f"{ref}: {name} pinned twice ({seen[key][1]} and {version})")
                continue
            seen[key] = (name, version)
            groups.setdefault(Path(path).stem, []).append((name, version))
    if "simpleitk" not in seen:
        text = git_show(git_dir, ref, "SuperBuild/External_SimpleITK.cmake") or ""
        match = _SIMPLEITK_TAG.search(text)
        if match is None:
            raise SystemExit(f"{ref}: no SimpleITK pin and no slicer-vX.Y.Z tag in External_SimpleITK.cmake")
        groups["External_SimpleITK (built from source by Slicer; PyPI's release of its version)"] = [
            ("simpleitk", match.group(1))
        ]
    python = _PYTHON.search(git_show(git_dir, ref, "CMakeLists.txt") or "")
    return groups, python.group(1) if python else "unknown"


def render(ref: str, commit: str, python: str, groups: dict[str, list[tuple[str, str]]]) -> str:
    lines = [
        f"# The Python packages 3D Slicer {ref.lstrip('v')} bundles (commit {commit[:10]}, Python {python}), read from",
        "# its SuperBuild/External_python-*.cmake by Testing/slicer_replica/slicer_pins.py; do not edit by hand.",
        "# Installed with --no-deps --only-binary=:all:: this list is the whole environment, as in Slicer.",
    ]  # fmt: skip
    for source, pins in groups.items():
        lines.append(f"# {source}")
        lines += [f"{name}=={version}" for name, version in pins]
    return "\n".join(lines) + "\n"


def check_wheels(path: Path, python_version: str) -> None:
    """Ask pip (metadata only, nothing installed) whether every pin of ``path`` has a wheel for CPython
    ``python_version`` on Linux x86-64."""
    digits = python_version.replace(".", "")
    with tempfile.TemporaryDirectory() as target:
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
                   "--ignore-installed", "--only-binary=:all:", "--python-version", python_version,
                   "--implementation", "cp", "--abi", f"cp{digits}", "--abi", "abi3", "--abi", "none",
                   "--target", target, "-r", str(path)]  # fmt: skip
        for platform in _PLATFORMS:
            command += ["--platform", platform]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{path.name}: not every pin has a CPython {python_version} wheel:\n{result.stderr}")
    print(f"{path.name}: every pin has a CPython {python_version} wheel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "git_dir", type=Path, help="Slicer's git directory (a clone's .git, or a bare mirror)"
    )
    parser.add_argument("refs", nargs="+", help="Slicer tags (v5.10.0 ...): one pin set per major.minor")
    parser.add_argument("--check-wheels", metavar="PYTHON", help="check for wheels for this CPython (3.11)")
    args = parser.parse_args(argv)
    PINS_DIR.mkdir(exist_ok=True)
    for ref in args.refs:
        commit = subprocess.run(["git", f"--git-dir={args.git_dir}", "rev-parse", f"{ref}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        groups, python = read_pins(args.git_dir, ref)
        release = re.match(r"v?(\d+\.\d+)", ref)
        path = PINS_DIR / f"slicer-{release.group(1) if release else ref}.txt"
        path.write_text(render(ref, commit, python, groups), encoding="utf-8")
        print(f"wrote {path.relative_to(HERE)}: {sum(len(p) for p in groups.values())} pins of Slicer {ref}")
        if args.check_wheels:
            check_wheels(path, args.check_wheels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
