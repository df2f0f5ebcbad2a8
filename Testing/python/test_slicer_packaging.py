"""Extension packaging and the module's .ui, checked without Slicer.

* every file of the module folder is listed in its CMakeLists (Slicer packages nothing else);
* the Extensions Index entry and the top-level CMake metadata are complete and consistent;
* icons are 128x128 PNG, the screenshot and LICENSE exist;
* the real .ui loads with PySide6's QUiLoader; every ``self.ui.<name>`` the module uses exists with the
  right class; every SlicerParameterName is a parameter-node field;
* SR4ZCT.py is clean under ruff for Python 3.10 and 3.12 (Slicer 5.10+ ships 3.12).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "SR4ZCTModule"
MODULE_FILE = MODULE_DIR / "SR4ZCT.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SR4ZCT.ui"
CATALOG = ROOT / "SR4ZCTExtension" / "SR4ZCT.json"
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def _load_sync_script():
    spec = importlib.util.spec_from_file_location(
        "sync_module_cmake", ROOT / "Testing" / "Slicer" / "sync_module_cmake.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _module_files() -> set[str]:
    files = set()
    for path in MODULE_DIR.rglob("*"):
        rel = path.relative_to(MODULE_DIR)
        if not path.is_file() or SKIP_PARTS.intersection(rel.parts) or path.suffix in (".pyc", ".pyo"):
            continue
        if any(part.endswith(".egg-info") for part in rel.parts) or rel.as_posix() == "CMakeLists.txt":
            continue
        files.add(rel.as_posix())
    return files


def _cmake_listed() -> set[str]:
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    name = re.search(r"set\(MODULE_NAME (\w+)\)", text).group(1)
    text = text.replace("${MODULE_NAME}", name)
    return _load_sync_script().listed_files(text)


# ---- module CMakeLists -----------------------------------------------------------------------------------


def test_every_module_file_is_listed_in_the_module_cmakelists():
    missing = sorted(_module_files() - _cmake_listed())
    assert not missing, (
        "files Slicer would not package (run: python Testing/Slicer/sync_module_cmake.py): "
        + ", ".join(missing)
    )


def test_every_file_listed_in_the_module_cmakelists_exists():
    absent = sorted(f for f in _cmake_listed() if not (MODULE_DIR / f).is_file())
    assert not absent, f"listed in SR4ZCTModule/CMakeLists.txt but absent: {absent}"


def test_sync_script_renders_exactly_the_package_files(tmp_path):
    sync = _load_sync_script()
    text = (
        "set(MODULE_PYTHON_SCRIPTS\n  # BEGIN sr4zct python files\n  stale.py\n  # END sr4zct python files\n  )\n"
        + (
            "set(MODULE_PYTHON_RESOURCES\n  # BEGIN sr4zct resource files\n  # END sr4zct resource files\n  )\n"
        )
    )
    pkg = tmp_path / "sr4zct"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    for f in ("__init__.py", "io/__init__.py", "data.json", "__pycache__/x.cpython-311.pyc"):
        (pkg / f).write_text("")
    scripts, resources = sync.package_files(tmp_path)
    assert scripts == ["sr4zct/__init__.py", "sr4zct/io/__init__.py"]
    assert resources == ["sr4zct/data.json"]
    out = sync.render(text, scripts, resources)
    assert "stale.py" not in out
    assert sync.listed_files(out) == {"sr4zct/__init__.py", "sr4zct/io/__init__.py", "sr4zct/data.json"}


def test_module_cmakelists_builds_a_scripted_module_with_its_selftest():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME SR4ZCT)" in text
    assert "slicerMacroBuildScriptedModule(" in text
    assert "WITH_GENERIC_TESTS" in text
    assert re.search(r"slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text)


# ---- extension metadata ------------------------------------------------------------------------------


def _cmake_set(text: str, name: str) -> str:
    """A variable's value, with ``${EXTENSION_REPOSITORY_URL}`` and ``${EXTENSION_RAW_URL}`` expanded as CMake
    does (the raw URL: the repository's ``main`` on raw.githubusercontent.com)."""
    match = re.search(rf'set\({name}\s+"([^"]*)"', text)
    assert match, f"{name} is not set in CMakeLists.txt"
    value = match.group(1)
    if name != "EXTENSION_REPOSITORY_URL" and "${EXTENSION_" in value:
        repository = _cmake_set(text, "EXTENSION_REPOSITORY_URL")
        raw = repository.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main"
        value = value.replace("${EXTENSION_REPOSITORY_URL}", repository).replace("${EXTENSION_RAW_URL}", raw)
    return value


def test_the_repository_url_is_one_value():
    text = (ROOT / "CMakeLists.txt").read_text()
    repository = _cmake_set(text, "EXTENSION_REPOSITORY_URL")
    assert re.fullmatch(r"https://github\.com/[\w.-]+/Slicer[\w.-]+", repository)
    assert (
        'string(REPLACE "https://github.com/" "https://raw.githubusercontent.com/" EXTENSION_RAW_URL' in text
    )
    assert _cmake_set(text, "EXTENSION_HOMEPAGE").startswith(repository)
    assert json.loads(CATALOG.read_text())["scm_url"] == repository
    assert f'REPOSITORY_URL = "{repository}"' in MODULE_FILE.read_text()
    # no other spelling of a GitHub repository of this project anywhere in the extension's files
    for path in (ROOT / "CMakeLists.txt", MODULE_FILE, CATALOG, ROOT / "SR4ZCTExtension" / "README.md"):
        for url in re.findall(
            r"https://(?:raw\.githubusercontent|github)\.com/[\w.-]+/[\w.-]+", path.read_text()
        ):
            assert "Slicer/" in url or url.endswith(repository.split("github.com/")[1]), (path.name, url)


def test_the_sample_phantom_is_what_its_script_makes(tmp_path):
    import importlib.util as util

    import SimpleITK as sitk

    spec = util.spec_from_file_location("make_sample_data", ROOT / "Resources" / "make_sample_data.py")
    script = util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shipped = sitk.ReadImage(str(script.SAMPLE_PATH))
    made = sitk.ReadImage(str(script.write_sample(tmp_path / "made.mha")))
    assert sitk.GetArrayViewFromImage(shipped).tolist() == sitk.GetArrayViewFromImage(made).tolist()
    assert shipped.GetSpacing() == made.GetSpacing() == (0.75, 0.75, 2.0)
    assert shipped.GetOrigin() == made.GetOrigin() and shipped.GetPixelID() == sitk.sitkInt16
    assert shipped.GetMetaData("sr4zct_slice_thickness_mm") == "3"
    assert script.SAMPLE_PATH.stat().st_size < 2_000_000


def test_top_level_cmakelists_has_the_extension_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    # the Slicer 5.10 extension template's first line (Utilities/Templates/Extensions/Default on 5.10)
    assert text.startswith("cmake_minimum_required(VERSION 3.20.6...3.22.6 FATAL_ERROR)\n")
    assert re.search(r"^project\(SR4ZCT\)", text, re.M)
    assert _cmake_set(text, "EXTENSION_CATEGORY") == "Filtering"
    assert _cmake_set(text, "EXTENSION_DEPENDS") == "PyTorch"
    assert len(_cmake_set(text, "EXTENSION_DESCRIPTION")) > 80
    assert re.fullmatch(r".+ \(.+\)|[^()]+", _cmake_set(text, "EXTENSION_CONTRIBUTORS"))
    assert _cmake_set(text, "EXTENSION_HOMEPAGE").startswith("https://")
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(SR4ZCTModule)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):  # fmt: skip
        assert line in text
    # icon and screenshot URLs point at files of this repository
    urls = [_cmake_set(text, "EXTENSION_ICONURL"), *_cmake_set(text, "EXTENSION_SCREENSHOTURLS").split()]
    assert len(urls) >= 2
    for url in urls:
        assert url.startswith("https://raw.githubusercontent.com/")
        repo_path = url.split("/main/", 1)[1]
        assert (ROOT / repo_path).is_file(), f"{url} -> {repo_path} is not in the repository"


