"""Stand-in for ``slicer.parameterNodeWrapper`` (Base/Python/slicer/parameterNodeWrapper/ in Slicer).

``@parameterNodeWrapper`` turns an annotated class into a wrapper over a real ``vtkMRMLScriptedModuleNode``.
Values live in the node, written the way Slicer's serializers write them: numbers and strings with
``SetParameter(name, str(value))``, booleans as ``"True"``/``"False"``, MRML nodes as node references
(``SetNodeReferenceID``), so they are saved with the scene. Defaults are written when the wrapper is made
and the node does not have the parameter yet. Validators (``WithinRange``, ``Minimum``, ``Maximum``,
``Choice``) run on every write. ``connectGui`` binds widgets carrying a ``SlicerParameterName`` dynamic
property, with the connector Slicer picks for the (type, widget class) pair; a pair Slicer has no
connector for raises, as in Slicer.
"""

from __future__ import annotations

import itertools
import typing
from typing import Any

import slicer
import vtk

from . import ctk, mrml_widgets, qt


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


def _split(hint: Any) -> tuple[Any, list]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        return base, [e for e in extras if isinstance(e, Validator)]
    return hint, []


def _is_node_type(base: Any) -> bool:
    return isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode)


# ---- serializers ---------------------------------------------------------------------------------------


def _write(node, name: str, base: Any, value: Any) -> None:
    if _is_node_type(base):
        node.SetParameter(name, "")
        node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
    elif base is bool:
        node.SetParameter(name, "True" if value else "False")
    else:
        node.SetParameter(name, str(value))


def _read(node, name: str, base: Any) -> Any:
    if _is_node_type(base):
        return node.GetNodeReference(name)
    text = node.GetParameter(name)
    if base is bool:
        return text == "True"
    return base(text)


def _is_in(node, name: str, base: Any) -> bool:
    return node.GetParameterNames() is not None and name in node.GetParameterNames()


# ---- GUI connectors ------------------------------------------------------------------------------------


class _Connector:
    def __init__(self, widget, signal, read, write):
        self.widget, self.signal, self.read, self.write = widget, signal, read, write
        self.slot = None


def _connector(widget, name: str, base: Any, validators: list) -> _Connector:
    W = type(widget)
    if _is_node_type(base) and W is mrml_widgets.qMRMLNodeComboBox:
        return _Connector(
            widget, "currentNodeChanged(vtkMRMLNode*)", widget.currentNode, widget.setCurrentNode
        )
    if base is bool and W in (qt.QCheckBox, ctk.ctkCheckBox):
        return _Connector(widget, "toggled(bool)", lambda: bool(widget.checked),
                          lambda v: setattr(widget, "checked", bool(v)))  # fmt: skip
    if base in (float, int) and W in (qt.QDoubleSpinBox, ctk.ctkDoubleSpinBox, ctk.ctkSliderWidget):
        if base is int:  # as Slicer's QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector: whole numbers
            widget.decimals = 0
        for v in validators:
            if isinstance(v, WithinRange):
                widget.setRange(v.minimum, v.maximum)
        return _Connector(widget, "valueChanged(double)", lambda: base(widget.value),
                          lambda v: setattr(widget, "value", float(v)))  # fmt: skip
    if base is int and W is qt.QSpinBox:
        for v in validators:
            if isinstance(v, WithinRange):
                widget.setRange(v.minimum, v.maximum)
        return _Connector(widget, "valueChanged(int)", lambda: int(widget.value),
                          lambda v: setattr(widget, "value", int(v)))  # fmt: skip
    if W in (qt.QComboBox, ctk.ctkComboBox) and base in (str, int, float, bool):
        choice = next((v for v in validators if isinstance(v, Choice)), None)
        if choice is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        widget.clear()
        for c in choice.choices:
            widget.addItem(str(c))

        def write_choice(value):
            widget.currentIndex = choice.choices.index(value)

        return _Connector(widget, "currentIndexChanged(int)", lambda: choice.choices[widget.currentIndex],
                          write_choice)  # fmt: skip
    if base is str and W is qt.QLineEdit:
        return _Connector(widget, "textChanged(QString)", lambda: widget.text,
                          lambda v: setattr(widget, "text", str(v)))  # fmt: skip
    if base is str and W is qt.QLabel:
        return _Connector(widget, None, lambda: widget.text, lambda v: setattr(widget, "text", str(v)))
    raise RuntimeError(
        f"Unable to create GUI connector from datatype '{base}' to widget type '{W}'. ({name})"
    )


