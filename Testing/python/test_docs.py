"""The documentation stays true to the code: section citations of docs/method.md, code names it gives, links.

* Every "docs/method.md, section N" (or "method.md section N", "sections N and M") in the package and the
  benchmarks points at a section of docs/method.md, and each section's heading still names the topic the
  citations rely on (:data:`SECTION_TOPICS`): renumbering the page without the citations fails here.
* Every code name docs/method.md gives (a backticked dotted name such as ``method.acquisition.f_down``,
  relative to the ``sr4zct`` package) exists.
* Every Markdown link to a local file in README.md and docs/*.md resolves.

Fast: it reads text files and imports the named modules; nothing is trained.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
METHOD_DOC = REPO_ROOT / "docs" / "method.md"

#: What each numbered section of docs/method.md is about, as cited by the code: the heading must contain
#: the phrase (case-insensitive).
SECTION_TOPICS = {
    1: "geometry",
    2: "acquisition model",
    3: "inference",
    4: "training",
    5: "evaluation protocol",
    6: "reference figures",
}
#: The section every citing file must find under its number (a file that cites section 2 must get the
#: acquisition model), for the files whose topic is clear from their name.
CITED_BY = {
    "method/acquisition.py": {2, 5},
    "method/inference.py": {3},
    "method/fusion.py": {3},
    "method/training.py": {2, 4},
    "demo/evaluation.py": {5},
    "demo/reference.py": {2},
}
#: Where citations are looked for (relative to the repository root): Python files under these folders, and
#: README.md and docs/*.md.
CITING_TREES = ("SR4ZCTModule", "benchmarks")

_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
# "method.md, section 2", "method.md section 5", "method.md, sections 2 and 4", "method.md, sections 2, 3"
_CITATION = re.compile(r"method\.md,?\s+sections?\s+(\d+(?:\s*(?:,|and)\s*\d+)*)")
# any mention of a section next to method.md, to catch forms the pattern above would miss
_MENTION = re.compile(r"method\.md\W{0,3}\s*(?:§|sec)")
_CODE_NAME = re.compile(r"`((?:sr4zct\.)?(?:method|run|demo|io|batch|cli|volume|errors|system)(?:\.\w+)+)`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


def _sections() -> dict[int, str]:
    text = METHOD_DOC.read_text(encoding="utf-8")
    found: dict[int, str] = {}
    for number, title in _HEADING.findall(text):
        assert int(number) not in found, f"docs/method.md has two sections numbered {number}"
        found[int(number)] = title
    return found


def _citing_files() -> list[Path]:
    files = []
    for tree in CITING_TREES:
        files += sorted((REPO_ROOT / tree).rglob("*.py"))
    files = [f for f in files if ".venv" not in f.parts and "build" not in f.parts]
    return files + [f for f in _markdown_files() if f != METHOD_DOC]


def _citations() -> list[tuple[str, int, int]]:
    """(file relative to the repository root, line, cited section) for every citation."""
    out = []
    for path in _citing_files():
        rel = path.relative_to(REPO_ROOT).as_posix()
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in _CITATION.finditer(line):
                out += [(rel, lineno, int(n)) for n in re.findall(r"\d+", match.group(1))]
            if _MENTION.search(line) and not _CITATION.search(line):
                pytest.fail(f"{rel}:{lineno}: a method.md citation in a form this test does not read: {line}")
    return out


def test_method_doc_has_the_cited_sections_in_order():
    sections = _sections()
    assert sorted(sections) == list(range(1, len(sections) + 1)), (
        f"sections not numbered 1..n: {sorted(sections)}"
    )
    for number, topic in SECTION_TOPICS.items():
        assert number in sections, f"docs/method.md has no section {number} ({topic})"
        assert topic in sections[number].lower(), (
            f"docs/method.md section {number} is '{sections[number]}', but the code cites it for '{topic}': "
            "renumber the citations (or SECTION_TOPICS) with the sections"
        )


def test_every_citation_points_at_an_existing_section():
    sections = _sections()
    citations = _citations()
    cited_files = {rel for rel, _, _ in citations}
    # the pattern must keep finding the citations the method modules are known to carry
    for name in CITED_BY:
        assert f"SR4ZCTModule/sr4zct/{name}" in cited_files, f"no docs/method.md citation found in {name}"
    for rel, lineno, number in citations:
        assert number in sections, (
            f"{rel}:{lineno} cites docs/method.md section {number}, which does not exist"
        )
        assert number in SECTION_TOPICS, (
            f"{rel}:{lineno} cites section {number}, which has no topic in this test"
        )


def test_method_modules_cite_the_section_of_their_topic():
    by_file: dict[str, set[int]] = {}
    for rel, _, number in _citations():
        by_file.setdefault(rel, set()).add(number)
    for name, expected in CITED_BY.items():
        cited = by_file.get(f"SR4ZCTModule/sr4zct/{name}", set())
        assert cited and cited <= expected, (
            f"{name} cites docs/method.md sections {sorted(cited)}; its topics are in {sorted(expected)} "
            f"({', '.join(SECTION_TOPICS[n] for n in sorted(expected))})"
        )


def _attribute(obj: object, name: str) -> object:
    """``getattr``; a dataclass field without a default (not a class attribute) counts too."""
    if not hasattr(obj, name) and dataclasses.is_dataclass(obj):
        if name in {f.name for f in dataclasses.fields(obj)}:
            return None
    return getattr(obj, name)


def _resolve(dotted: str) -> object:
    """The object ``sr4zct.<dotted>`` names: the longest importable module prefix, then attributes."""
    parts = dotted.removeprefix("sr4zct.").split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module("sr4zct." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = _attribute(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_method_doc_names_only_code_that_exists():
    text = METHOD_DOC.read_text(encoding="utf-8")
    names = sorted(set(_CODE_NAME.findall(text)))
    assert len(names) >= 30, f"expected docs/method.md to name the functions of each step, found {names}"
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ModuleNotFoundError, AttributeError) as exc:
            missing.append(f"{name} ({exc})")
    assert not missing, "docs/method.md names code that does not exist: " + "; ".join(missing)


def _markdown_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def _local_links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    text = _INLINE_CODE.sub("", text)
    links = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor in the same page
        links.append(target)
    return links


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_local_markdown_links_resolve(path):
    broken = []
    for target in _local_links(path):
        file_part = target.split("#", 1)[0]
        if not (path.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(REPO_ROOT)} links to missing files: {broken}"


def test_link_check_sees_links():
    # guards the pattern: README links to the docs and shows a screenshot
    links = _local_links(REPO_ROOT / "README.md")
    assert "docs/architecture.md" in links
    assert any(link.endswith(".png") for link in links)
    assert "../SR4ZCTModule/sr4zct/method/acquisition.py" in _local_links(METHOD_DOC)
