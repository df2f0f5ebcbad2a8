"""Stand-ins for 3D Slicer's Python API, so that ``SR4ZCTModule/SR4ZCT.py`` can be tested without Slicer.

Use :func:`install` (from a fixture, with pytest's ``monkeypatch``): it puts modules named ``slicer``,
``slicer.util``, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n``,
``qt``, ``ctk``, ``vtk``, ``SampleData`` and (optionally) ``PyTorchUtils`` into ``sys.modules`` and
loads the module file the way Slicer does (``spec_from_file_location`` + ``sys.modules[name]``).

Every stand-in is an explicit class or function with the name and signature of Slicer's real API
(checked against Slicer's source, tag v5.10 / main). No catch-all attribute access: calling an API that
does not exist, or with a misspelt keyword, fails.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import itertools
import logging
import os
import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import mrml, qtstubs

MODULE_DIR = Path(__file__).resolve().parents[3] / "SR4ZCTModule"
MODULE_FILE = MODULE_DIR / "SR4ZCT.py"


# ---- slicer.app ------------------------------------------------------------------------------------


class qSlicerApplication(qtstubs.QObject):
    SIGNALS = ("startupCompleted()", "aboutToQuit()")
    PROPERTIES = ("overrideCursorDepth", "processEventsCalls", "testing")  # recorders, not Qt properties

    def __init__(self, temporaryPath: str, withLayout: bool = True):
        super().__init__()
        self._temporaryPath = temporaryPath
        self._layoutManager = mrml.qSlicerLayoutManager() if withLayout else None
        self.overrideCursorDepth = 0
        self.processEventsCalls = 0
        self.testing = False

    @property
    def temporaryPath(self) -> str:
        return self._temporaryPath

    def layoutManager(self) -> mrml.qSlicerLayoutManager | None:
        return self._layoutManager

    def processEvents(self) -> None:
        self.processEventsCalls += 1

    def setOverrideCursor(self, cursor: Any) -> None:
        self.overrideCursorDepth += 1

    def restoreOverrideCursor(self) -> None:
        self.overrideCursorDepth -= 1

    def testingEnabled(self) -> bool:
        return self.testing


# ---- dicom database fed from real DICOM headers --------------------------------------------------------


class ctkDICOMDatabase:
    """``instanceValue`` / ``fileForInstance`` / ``fileValue`` answered from real files' headers (pydicom)."""

    def __init__(self, files: list[Path]):
        import pydicom

        self._files: dict[str, str] = {}
        self._headers: dict[str, Any] = {}
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            uid = str(ds.SOPInstanceUID)
            self._files[uid] = str(f)
            self._headers[str(f)] = ds
        self.calls: list[tuple[str, str, str]] = []

    @property
    def instanceUids(self) -> list[str]:
        return list(self._files)

    @staticmethod
    def _tag(tag: str) -> int:
        group, element = tag.split(",")
        if len(group) != 4 or len(element) != 4:
            raise ValueError(f"DICOM tag must be given as 'gggg,eeee', got {tag!r}")
        return (int(group, 16) << 16) | int(element, 16)

    def _value(self, ds: Any, tag: str) -> str:
        key = self._tag(tag)
        if key not in ds:
            return ""
        value = ds[key].value
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value)

    def fileForInstance(self, sopInstanceUID: str) -> str:
        return self._files.get(sopInstanceUID, "")

    def fileValue(self, fileName: str, tag: str) -> str:
        self.calls.append(("fileValue", fileName, tag))
        ds = self._headers.get(fileName)
        return "" if ds is None else self._value(ds, tag)

    def instanceValue(self, sopInstanceUID: str, tag: str) -> str:
        self.calls.append(("instanceValue", sopInstanceUID, tag))
        f = self._files.get(sopInstanceUID)
        return "" if f is None else self._value(self._headers[f], tag)


# ---- slicer.util ---------------------------------------------------------------------------------------