def test_extensions_index_entry():
    assert CATALOG.name == "SR4ZCT.json"  # must equal project() in CMakeLists.txt
    entry = json.loads(CATALOG.read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}  # fmt: skip
    assert set(entry) <= allowed
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
        r"slicer-extension-catalog-entry-schema-v1\.0\.\d\.json#",
        entry["$schema"],
    )
    assert entry["category"] == "Filtering"
    assert entry["build_dependencies"] == ["PyTorch"]
    assert entry["build_subdirectory"] == "."
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    repo = entry["scm_url"].rstrip("/").rsplit("/", 1)[1]
    assert entry["scm_url"].startswith("https://github.com/")
    assert repo.startswith("Slicer") and not CATALOG.stem.startswith("Slicer")
    # the homepage names the same repository
    assert repo in (ROOT / "CMakeLists.txt").read_text()


def test_extensions_index_entry_is_formatted_as_the_index_prettier_does():
    # The index's prettier check: 2-space indent, every array one item a line, final newline.
    text = CATALOG.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert '"build_dependencies": [\n    "PyTorch"\n  ]' in text


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Run the test suite", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip()
    ci_last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_last == block
    assert "Testing/slicer_replica/run.sh" in block  # the Slicer-replica tests are part of it


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("path", ["Resources/SR4ZCT.png", "SR4ZCTModule/Resources/Icons/SR4ZCT.png"])
def test_icons_are_128_px_png(path):
    assert _png_size(ROOT / path) == (128, 128)


