"""The core's layers point one way, and docs/architecture.md names every module of the core.

From the bottom up (docs/architecture.md, "Layers"):

1. ``_version``, ``errors``, ``volume``, ``system`` (and the package facade ``sr4zct/__init__.py``): what
   every part shares; they may import one another.
2. ``io`` and ``method``: files, and the method's steps; each imports only the bottom, never the other.
3. ``run``: an enhancement (options, checks, pipeline, background process).
4. ``batch`` and ``demo``: cohorts, and the demo and evaluation; neither imports the other.
5. ``cli`` and ``app``: the command line, and the Slicer module's Slicer-free part; neither imports the other.
6. ``__main__``: ``python -m sr4zct``.

The Slicer module ``SR4ZCT.py`` sits on top of all of them: no core module imports it or Slicer's own
modules (:data:`SLICER_MODULES`). A module may import its own package and any lower layer. Every import
counts: top-level ones and those inside functions, ``import a.b``, ``from a import b``, relative ones
(``from . import x``, ``from ..io import atomic``), a name the facade loads lazily (``from sr4zct import
enhance`` is ``sr4zct.run.pipeline``) and ``importlib.import_module("sr4zct....")`` with a literal name.

Fast: it parses the source files; nothing is imported.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "SR4ZCTModule" / "sr4zct"
ARCHITECTURE_DOC = REPO_ROOT / "docs" / "architecture.md"

#: The layers, bottom first: (name, top-level parts of the package, may its parts import one another).
LAYERS: tuple[tuple[str, frozenset[str], bool], ...] = (
    ("bottom", frozenset({"", "_version", "errors", "volume", "system"}), True),
    ("io/method", frozenset({"io", "method"}), False),
    ("run", frozenset({"run"}), False),
    ("batch/demo", frozenset({"batch", "demo"}), False),
    ("cli/app", frozenset({"cli", "app"}), False),
    ("entry point", frozenset({"__main__"}), False),
)

#: The top: the Slicer module and what only Slicer has; the core (tested with plain pytest) imports none of them.
SLICER_MODULES = frozenset({"SR4ZCT", "slicer", "qt", "ctk", "vtk", "mrml", "DICOMLib"})


@dataclass(frozen=True)
class Violation:
    """One import that points up or sideways."""

    path: str
    line: int
    importer: str
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}: {self.reason}"


def part_of(module: str) -> str:
    """The top-level part of the package a dotted module name belongs to (``""``: the facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(part: str) -> int:
    for index, (_, parts, _) in enumerate(LAYERS):
        if part in parts:
            return index
    raise KeyError(part)


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """``sr4zct/io/image.py`` -> ``sr4zct.io.image``; ``sr4zct/io/__init__.py`` -> ``sr4zct.io``."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def lazy_names(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """The facade's ``_LAZY`` table: a name ``from sr4zct import name`` loads -> the module it comes from."""
    tree = ast.parse((package_dir / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _is_module(dotted: str, package_dir: Path) -> bool:
    base = package_dir.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _from_targets(node: ast.ImportFrom, importer: str, is_package: bool, package_dir: Path) -> list[str]:
    """The modules ``from X import a, b`` makes the importer depend on."""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base != "sr4zct" and not base.startswith("sr4zct."):
        return []
    targets = []
    lazy = lazy_names(package_dir) if base == "sr4zct" else {}
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if alias.name != "*" and _is_module(sub, package_dir):
            targets.append(sub)  # ``from sr4zct.io import atomic`` imports the module sr4zct.io.atomic
        elif alias.name in lazy:
            targets.append(lazy[alias.name])
        else:
            targets.append(base)
    return list(dict.fromkeys(targets))  # one per module


def _import_module_target(node: ast.Call) -> str | None:
    """The module ``importlib.import_module("sr4zct....")`` loads, when its name is written in the call."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        text = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        text = str(arg.values[0].value).rsplit(".", 1)[0]  # f"sr4zct.cli.{name}" -> sr4zct.cli
    else:
        return None
    return text if text == "sr4zct" or text.startswith("sr4zct.") else None


_WATCHED = SLICER_MODULES | {"sr4zct"}


def imports_of(source: str, importer: str, *, is_package: bool = False, package_dir: Path = PACKAGE_DIR):
    """``(line, imported module)`` for every ``sr4zct`` (or Slicer) import in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in _WATCHED]
        elif isinstance(node, ast.ImportFrom):
            if not node.level and (node.module or "").split(".")[0] in SLICER_MODULES:
                found.append((node.lineno, node.module))
            found += [(node.lineno, t) for t in _from_targets(node, importer, is_package, package_dir)]
        elif isinstance(node, ast.Call) and (target := _import_module_target(node)):
            found.append((node.lineno, target))
    return found


def forbidden_because(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``; None when it may."""
    if imported.split(".")[0] in SLICER_MODULES:
        return "the Slicer module and Slicer's own modules are above the whole core"
    own, part = part_of(importer), part_of(imported)
    if part == own:
        return None
    own_layer = layer_of(own)
    try:
        their_layer = layer_of(part)
    except KeyError:
        return f"'{part}' is in no layer of test_layers.LAYERS"
    if their_layer < own_layer or (their_layer == own_layer and LAYERS[own_layer][2]):
        return None
    if their_layer == own_layer:
        return f"'{own}' and '{part}' are siblings in the {LAYERS[own_layer][0]} layer"
    return (
        f"the {LAYERS[their_layer][0]} layer is above the {LAYERS[own_layer][0]} layer of '{own or 'sr4zct'}'"
    )


def check_source(
    source: str, importer: str, path: str, *, is_package: bool = False, package_dir: Path = PACKAGE_DIR
) -> list[Violation]:
    """The imports in ``source`` (the module ``importer``) that point to a higher layer or a sibling."""
    violations = []
    for line, imported in imports_of(source, importer, is_package=is_package, package_dir=package_dir):
        reason = forbidden_because(importer, imported)
        if reason is not None:
            violations.append(Violation(path, line, importer, imported, reason))
    return violations


def core_modules(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    return sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)


def check_package(package_dir: Path = PACKAGE_DIR) -> list[Violation]:
    violations = []
    for path in core_modules(package_dir):
        violations += check_source(
            path.read_text(encoding="utf-8"),
            module_name(path, package_dir),
            path.relative_to(package_dir.parent).as_posix(),
            is_package=path.name == "__init__.py",
            package_dir=package_dir,
        )
    return violations


# --- the package as it is ---------------------------------------------------------------------------------


def test_every_part_of_the_core_is_in_a_layer():
    parts = {part_of(module_name(p)) for p in core_modules()}
    placed = set().union(*(members for _, members, _ in LAYERS))
    assert parts <= placed, f"parts of sr4zct in no layer of LAYERS (add them): {sorted(parts - placed)}"
    assert {"io", "method", "run", "volume", "system"} <= parts


def test_the_core_imports_only_downwards():
    violations = check_package()
    assert not violations, "imports against the layers (docs/architecture.md):\n" + "\n".join(
        map(str, violations)
    )


def test_the_check_sees_the_imports_it_allows():
    # guards the parser: these real imports exist, each of a different form
    seen = {(v.importer, v.imported) for v in _all_imports()}
    assert ("sr4zct.io.image", "sr4zct.volume.geometry") in seen  # inside a function
    assert ("sr4zct.method.training", "sr4zct.system.devices") in seen  # top level
    assert ("sr4zct.run.background", "sr4zct.errors") in seen  # from sr4zct import errors
    assert ("sr4zct.cli", "sr4zct.cli") in seen  # importlib.import_module(f"sr4zct.cli.{name}")


def _all_imports():
    for path in core_modules():
        name = module_name(path)
        source = path.read_text(encoding="utf-8")
        for line, imported in imports_of(source, name, is_package=path.name == "__init__.py"):
            yield Violation(path.name, line, name, imported, "")


# --- the check fails where it must --------------------------------------------------------------------------


def _check(source: str, importer: str, *, is_package: bool = False) -> list[Violation]:
    return check_source(textwrap.dedent(source), importer, "synthetic.py", is_package=is_package)


@pytest.mark.parametrize(
    ("importer", "source", "line", "imported", "reason"),
    [
        ("sr4zct.io.image", "import os\n\n\ndef f():\n    from sr4zct.run.validation import format_bytes\n",
         5, "sr4zct.run.validation", "above"),
        ("sr4zct.io.image", "from sr4zct.method import geometry\n", 1, "sr4zct.method", "siblings"),
        ("sr4zct.method.training", "from ..io import atomic\n", 1, "sr4zct.io.atomic", "siblings"),
        ("sr4zct.method.training", "from ..run.budget import TimeBudget\n", 1, "sr4zct.run.budget", "above"),
        ("sr4zct.volume.geometry", "import sr4zct.method.acquisition as a\n", 1, "sr4zct.method.acquisition",
         "above"),
        ("sr4zct.system.devices", "from sr4zct.run import options\n", 1, "sr4zct.run.options", "above"),
        ("sr4zct.io.files", "from sr4zct import enhance\n", 1, "sr4zct.run.pipeline", "above"),
        ("sr4zct.run.pipeline", "class A:\n    def f(self):\n        import sr4zct.cli.info\n", 3,
         "sr4zct.cli.info", "above"),
        ("sr4zct.demo.phantom", "from sr4zct.batch import Batch\n", 1, "sr4zct.batch", "siblings"),
        ("sr4zct.app.results", "import importlib\nimportlib.import_module('sr4zct.cli.demo')\n", 2,
         "sr4zct.cli.demo", "siblings"),
        ("sr4zct.errors", "from sr4zct.io import read_volume\n", 1, "sr4zct.io", "above"),
        ("sr4zct.method", "from . import acquisition\nfrom ..io import atomic\n", 2, "sr4zct.io.atomic",
         "siblings"),
        ("sr4zct.run.pipeline", "from sr4zct.gui import x\n", 1, "sr4zct.gui", "no layer"),
        ("sr4zct.app.results", "def f():\n    import slicer\n", 2, "slicer", "Slicer"),
        ("sr4zct.app.results", "from SR4ZCT import SR4ZCTLogic\n", 1, "SR4ZCT", "Slicer"),
    ],
)  # fmt: skip
def test_a_forbidden_import_is_named_with_its_line(importer, source, line, imported, reason):
    violations = _check(source, importer, is_package=importer == "sr4zct.method")
    assert len(violations) == 1, violations
    (v,) = violations
    assert (v.line, v.imported) == (line, imported) and reason in v.reason
    assert str(v).startswith(f"synthetic.py:{line}: {importer} imports {imported}: ")


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("sr4zct.method.training", "from sr4zct.system.devices import autocast\nfrom . import acquisition\n"),
        ("sr4zct.io.image", "def f():\n    from sr4zct.volume.geometry import through_plane_axis\n"),
        ("sr4zct.system.devices", "from sr4zct.errors import ParameterError\nfrom sr4zct import system\n"),
        ("sr4zct.run.pipeline", "from sr4zct.io import read_volume\nfrom sr4zct.method import fusion\n"),
        (
            "sr4zct.cli.demo",
            "from sr4zct.demo.phantom import make_demo_case\nfrom sr4zct.batch import Batch\n",
        ),
        ("sr4zct.io.files", "import os\nfrom sr4zct import __version__, Volume\n"),
        ("sr4zct.__main__", "from sr4zct.cli import main\n"),
    ],
)
def test_a_downward_import_passes(importer, source):
    assert _check(source, importer) == []


def test_a_bad_module_in_a_package_fails_the_package_check(tmp_path):
    package = tmp_path / "sr4zct"
    for rel, text in {
        "__init__.py": "_LAZY = {'enhance': 'sr4zct.run.pipeline'}\n",
        "errors.py": "",
        "io/__init__.py": "",
        "io/reader.py": "import os\n\n\ndef read():\n    from sr4zct.run.validation import check\n",
        "run/__init__.py": "",
        "run/validation.py": "from sr4zct.io import reader\n",
    }.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text, encoding="utf-8")
    violations = check_package(package)
    assert [str(v) for v in violations] == [
        "sr4zct/io/reader.py:5: sr4zct.io.reader imports sr4zct.run.validation: the run layer is above the "
        "io/method layer of 'io'"
    ]


# --- docs/architecture.md names every module ----------------------------------------------------------------


def test_architecture_doc_names_every_module():
    text = ARCHITECTURE_DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+\.py)`", text))
    modules = {p.relative_to(PACKAGE_DIR).as_posix() for p in core_modules()}
    missing = sorted(modules - named)
    assert not missing, (
        f"docs/architecture.md does not name these modules of sr4zct/ (as `path.py`): {missing}"
    )
    stale = sorted(m for m in named - modules if "/" in m and not (REPO_ROOT / m).exists())
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"