@dataclass
class UtilState:
    """What the ``slicer.util`` stand-ins recorded, plus canned answers for dialogs."""

    errors: list[str] = field(default_factory=list)
    errorDialogs: list[tuple[str, dict]] = field(default_factory=list)
    confirmations: list[str] = field(default_factory=list)
    confirmAnswer: bool = True
    saved: list[tuple[str, str]] = field(default_factory=list)
    loaded: list[tuple[str, dict]] = field(default_factory=list)
    delayDisplays: list[str] = field(default_factory=list)
    resetSliceViewsCalls: int = 0
    tempRoot: Path | None = None
    tempCounter: itertools.count = field(default_factory=lambda: itertools.count(1))


def _make_util(slicer_mod: types.ModuleType, state: UtilState) -> types.ModuleType:
    util = types.ModuleType("slicer.util")

    class VTKObservationMixin:
        def __init__(self) -> None:
            self.Observations: list[tuple[Any, int, Callable, int]] = []

        def addObserver(self, obj, event, method, priority=0.0, group="none"):
            tag = obj.AddObserver(event, method, priority)
            self.Observations.append((obj, event, method, tag))

        def removeObserver(self, obj, event, method):
            for o in list(self.Observations):
                if o[0] is obj and o[1] == event and o[2] == method:
                    obj.RemoveObserver(o[3])
                    self.Observations.remove(o)

        def removeObservers(self, method=None):
            for o in list(self.Observations):
                if method is None or o[2] == method:
                    o[0].RemoveObserver(o[3])
                    self.Observations.remove(o)

        def hasObserver(self, obj, event, method):
            return any(o[0] is obj and o[1] == event and o[2] == method for o in self.Observations)

    def loadUI(path):
        return load_ui(path)

    def childWidgetVariables(widget):
        ui = type("", (), {})()
        for child in widget.findChildren():
            if hasattr(child, "name") and child.name:
                setattr(ui, child.name, child)
        return ui

    def tempDirectory(key="__SlicerTemp__", tempDir=None, includeDateTime=True):
        root = Path(tempDir) if tempDir else Path(slicer_mod.app.temporaryPath)
        name = f"{key}{next(state.tempCounter):04d}" if includeDateTime else key
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def saveNode(node, filename, properties={}):  # noqa: B006 - Slicer's signature
        state.saved.append((node.GetID(), filename))
        write_volume_node(node, filename)
        return True

    def loadVolume(filename, properties={}, returnNode=False):  # noqa: B006 - Slicer's signature
        state.loaded.append((filename, dict(properties)))
        allowed = {"name", "labelmap", "singleFile", "center", "discardOrientation", "autoWindowLevel",
                   "show", "colorNodeID", "fileNames"}  # fmt: skip
        unknown = set(properties) - allowed
        if unknown:
            raise ValueError(f"loadVolume: unknown properties {sorted(unknown)}")
        node = read_volume_node(filename, properties.get("name") or Path(filename).name.split(".")[0])
        slicer_mod.mrmlScene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        storage = mrml.vtkMRMLVolumeArchetypeStorageNode()  # as Slicer: the node remembers its file
        storage.SetFileName(filename)
        slicer_mod.mrmlScene.AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
        return node

    def arrayFromVolume(volumeNode):
        return volumeNode.GetImageData()._array

    def updateVolumeFromArray(volumeNode, narray):
        volumeNode.SetAndObserveImageData(mrml.vtkImageData(np.array(narray)))

    def addVolumeFromArray(narray, ijkToRAS=None, name=None, nodeClassName=None):
        node = mrml.vtkMRMLScene.CLASSES[nodeClassName or "vtkMRMLScalarVolumeNode"]()
        node._name = name or "Volume"
        if ijkToRAS is not None:
            if isinstance(ijkToRAS, np.ndarray):
                m = mrml.vtkMatrix4x4()
                for r in range(4):
                    for c in range(4):
                        m.SetElement(r, c, ijkToRAS[r, c])
                ijkToRAS = m
            node.SetIJKToRASMatrix(ijkToRAS)
        node.SetAndObserveImageData(mrml.vtkImageData(np.array(narray)))
        slicer_mod.mrmlScene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        return node

    def setSliceViewerLayers(background="keep-current", foreground="keep-current", label="keep-current",
                             foregroundOpacity=None, labelOpacity=None, fit=False, rotateToVolumePlane=False):  # fmt: skip
        mrml.record("setSliceViewerLayers", background, fit)

    def resetSliceViews():
        state.resetSliceViewsCalls += 1

    @contextlib.contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
        # Like Slicer: the exception is shown (here: recorded) and not re-raised.
        try:
            if waitCursor:
                slicer_mod.app.setOverrideCursor(qtstubs.Qt.WaitCursor)
            yield
            if waitCursor:
                slicer_mod.app.restoreOverrideCursor()
        except Exception as exc:
            if waitCursor:
                slicer_mod.app.restoreOverrideCursor()
            state.errors.append(f"{message}: {exc}")
            logging.error(f"{message}: {exc}")
            if not show:
                raise

    def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
        allowed = {"detailedText", "informativeText", "dontShowAgainSettingsKey"}
        if set(kwargs) - allowed:
            raise TypeError(f"errorDisplay: unexpected keywords {sorted(set(kwargs) - allowed)}")
        state.errorDialogs.append((text, kwargs))

    def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
        state.delayDisplays.append(text)

    def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
        state.confirmations.append(text)
        return state.confirmAnswer

    def confirmYesNoDisplay(text, windowTitle=None, parent=None, **kwargs):
        state.confirmations.append(text)
        return state.confirmAnswer

    def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs):
        state.delayDisplays.append(message)

    def getNode(pattern="*", index=0, scene=None):
        node = (scene or slicer_mod.mrmlScene).GetFirstNodeByName(pattern)
        if node is None:
            raise slicer_mod.util.MRMLNodeNotFoundException(
                f"could not find nodes in the scene by name '{pattern}'"
            )
        return node

    class MRMLNodeNotFoundException(Exception):
        pass

    for fn in (loadUI, childWidgetVariables, tempDirectory, saveNode, loadVolume, arrayFromVolume,
               updateVolumeFromArray, addVolumeFromArray, setSliceViewerLayers, resetSliceViews,
               tryWithErrorDisplay, errorDisplay, infoDisplay, confirmOkCancelDisplay, confirmYesNoDisplay,
               delayDisplay, getNode):  # fmt: skip
        setattr(util, fn.__name__, fn)
    util.VTKObservationMixin = VTKObservationMixin
    util.MRMLNodeNotFoundException = MRMLNodeNotFoundException
    util.state = state
    return util


