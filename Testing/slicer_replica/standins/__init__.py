"""Stand-ins for what the PyPI package ``slicer-core`` (Slicer's real MRML, logics and ``slicer/util.py``)
lacks, to run ``SR4ZCTModule/SR4ZCT.py`` in the Slicer-replica environment.

:func:`install` sets up ``slicer`` as Slicer's application does at start-up: ``slicer.app``,
``slicer.mrmlScene`` (a real ``vtkMRMLScene``), ``slicer.modules``, optionally ``slicer.dicomDatabase``,
and the modules ``qt``, ``ctk``, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``,
``slicer.i18n``, ``SampleData`` and ``PyTorchUtils``; then it loads the module file the way Slicer does
(its folder on ``sys.path``, ``spec_from_file_location``). Everything else (``slicer.util``, the nodes,
storage, display, subject hierarchy, volumes and slice logics, ``vtk``) is Slicer's own code.

The stand-in modules are registered in ``sys.modules`` under Slicer's names; they are not a ``slicer/``
folder on the path, because slicer-core's ``slicer/__init__`` copies the public names of every module in
such a folder onto ``slicer`` (a stand-in ``util`` would replace the real ``slicer.util``).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import slicer

from . import application, ctk, extensions, mrml_widgets, parameter_node, qt, scripted
from .dicom_database import ctkDICOMDatabase

ROOT = Path(__file__).resolve().parents[3]
MODULE_DIR = ROOT / "SR4ZCTModule"
MODULE_FILE = MODULE_DIR / "SR4ZCT.py"
LAUNCHER_DIR = Path(__file__).resolve().parents[1] / "bin"


@dataclass
class Replica:
    slicer: types.ModuleType  # the real slicer package, set up like a running Slicer
    module: types.ModuleType  # the loaded SR4ZCT.py
    app: application.qSlicerApplication
    scene: object  # the real vtkMRMLScene
    sampleData: types.ModuleType
    pytorchCalls: list


def replica_slicer_version() -> tuple[int, int]:
    """The Slicer release whose Python packages this venv holds (run.sh sets SR4ZCT_REPLICA_PINS)."""
    major, _, minor = os.environ.get("SR4ZCT_REPLICA_PINS", "5.12").partition(".")
    return int(major), int(minor)


def _i18n() -> types.ModuleType:
    mod = types.ModuleType("slicer.i18n")

    def translate(context, text):
        return text

    def tr(text):
        return text

    def getContext(sourceFile=None):
        return "SR4ZCT"

    mod.translate, mod.tr, mod.getContext = translate, tr, getContext
    return mod


def install(
    monkeypatch,
    tmp_path: Path,
    *,
    dicom_database: ctkDICOMDatabase | None = None,
    torch_installed: bool | None = None,
    torch_install_succeeds: bool = True,
    pytorch_extension: bool = True,
    with_layout: bool = True,
    testing: bool = False,
    slicer_version: tuple[int, int] | None = None,
) -> Replica:
    """Set up a Slicer-like ``slicer`` (undone by ``monkeypatch``) and load ``SR4ZCT.py``.

    ``dicom_database=None`` leaves ``slicer.dicomDatabase`` unset (the DICOM module not loaded yet);
    ``pytorch_extension=False`` makes ``import PyTorchUtils`` fail (extension not installed).
    """
    ctk.ctkMessageBox.reset()
    qt.QTimer.instances.clear()
    qt.QApplication._cursors.clear()
    temp = tmp_path / "slicer-temp"
    temp.mkdir(parents=True, exist_ok=True)
    scene = slicer.vtkMRMLScene()
    cache = tmp_path / "slicer-cache"
    cache.mkdir(parents=True, exist_ok=True)
    app = application.qSlicerApplication(str(temp), scene, withLayout=with_layout, testing=testing,
                                          version=slicer_version or replica_slicer_version(), cachePath=str(cache))  # fmt: skip
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    if dicom_database is not None:
        monkeypatch.setattr(slicer, "dicomDatabase", dicom_database, raising=False)
    elif hasattr(slicer, "dicomDatabase"):
        monkeypatch.delattr(slicer, "dicomDatabase")
    parent = scripted.qSlicerScriptedLoadableModule(str(MODULE_FILE))
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(sr4zct=parent), raising=False)
    monkeypatch.setattr(slicer, "selfTests", {}, raising=False)
    monkeypatch.setattr(slicer, "qMRMLNodeComboBox", mrml_widgets.qMRMLNodeComboBox, raising=False)
    monkeypatch.setattr(slicer, "qMRMLWidget", mrml_widgets.qMRMLWidget, raising=False)

    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in scripted.__all__:
        setattr(slm, name, getattr(scripted, name))
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    for name in parameter_node.__all__:
        setattr(pnw, name, getattr(parameter_node, name))
    i18n = _i18n()
    pytorch_calls: list = []
    sample_data = extensions.make_sample_data()
    modules = {
        "slicer.ScriptedLoadableModule": slm,
        "slicer.parameterNodeWrapper": pnw,
        "slicer.i18n": i18n,
        "qt": qt,
        "ctk": ctk,
        "SampleData": sample_data,
        "DICOMLib": (dicomlib := extensions.make_dicomlib(tmp_path / "dicom-database")),
        "DICOMLib.DICOMUtils": dicomlib.DICOMUtils,
        "PyTorchUtils": extensions.make_pytorch_utils(torch_installed, torch_install_succeeds, pytorch_calls)
        if pytorch_extension
        else None,  # None in sys.modules: the import fails, as without the extension
    }
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for attr, mod in (("ScriptedLoadableModule", slm), ("parameterNodeWrapper", pnw), ("i18n", i18n)):
        monkeypatch.setattr(slicer, attr, mod, raising=False)

    # Load the module file as Slicer does (its folder is on sys.path; qSlicerScriptedUtils::loadSourceAsModule).
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    spec = importlib.util.spec_from_file_location("SR4ZCT", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "SR4ZCT", module)
    spec.loader.exec_module(module)
    return Replica(slicer, module, app, scene, sample_data, pytorch_calls)


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        return None


@contextlib.contextmanager
def without_torch(monkeypatch):
    """A Slicer without PyTorch: ``import torch`` fails and ``find_spec('torch')`` finds nothing."""
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    finder = _NoTorch()
    sys.meta_path.insert(0, finder)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, package=None: None if name.partition(".")[0] == "torch" else real_find_spec(name, package),
    )  # fmt: skip
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


__all__ = ["LAUNCHER_DIR", "MODULE_DIR", "Replica", "ctkDICOMDatabase", "install", "without_torch"]