def test_screenshot_and_license():
    width, height = _png_size(ROOT / "Resources" / "Screenshot1.png")
    assert width >= 600 and height >= 300
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text


# ---- the .ui file and the module's use of it -----------------------------------------------------------


def _ui_classes() -> dict[str, str]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def _ui_names_used_by_module() -> set[str]:
    return set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))


def _parameter_fields() -> dict[str, str]:
    """The parameter node's fields and their kinds: the module's own (``MODULE_FIELDS`` in SR4ZCT.py) and
    the panel's options (``sr4zct.app.panel_options``, from which the module builds the rest)."""
    from sr4zct.app.panel_options import panel_fields

    tree = ast.parse(MODULE_FILE.read_text())
    own = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "MODULE_FIELDS")
    fields = {key.value: ast.unparse(value.elts[0]) for key, value in zip(own.keys, own.values, strict=True)}
    for field in panel_fields():
        fields[field.name] = "choice" if field.choices else field.kind.__name__
    return fields


# How the module uses each widget determines the class it needs (PythonQt API of that class).
EXPECTED_CLASSES = {
    "applyButton": "QPushButton",
    "detectDevicesButton": "QPushButton",
    "inputSelector": "qMRMLNodeComboBox",
    "thicknessSpinBox": "QDoubleSpinBox",
    "spacingSpinBox": "QDoubleSpinBox",
    "progressBar": "QProgressBar",
    "logTextEdit": "QPlainTextEdit",
    "statusLabel": "QLabel",
    "warningLabel": "QLabel",
    "deviceInfoLabel": "QLabel",
    "sourceValueLabel": "QLabel",
    "inPlaneValueLabel": "QLabel",
    "slicesValueLabel": "QLabel",
    "overlapValueLabel": "QLabel",
}

# Slicer's parameterNodeWrapper GUI connectors: parameter type -> widget classes it can bind.
CONNECTABLE = {
    "vtkMRMLScalarVolumeNode": {"qMRMLNodeComboBox"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "ctkDoubleSpinBox", "qMRMLSliderWidget", "qMRMLSpinBox"},
    "int": {"QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget"},
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton"},
    "str": {"QLineEdit", "QLabel", "QTextEdit"},
    "choice": {"QComboBox", "ctkComboBox"},
}


def test_every_ui_name_the_module_uses_exists_with_the_right_class():
    classes = _ui_classes()
    used = _ui_names_used_by_module()
    assert used, "the module uses no self.ui widgets?"
    missing = sorted(used - set(classes))
    assert not missing, f"SR4ZCT.py uses widgets absent from SR4ZCT.ui: {missing}"
    for name in used:
        if name in EXPECTED_CLASSES:
            assert classes[name] == EXPECTED_CLASSES[name], f"{name} is a {classes[name]}"
    assert set(EXPECTED_CLASSES) <= used  # the table above is not stale


def test_every_slicer_parameter_name_is_a_parameter_node_field_with_a_fitting_widget():
    fields = _parameter_fields()
    root = ET.parse(UI_FILE).getroot()
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "SlicerParameterName must be a dynamic property"
                bound[prop.findtext("string")] = widget.get("class")
    unknown = sorted(set(bound) - set(fields))
    assert not unknown, f"SlicerParameterName values that are not parameter node fields: {unknown}"
    assert set(fields) - set(bound) == {"outputVolume"}, "every input parameter has a widget"
    for name, widget_class in bound.items():
        annotation = fields[name]
        assert widget_class in CONNECTABLE[annotation], f"{name}: {annotation} cannot bind to {widget_class}"