# ---- volume files (what saveNode/loadVolume do in Slicer, via SimpleITK) -------------------------------

_LPS = np.diag([-1.0, -1.0, 1.0])


def write_volume_node(node: mrml.vtkMRMLVolumeNode, filename: str, compress: bool = True) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(node.GetImageData()._array))  # KJI -> x=I
    image.SetSpacing([float(s) for s in node.GetSpacing()])
    image.SetOrigin([float(v) for v in _LPS @ np.asarray(node.GetOrigin())])
    image.SetDirection([float(v) for v in (_LPS @ node._directions).ravel()])
    sitk.WriteImage(image, filename, useCompression=compress)


def read_volume_node(filename: str, name: str) -> mrml.vtkMRMLScalarVolumeNode:
    import SimpleITK as sitk

    image = sitk.ReadImage(filename)
    node = mrml.vtkMRMLScalarVolumeNode()
    node._name = name
    node.SetSpacing(*image.GetSpacing())
    node.SetOrigin(*(_LPS @ np.asarray(image.GetOrigin())))
    node._directions = _LPS @ np.asarray(image.GetDirection()).reshape(3, 3)
    node.SetAndObserveImageData(mrml.vtkImageData(sitk.GetArrayFromImage(image)))
    return node


# ---- .ui loading into stub widgets -------------------------------------------------------------------