# ---- the decorator ------------------------------------------------------------------------------------

_MISSING = object()


def parameterNodeWrapper(classtype):
    hints = typing.get_type_hints(classtype, include_extras=True)
    params: dict[str, tuple[Any, list, Any]] = {}
    for name, hint in hints.items():
        base, validators = _split(hint)
        default = classtype.__dict__.get(name, _MISSING)
        if default is _MISSING:
            if _is_node_type(base):
                default = None
            elif base in (bool, int, float, str):
                default = base()
            else:
                raise RuntimeError(f"parameterNodeWrapper stand-in: no default for {name}: {hint}")
        if default is not None:
            for v in validators:
                v.validate(default)
        params[name] = (base, validators, default)

    def __init__(self, parameterNode):
        object.__setattr__(self, "parameterNode", parameterNode)
        object.__setattr__(self, "_guis", {})
        object.__setattr__(self, "_tags", itertools.count(1))
        object.__setattr__(self, "_updatingGui", False)
        for name, (base, _validators, default) in params.items():
            if not _is_in(parameterNode, name, base):
                _write(parameterNode, name, base, default)

    def __getattr__(self, name):
        if name in params:
            return _read(self.parameterNode, name, params[name][0])
        raise AttributeError(f"{classtype.__name__} has no parameter {name!r}")

    def __setattr__(self, name, value):
        if name not in params:
            raise AttributeError(f"{classtype.__name__} has no parameter {name!r}")
        base, validators, _default = params[name]
        if value is None:
            if not _is_node_type(base):
                raise ValueError(f"{name}: value must not be None")
        else:
            if base is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, base):
                raise TypeError(f"{name}: expected {base.__name__}, got {type(value).__name__}")
            for v in validators:
                v.validate(value)
        _write(self.parameterNode, name, base, value)

    def connectGui(self, gui):
        mapping = {}
        for widget in vars(gui).values():
            pname = widget.property("SlicerParameterName") if hasattr(widget, "property") else None
            if pname:
                if pname not in params:
                    raise ValueError(f"Widget names parameter {pname!r}, which does not exist")
                base, validators, _default = params[pname]
                mapping[pname] = _connector(widget, pname, base, validators)
        tag = next(self._tags)

        def update_gui(caller=None, event=None):
            object.__setattr__(self, "_updatingGui", True)
            try:
                for pname, conn in mapping.items():
                    value = getattr(self, pname)
                    if value is not None or not _is_node_type(params[pname][0]):
                        conn.write(value)
                    else:
                        conn.write(None)
            finally:
                object.__setattr__(self, "_updatingGui", False)

        for pname, conn in mapping.items():

            def changed(*args, pname=pname, conn=conn):
                if not self._updatingGui:
                    setattr(self, pname, conn.read())

            conn.slot = changed
            if conn.signal:
                conn.widget.connect(conn.signal, changed)
        update_gui()
        observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, update_gui)
        self._guis[tag] = (mapping, observer)
        return tag

    def disconnectGui(self, tag):
        if tag in self._guis:
            mapping, observer = self._guis.pop(tag)
            for conn in mapping.values():
                if conn.signal:
                    conn.widget.disconnect(conn.signal, conn.slot)
            self.parameterNode.RemoveObserver(observer)

    def AddObserver(self, event, callback, priority=0.0):
        return self.parameterNode.AddObserver(event, callback, priority)

    def RemoveObserver(self, tag):
        self.parameterNode.RemoveObserver(tag)

    namespace = {
        "__init__": __init__,
        "__getattr__": __getattr__,
        "__setattr__": __setattr__,
        "connectGui": connectGui,
        "disconnectGui": disconnectGui,
        "AddObserver": AddObserver,
        "RemoveObserver": RemoveObserver,
        "allParameters": {name: hints[name] for name in params},
        "__doc__": classtype.__doc__,
        "__module__": classtype.__module__,
    }
    return type(classtype.__name__, (), namespace)


__all__ = ["Choice", "Maximum", "Minimum", "Validator", "WithinRange", "parameterNodeWrapper"]