@pytest.fixture(scope="module")
def qt_app():
    widgets = pytest.importorskip("PySide6.QtWidgets")
    app = widgets.QApplication.instance() or widgets.QApplication([])
    return app


def test_ui_loads_with_qt_designer_loader(qt_app):
    from PySide6.QtCore import QFile, Signal
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QToolButton, QWidget

    # Slicer-only classes get plain placeholders; everything else must be a real Qt class.
    class qMRMLWidget(QWidget):
        mrmlSceneChanged = Signal(object)

    class qMRMLNodeComboBox(QWidget):
        pass

    class ctkCollapsibleButton(QToolButton):
        pass

    loader = QUiLoader()
    for cls in (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton):
        loader.registerCustomWidget(cls)
    ui_file = QFile(str(UI_FILE))
    assert ui_file.open(QFile.ReadOnly)
    top = loader.load(ui_file)
    ui_file.close()
    assert top is not None, loader.errorString()
    loaded = {w.objectName(): w for w in top.findChildren(QWidget)}
    for name, cls in _ui_classes().items():
        if name == top.objectName():
            continue
        assert name in loaded, f"{name} did not load"
        assert type(loaded[name]).__name__ == cls, f"{name}: {type(loaded[name]).__name__} != {cls}"
    for name in _ui_names_used_by_module():
        assert name in loaded
    assert loaded["applyButton"].text() == "Enhance through-plane"
    assert loaded["advancedCollapsibleButton"].property("collapsed") is True
    for name, field in (
        ("thicknessSpinBox", "thicknessMm"),
        ("presetComboBox", "preset"),
        ("inputSelector", "inputVolume"),
    ):
        assert loaded[name].property("SlicerParameterName") == field


# ---- code quality --------------------------------------------------------------------------------------


def test_module_compiles_for_python_312_syntax():
    # ast with feature_version catches syntax newer than Slicer's interpreter would accept.
    source = MODULE_FILE.read_text()
    ast.parse(source, feature_version=(3, 10))
    compile(source, str(MODULE_FILE), "exec")
    assert sys.version_info >= (3, 10)


# ---- documentation ----------------------------------------------------------------------------------


def _class_methods(tree: ast.Module, name: str) -> dict[str, ast.FunctionDef]:
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def test_console_example_in_docs_matches_the_logic_api():
    from sr4zct.run.background import BackgroundJob
    from sr4zct.run.options import EnhanceOptions

    doc = (ROOT / "docs" / "slicer.md").read_text()
    assert doc.startswith("## Using it in 3D Slicer")
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/slicer.md has no Python console example"
    example = ast.parse(blocks[0])
    module = ast.parse(MODULE_FILE.read_text())
    logic = _class_methods(module, "SR4ZCTLogic")
    own_args = {a.arg for a in logic["enhance"].args.args + logic["enhance"].args.kwonlyargs}
    slicer_names = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), n) for n in EnhanceOptions.names()}
    calls = [n for n in ast.walk(example) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    checked = set()
    for call in calls:
        owner = call.func.value.id if isinstance(call.func.value, ast.Name) else None
        if owner == "logic":
            assert call.func.attr in logic, f"SR4ZCTLogic has no method {call.func.attr}"
            if call.func.attr == "enhance":
                unknown = {k.arg for k in call.keywords} - own_args - slicer_names
                assert not unknown, f"docs use unknown enhance() arguments {unknown}"
            checked.add(call.func.attr)
        elif owner == "job":
            assert hasattr(BackgroundJob, call.func.attr), f"BackgroundJob has no method {call.func.attr}"
            checked.add("job." + call.func.attr)
    assert {"enhance", "readGeometry", "waitForResult", "job.poll"} <= checked
    # the prose lists the logic's own keyword arguments, and only names enhance() accepts
    listed = set(re.findall(r"`(\w+)`", doc.split("`enhance()` takes", 1)[1].split("\n\n", 1)[0]))
    assert own_args - {"self", "inputVolumeNode", "options", "changes"} <= listed
    assert listed - {"options"} <= own_args | slicer_names | {"progressCallback"}


def test_icon_renderer_makes_a_128_px_png(tmp_path):
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "Resources" / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    make_figures.render_icon(tmp_path / "icon.png")
    assert _png_size(tmp_path / "icon.png") == (128, 128)