def _ui_value(prop: ET.Element) -> Any:
    value = prop[0]
    kind = value.tag
    if kind == "string":
        return value.text or ""
    if kind == "bool":
        return value.text == "true"
    if kind == "number":
        return int(value.text)
    if kind == "double":
        return float(value.text)
    if kind == "stringlist":
        return [s.text or "" for s in value]
    if kind == "enum":
        return value.text
    return value.text


def load_ui(path: str | os.PathLike) -> qtstubs.QWidget:
    """Build stub widgets from a Qt Designer file (classes unknown to the stand-ins raise)."""
    classes = {**qtstubs.QT_CLASSES, **qtstubs.CTK_CLASSES, **qtstubs.MRML_WIDGET_CLASSES}
    root = ET.parse(path).getroot()

    def build(elem: ET.Element, parent: qtstubs.QObject | None) -> qtstubs.QObject:
        cls_name = elem.get("class")
        if cls_name not in classes:
            raise ValueError(f"{path}: widget class {cls_name!r} has no stand-in")
        widget = classes[cls_name](parent)
        widget.setObjectName(elem.get("name", ""))
        for prop in elem.findall("property"):
            name = prop.get("name")
            if prop.get("stdset") == "0":
                widget.setProperty(name, _ui_value(prop))
            elif name in ("geometry", "sizePolicy", "orientation", "sizeHint"):
                continue
            else:
                setattr(widget, name, _ui_value(prop))
        _add_children(elem, widget)
        return widget

    def _add_children(elem: ET.Element, widget: qtstubs.QObject) -> None:
        for child in elem:
            if child.tag == "widget":
                widget._children.append(build(child, widget))
            elif child.tag in ("layout", "item"):
                _add_children(child, widget)

    top_widget = build(root.find("widget"), None)
    by_name = {w.name: w for w in [top_widget, *top_widget.findChildren()]}
    for conn in root.iter("connection"):
        sender = by_name[conn.findtext("sender")]
        receiver = by_name[conn.findtext("receiver")]
        slot = conn.findtext("slot").split("(")[0]
        sender.connect(conn.findtext("signal"), getattr(receiver, slot))
    return top_widget


# ---- slicer.ScriptedLoadableModule ------------------------------------------------------------------


class qSlicerScriptedLoadableModule:
    """The ``parent`` a ScriptedLoadableModule gets (properties Slicer's C++ module exposes)."""

    def __init__(self) -> None:
        self.title = ""
        self.categories: list[str] = []
        self.dependencies: list[str] = []
        self.contributors: list[str] = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.isEntered = False


def _make_scripted_loadable_module(slicer_mod: types.ModuleType) -> types.ModuleType:
    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent
            self.moduleName = self.__class__.__name__

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Widget"):
                self.moduleName = self.moduleName[:-6]
            self.parent = parent if parent is not None else qSlicerScriptedLoadableModule()
            self.layout = qtstubs.QVBoxLayout()
            self.developerMode = False

        def resourcePath(self, filename):
            module_file = sys.modules[type(self).__module__].__file__
            return os.path.join(os.path.dirname(module_file), "Resources", filename)

        def setup(self):
            pass

        def cleanup(self):
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Logic"):
                self.moduleName = self.moduleName[:-5]
            self.isSingletonParameterNode = True

        def getParameterNode(self):
            scene = slicer_mod.mrmlScene
            for node in scene._nodes:
                if (
                    isinstance(node, mrml.vtkMRMLScriptedModuleNode)
                    and node.GetAttribute("ModuleName") == self.moduleName
                ):
                    return node
            node = mrml.vtkMRMLScriptedModuleNode()
            node._name = self.moduleName
            node.SetAttribute("ModuleName", self.moduleName)
            return scene.AddNode(node)

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, requestedDelay=None, msec=None):
            slicer_mod.util.delayDisplay(message)

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):  # fmt: skip
        setattr(mod, cls.__name__, cls)
    mod.__all__ = [c for c in mod.__dict__ if c.startswith("Scripted")]
    return mod


# ---- slicer.parameterNodeWrapper -----------------------------------------------------------------------


class Validator:
    def validate(self, value: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class WithinRange(Validator):
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Minimum(Validator):
    def __init__(self, minimum):
        self.minimum = minimum

    def validate(self, value):
        if value < self.minimum:
            raise ValueError(f"Value must be at least {self.minimum}, is {value}")


class Maximum(Validator):
    def __init__(self, maximum):
        self.maximum = maximum

    def validate(self, value):
        if value > self.maximum:
            raise ValueError(f"Value must be at most {self.maximum}, is {value}")


class Choice(Validator):
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value must be one of {self.choices}, is {value!r}")


class _Connector:
    """Two-way binding of one widget and one parameter (mirrors Slicer's guiConnectors table)."""

    def __init__(self, widget, datatype, validators, signal, read, write):
        self.widget, self.datatype, self.validators = widget, datatype, validators
        self.signal, self.read, self.write = signal, read, write


def _make_connector(widget, name: str, hint: Any, param_types: dict) -> _Connector:
    base, validators = _split(hint)
    W = type(widget)
    mrml_base = isinstance(base, type) and issubclass(base, mrml.vtkMRMLNode)
    if mrml_base and W is qtstubs.qMRMLNodeComboBox:
        return _Connector(widget, base, validators, "currentNodeChanged(vtkMRMLNode*)",
                          lambda: widget.currentNode(), widget.setCurrentNode)  # fmt: skip
    if base is bool and W in (qtstubs.QCheckBox, qtstubs.ctkCheckBox):
        return _Connector(widget, base, validators, "toggled(bool)",
                          lambda: bool(widget.checked), lambda v: setattr(widget, "checked", bool(v)))  # fmt: skip
    if base in (float, int) and W in (
        qtstubs.QDoubleSpinBox,
        qtstubs.ctkDoubleSpinBox,
        qtstubs.ctkSliderWidget,
    ):
        for v in validators:
            if isinstance(v, WithinRange):
                widget.setRange(v.minimum, v.maximum)
        return _Connector(widget, base, validators, "valueChanged(double)",
                          lambda: base(widget.value), lambda v: setattr(widget, "value", float(v)))  # fmt: skip
    if base is int and W is qtstubs.QSpinBox:
        for v in validators:
            if isinstance(v, WithinRange):
                widget.setRange(v.minimum, v.maximum)
        return _Connector(widget, base, validators, "valueChanged(int)",
                          lambda: int(widget.value), lambda v: setattr(widget, "value", int(v)))  # fmt: skip
    if W in (qtstubs.QComboBox, qtstubs.ctkComboBox) and base in (str, int, float, bool):
        choice = next((v for v in validators if isinstance(v, Choice)), None)
        if choice is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        widget.clear()
        for c in choice.choices:
            widget.addItem(str(c))

        def write_choice(value):
            widget.currentIndex = choice.choices.index(value)

        return _Connector(widget, base, validators, "currentIndexChanged(int)",
                          lambda: choice.choices[widget.currentIndex], write_choice)  # fmt: skip
    if base is str and W is qtstubs.QLineEdit:
        return _Connector(widget, base, validators, "textChanged(QString)",
                          lambda: widget.text, lambda v: setattr(widget, "text", str(v)))  # fmt: skip
    if base is str and W is qtstubs.QLabel:
        return _Connector(widget, base, validators, None, lambda: widget.text,
                          lambda v: setattr(widget, "text", str(v)))  # fmt: skip
    raise RuntimeError(
        f"Unable to create GUI connector from datatype '{hint}' to widget type '{W}'. (parameter {name!r})"
    )


def _split(hint: Any) -> tuple[Any, list]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return base, list(extras)
    return hint, []


def _make_parameter_node_wrapper_module() -> types.ModuleType:
    mod = types.ModuleType("slicer.parameterNodeWrapper")
    _MISSING = object()

    def parameterNodeWrapper(classtype):
        hints = typing.get_type_hints(classtype, include_extras=True)
        defaults = {}
        for name, hint in hints.items():
            base, validators = _split(hint)
            default = classtype.__dict__.get(name, _MISSING)
            if default is _MISSING:
                if isinstance(base, type) and issubclass(base, mrml.vtkMRMLNode):
                    default = None
                elif base in (bool, int, float, str):
                    default = base()
                elif isinstance(base, type) and issubclass(base, enum.Enum):
                    default = next(iter(base))
                else:
                    raise RuntimeError(f"parameterNodeWrapper stand-in: no default for {name}: {hint}")
            for v in validators:
                if default is not None:
                    v.validate(default)
            defaults[name] = default

        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            object.__setattr__(self, "_values", dict(defaults))
            object.__setattr__(self, "_guis", {})
            object.__setattr__(self, "_nextTag", itertools.count(1))
            object.__setattr__(self, "_updating", False)

        def __getattr__(self, name):
            if name in hints:
                return self._values[name]
            raise AttributeError(f"{classtype.__name__} has no parameter {name!r}")

        def __setattr__(self, name, value):
            if name not in hints:
                raise AttributeError(f"{classtype.__name__} has no parameter {name!r}")
            base, validators = _split(hints[name])
            if value is not None:
                if base is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if isinstance(base, type) and not isinstance(value, base):
                    raise TypeError(f"{name}: expected {base.__name__}, got {type(value).__name__}")
                for v in validators:
                    v.validate(value)
            elif not (isinstance(base, type) and issubclass(base, mrml.vtkMRMLNode)):
                raise TypeError(f"{name} cannot be None")
            if self._values[name] is value or self._values[name] == value:
                return
            self._values[name] = value
            self.parameterNode.Modified()

        def connectGui(self, gui):
            mapping = {}
            for widget in gui.__dict__.values():
                pname = widget.property("SlicerParameterName")
                if pname:
                    if pname not in hints:
                        raise ValueError(
                            f"Widget {widget.name} names parameter {pname!r}, which does not exist"
                        )
                    mapping[pname] = _make_connector(widget, pname, hints[pname], hints)
            tag = next(self._nextTag)
            for pname, conn in mapping.items():
                object.__setattr__(self, "_updating", True)
                try:
                    if self._values[pname] is not None or conn.datatype is not bool:
                        conn.write(self._values[pname])
                finally:
                    object.__setattr__(self, "_updating", False)

                def changed(*args, pname=pname, conn=conn):
                    if not self._updating:
                        setattr(self, pname, conn.read())

                if conn.signal:
                    conn.widget.connect(conn.signal, changed)
                conn.changed = changed

            def update_gui(caller, event):
                object.__setattr__(self, "_updating", True)
                try:
                    for pname, conn in mapping.items():
                        if self._values[pname] is not None or conn.datatype is not bool:
                            conn.write(self._values[pname])
                finally:
                    object.__setattr__(self, "_updating", False)

            obs = self.parameterNode.AddObserver(mrml.vtkCommand.ModifiedEvent, update_gui)
            self._guis[tag] = (mapping, obs)
            return tag

        def disconnectGui(self, tag):
            if tag in self._guis:
                mapping, obs = self._guis.pop(tag)
                for conn in mapping.values():
                    if conn.signal:
                        conn.widget.disconnect(conn.signal, conn.changed)
                self.parameterNode.RemoveObserver(obs)

        def AddObserver(self, event, callback, priority=0.0):
            return self.parameterNode.AddObserver(event, callback, priority)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

        def __bool__(self):
            return True

        namespace = {
            "__init__": __init__,
            "__getattr__": __getattr__,
            "__setattr__": __setattr__,
            "connectGui": connectGui,
            "disconnectGui": disconnectGui,
            "AddObserver": AddObserver,
            "RemoveObserver": RemoveObserver,
            "__bool__": __bool__,
            "allParameters": dict(hints),
            "__doc__": classtype.__doc__,
            "__module__": classtype.__module__,
        }
        return type(classtype.__name__, (), namespace)

    mod.parameterNodeWrapper = parameterNodeWrapper
    for cls in (Validator, WithinRange, Minimum, Maximum, Choice):
        setattr(mod, cls.__name__, cls)
    return mod


# ---- SampleData and PyTorchUtils -----------------------------------------------------------------------


def _make_sample_data(slicer_mod: types.ModuleType) -> types.ModuleType:
    mod = types.ModuleType("SampleData")

    class SampleDataSource:
        def __init__(self, sampleName=None, sampleDescription=None, uris=None, fileNames=None, nodeNames=None,
                     checksums=None, loadFiles=None, customDownloader=None, thumbnailFileName=None,
                     loadFileTypes=None, loadFileProperties=None, loadFileType=None):  # fmt: skip
            self.sampleName = sampleName
            if isinstance(uris, str):
                uris, fileNames, nodeNames = [uris], [fileNames], [nodeNames]
            self.uris, self.fileNames, self.nodeNames = uris, fileNames, nodeNames
            self.customDownloader = customDownloader
            self.thumbnailFileName = thumbnailFileName

    class SampleDataLogic:
        sources: dict[str, list[SampleDataSource]] = {}

        @staticmethod
        def registerCustomSampleDataCategory(category, title=None):
            SampleDataLogic.sources.setdefault(category, [])

        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                           nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                           loadFileTypes=None, loadFiles=None, loadFileProperties={},  # noqa: B006
                                           checksums=None, loadFileType=None):  # fmt: skip
            source = SampleDataSource(sampleName=sampleName, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
                                      checksums=checksums, loadFiles=loadFiles, customDownloader=customDownloader,
                                      thumbnailFileName=thumbnailFileName, loadFileTypes=loadFileTypes,
                                      loadFileProperties=loadFileProperties, loadFileType=loadFileType)  # fmt: skip
            SampleDataLogic.sources.setdefault(category, []).append(source)

    mod.SampleDataLogic = SampleDataLogic
    mod.SampleDataSource = SampleDataSource
    return mod


def _make_pytorch_utils(torch_installed: bool, install_result: bool, calls: list) -> types.ModuleType:
    mod = types.ModuleType("PyTorchUtils")
    state = {"installed": torch_installed}

    class PyTorchUtilsLogic:
        def __init__(self):
            self._torch = None

        @staticmethod
        def torchInstalled():
            calls.append(("torchInstalled",))
            return state["installed"]

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):  # fmt: skip
            calls.append(("installTorch", askConfirmation, forceComputationBackend, torchVersionRequirement))
            if not install_result:
                return None
            state["installed"] = True
            return types.SimpleNamespace(__version__="2.5.0")

    mod.PyTorchUtilsLogic = PyTorchUtilsLogic
    return mod


# ---- installation -------------------------------------------------------------------------------------


@dataclass
class SlicerStubs:
    slicer: types.ModuleType
    module: types.ModuleType  # the loaded SR4ZCT.py
    util: UtilState
    pytorchCalls: list
    sampleData: types.ModuleType


def install(
    monkeypatch,
    tmp_path: Path,
    *,
    dicom_files: list[Path] | None = None,
    dicom_database: ctkDICOMDatabase | None = None,
    torch_installed: bool | None = True,
    torch_install_succeeds: bool = True,
    with_layout: bool = True,
) -> SlicerStubs:
    """Install the stand-ins in ``sys.modules`` (undone by ``monkeypatch``) and load ``SR4ZCT.py``.

    ``torch_installed=None`` leaves the PyTorch extension out (``import PyTorchUtils`` fails).
    """
    mrml.CALLS.clear()
    qtstubs.QTimer.instances.clear()
    slicer_mod = types.ModuleType("slicer")
    slicer_mod.__path__ = []  # a package, so that "slicer.util" imports resolve to the entries below
    temp = tmp_path / "slicer-temp"
    temp.mkdir(parents=True, exist_ok=True)
    slicer_mod.app = qSlicerApplication(str(temp), withLayout=with_layout)
    slicer_mod.mrmlScene = mrml.vtkMRMLScene()
    slicer_mod.dicomDatabase = dicom_database or (ctkDICOMDatabase(dicom_files) if dicom_files else None)
    for name in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLScalarVolumeDisplayNode",
                 "vtkMRMLLinearTransformNode", "vtkMRMLGridTransformNode", "vtkMRMLScriptedModuleNode",
                 "vtkMRMLLayoutNode", "vtkMRMLSubjectHierarchyNode", "vtkMRMLVolumeNode",
                 "vtkMRMLVolumeArchetypeStorageNode"):  # fmt: skip
        setattr(slicer_mod, name, getattr(mrml, name))
    slicer_mod.qMRMLNodeComboBox = qtstubs.qMRMLNodeComboBox
    state = UtilState(tempRoot=temp)
    util = _make_util(slicer_mod, state)
    slicer_mod.util = util
    slm = _make_scripted_loadable_module(slicer_mod)
    slicer_mod.ScriptedLoadableModule = slm
    pnw = _make_parameter_node_wrapper_module()
    slicer_mod.parameterNodeWrapper = pnw
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    slicer_mod.i18n = i18n
    slicer_mod.modules = types.SimpleNamespace()

    qt_mod = types.ModuleType("qt")
    for name in ("QObject", "QWidget", "QLabel", "QPushButton", "QCheckBox", "QLineEdit", "QDoubleSpinBox",
                 "QSpinBox", "QComboBox", "QProgressBar", "QPlainTextEdit", "QTimer", "Qt", "QMessageBox",
                 "QVBoxLayout", "QToolButton"):  # fmt: skip
        setattr(qt_mod, name, getattr(qtstubs, name))
    ctk_mod = types.ModuleType("ctk")
    for name, cls in qtstubs.CTK_CLASSES.items():
        setattr(ctk_mod, name, cls)
    vtk_mod = types.ModuleType("vtk")
    for name in ("vtkCommand", "vtkMatrix4x4", "vtkImageData", "vtkObject"):
        setattr(vtk_mod, name, getattr(mrml, name))

    pytorch_calls: list = []
    sample_data = _make_sample_data(slicer_mod)
    modules = {
        "slicer": slicer_mod,
        "slicer.util": util,
        "slicer.ScriptedLoadableModule": slm,
        "slicer.parameterNodeWrapper": pnw,
        "slicer.i18n": i18n,
        "qt": qt_mod,
        "ctk": ctk_mod,
        "vtk": vtk_mod,
        "SampleData": sample_data,
    }
    if torch_installed is not None:
        modules["PyTorchUtils"] = _make_pytorch_utils(torch_installed, torch_install_succeeds, pytorch_calls)
    else:
        monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails like a missing extension
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)

    # Load the module file as Slicer does (qSlicerScriptedUtils::loadSourceAsModule).
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    spec = importlib.util.spec_from_file_location("SR4ZCT", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "SR4ZCT", module)
    spec.loader.exec_module(module)
    return SlicerStubs(slicer=slicer_mod, module=module, util=state, pytorchCalls=pytorch_calls,
                       sampleData=sample_data)  # fmt: skip


def volume_node_from_array(
    slicer_mod: types.ModuleType,
    array_kji: np.ndarray,
    *,
    spacing=(0.75, 0.75, 2.0),
    origin=(0.0, 0.0, 0.0),
    directions=None,
    name: str = "CT",
) -> mrml.vtkMRMLScalarVolumeNode:
    """Add a scalar volume node (voxels in KJI order) to the stand-in scene, like a loaded NRRD."""
    node = mrml.vtkMRMLScalarVolumeNode()
    node._name = name
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    node._directions = np.eye(3) if directions is None else np.asarray(directions, dtype=float)
    node.SetAndObserveImageData(mrml.vtkImageData(np.asarray(array_kji)))
    slicer_mod.mrmlScene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    return node


__all__ = ["SlicerStubs", "ctkDICOMDatabase", "install", "load_ui", "volume_node_from_array"]
