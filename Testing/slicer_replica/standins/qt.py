"""Stand-in for the ``qt`` module of Slicer's PythonQt: widgets as explicit classes, core classes from Qt.

The widget classes behave like PythonQt objects: Qt properties are Python attributes (``label.text = "x"``),
signals are connected with ``widget.connect("clicked(bool)", slot)``. Only the signals and properties
listed per class exist: a misspelt signal, property or method raises, so a typo in the module fails a test.
Non-GUI classes that Slicer's real ``slicer/util.py`` uses (``QDir``, ``QFile``, ``QFileInfo``, ``QLocale``,
``QDateTime``) are Qt's own, from Qt for Python (same C++ classes and methods PythonQt wraps).
``QUiLoader`` builds these widget classes from the real ``.ui`` file.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QDateTime, QDir, QFile, QFileInfo, QLocale  # noqa: F401 - re-exported as qt.*


def _call_slot(slot: Callable, args: tuple) -> None:
    """PythonQt calls a slot with as many of the signal's arguments as it accepts."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        slot(*args)
        return
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        slot(*args)
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    slot(*args[: len(positional)])


class QObject:
    SIGNALS: tuple[str, ...] = ("destroyed()",)
    PROPERTIES: tuple[str, ...] = ("objectName",)

    def __init__(self, parent: Any = None, **props: Any):
        object.__setattr__(self, "_props", {"objectName": ""})
        object.__setattr__(self, "_slots", {})
        object.__setattr__(self, "_dynamic", {})
        object.__setattr__(self, "_children", [])
        self._parent = parent
        for key, value in props.items():
            setattr(self, key, value)

    # PythonQt exposes Qt properties as attributes; only declared ones exist.
    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name in self._all_properties():
            self._set_property(name, value)
            return
        raise AttributeError(f"{type(self).__name__} has no Qt property {name!r}")

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed: serve declared Qt properties.
        props = object.__getattribute__(self, "_props")
        if name in type(self)._all_properties_cls():
            return props.get(name, type(self).DEFAULTS.get(name) if hasattr(type(self), "DEFAULTS") else None)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @classmethod
    def _all_properties_cls(cls) -> set[str]:
        names: set[str] = set()
        for klass in cls.__mro__:
            names.update(getattr(klass, "PROPERTIES", ()))
        return names

    def _all_properties(self) -> set[str]:
        return type(self)._all_properties_cls()

    @classmethod
    def _all_signals(cls) -> set[str]:
        names: set[str] = set()
        for klass in cls.__mro__:
            names.update(getattr(klass, "SIGNALS", ()))
        return names

    def _set_property(self, name: str, value: Any) -> None:
        self._props[name] = value

    # -- signals ----------------------------------------------------------------------------------
    def connect(self, signal: str, slot: Callable) -> bool:
        if signal not in self._all_signals():
            raise ValueError(f"{type(self).__name__} has no signal {signal!r}")
        self._slots.setdefault(signal, []).append(slot)
        return True

    def disconnect(self, signal: str, slot: Callable | None = None) -> bool:
        if signal not in self._all_signals():
            raise ValueError(f"{type(self).__name__} has no signal {signal!r}")
        if slot is None:
            self._slots.pop(signal, None)
        elif slot in self._slots.get(signal, []):
            self._slots[signal].remove(slot)
        return True

    def emit(self, signal: str, *args: Any) -> None:
        """Test helper: emit ``signal`` to its connected slots in connection order."""
        if signal not in self._all_signals():
            raise ValueError(f"{type(self).__name__} has no signal {signal!r}")
        for slot in list(self._slots.get(signal, [])):
            _call_slot(slot, args)

    def connections(self, signal: str) -> list[Callable]:
        return list(self._slots.get(signal, []))

    # -- dynamic properties -----------------------------------------------------------------------
    def property(self, name: str) -> Any:
        if name in self._all_properties():
            return getattr(self, name)
        return self._dynamic.get(name)

    def setProperty(self, name: str, value: Any) -> bool:
        if name in self._all_properties():
            setattr(self, name, value)
            return True
        self._dynamic[name] = value
        return False

    def setObjectName(self, name: str) -> None:
        self._props["objectName"] = name

    @builtins.property
    def objectName(self) -> str:
        """A property in PythonQt (``w.objectName == "qSlicerMainWindow"``, as slicer.util compares it)."""
        return self._props["objectName"]

    @builtins.property
    def name(self) -> str:
        """PythonQt exposes ``objectName`` also as ``name`` (used by childWidgetVariables)."""
        return self._props["objectName"]

    def children(self) -> list[QObject]:
        return list(self._children)

    def findChildren(self, cls: type | None = None) -> list[QObject]:
        out = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                out.append(child)
            out.extend(child.findChildren(cls))
        return out


class QWidget(QObject):
    PROPERTIES = ("enabled", "visible", "toolTip", "styleSheet", "minimumHeight", "maximumHeight")
    DEFAULTS = {"enabled": True, "visible": True, "toolTip": "", "styleSheet": ""}

    def __init__(self, parent: Any = None, **props: Any):
        super().__init__(parent, **props)
        self._props.setdefault("enabled", True)
        self._props.setdefault("visible", True)
        self._props.setdefault("toolTip", "")

    def setEnabled(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def isEnabled(self) -> bool:
        return bool(self.enabled)

    def setVisible(self, visible: bool) -> None:
        self.visible = bool(visible)

    def isVisible(self) -> bool:
        return bool(self.visible)

    def show(self) -> None:
        self.visible = True

    def hide(self) -> None:
        self.visible = False

    def setToolTip(self, text: str) -> None:
        self.toolTip = text

    def isWidgetType(self) -> bool:
        return True

    def setLayout(self, layout: Any) -> None:
        self._layout = layout

    def layout(self) -> Any:
        return getattr(self, "_layout", None)


class QLabel(QWidget):
    PROPERTIES = ("text", "wordWrap", "alignment")
    DEFAULTS = {**QWidget.DEFAULTS, "text": "", "wordWrap": False}

    def setText(self, text: str) -> None:
        self.text = str(text)


class QAbstractButton(QWidget):
    SIGNALS = ("clicked()", "clicked(bool)", "toggled(bool)", "pressed()", "released()")
    PROPERTIES = ("text", "checkable", "checked", "icon")
    DEFAULTS = {**QWidget.DEFAULTS, "text": "", "checkable": False, "checked": False}

    def _set_property(self, name: str, value: Any) -> None:
        old = self._props.get(name)
        super()._set_property(name, value)
        if name == "checked" and bool(old) != bool(value):
            self.emit("toggled(bool)", bool(value))

    def setText(self, text: str) -> None:
        self.text = str(text)

    def setChecked(self, checked: bool) -> None:
        self.checked = bool(checked)

    def isChecked(self) -> bool:
        return bool(self.checked)

    def click(self) -> None:
        """Like a user click: ignored when disabled, toggles checkable buttons, emits clicked."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self.emit("clicked()")
        self.emit("clicked(bool)", bool(self.checked))


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    DEFAULTS = {**QAbstractButton.DEFAULTS, "checkable": True}

    def __init__(self, parent: Any = None, **props: Any):
        super().__init__(parent, **props)
        self._props["checkable"] = True


class QLineEdit(QWidget):
    SIGNALS = ("textChanged(QString)", "editingFinished()", "returnPressed()")
    PROPERTIES = ("text", "placeholderText", "readOnly")
    DEFAULTS = {**QWidget.DEFAULTS, "text": "", "placeholderText": "", "readOnly": False}

    def _set_property(self, name: str, value: Any) -> None:
        old = self._props.get(name, "")
        super()._set_property(name, value)
        if name == "text" and old != value:
            self.emit("textChanged(QString)", value)

    def setText(self, text: str) -> None:
        self.text = str(text)


class QAbstractSpinBox(QWidget):
    PROPERTIES = ("suffix", "prefix", "specialValueText", "readOnly", "keyboardTracking")


class QDoubleSpinBox(QAbstractSpinBox):
    SIGNALS = ("valueChanged(double)", "editingFinished()")
    PROPERTIES = ("value", "minimum", "maximum", "decimals", "singleStep")
    DEFAULTS = {
        **QWidget.DEFAULTS,
        "value": 0.0,
        "minimum": 0.0,
        "maximum": 99.99,
        "decimals": 2,
        "singleStep": 1.0,
    }

    def _set_property(self, name: str, value: Any) -> None:
        if name == "value":
            lo = self._props.get("minimum", 0.0)
            hi = self._props.get("maximum", 99.99)
            value = round(min(max(float(value), lo), hi), int(self._props.get("decimals", 2)))
            old = self._props.get("value", 0.0)
            self._props["value"] = value
            if old != value:
                self.emit("valueChanged(double)", value)
            return
        super()._set_property(name, value)

    def setValue(self, value: float) -> None:
        self.value = value

    def setRange(self, minimum: float, maximum: float) -> None:
        self.minimum = float(minimum)
        self.maximum = float(maximum)

    def setMinimum(self, minimum: float) -> None:
        self.minimum = float(minimum)

    def setMaximum(self, maximum: float) -> None:
        self.maximum = float(maximum)

    def setDecimals(self, decimals: int) -> None:
        self.decimals = int(decimals)


class QSpinBox(QAbstractSpinBox):
    SIGNALS = ("valueChanged(int)", "editingFinished()")
    PROPERTIES = ("value", "minimum", "maximum", "singleStep")
    DEFAULTS = {**QWidget.DEFAULTS, "value": 0, "minimum": 0, "maximum": 99, "singleStep": 1}

    def _set_property(self, name: str, value: Any) -> None:
        if name == "value":
            value = int(min(max(int(value), self._props.get("minimum", 0)), self._props.get("maximum", 99)))
            old = self._props.get("value", 0)
            self._props["value"] = value
            if old != value:
                self.emit("valueChanged(int)", value)
            return
        super()._set_property(name, value)

    def setValue(self, value: int) -> None:
        self.value = value

    def setRange(self, minimum: int, maximum: int) -> None:
        self.minimum = int(minimum)
        self.maximum = int(maximum)

    def setMinimum(self, minimum: int) -> None:
        self.minimum = int(minimum)

    def setMaximum(self, maximum: int) -> None:
        self.maximum = int(maximum)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged(int)", "currentTextChanged(QString)", "activated(int)")
    PROPERTIES = ("currentIndex", "currentText", "count", "editable")
    DEFAULTS = {**QWidget.DEFAULTS, "currentIndex": -1, "editable": False}

    def __init__(self, parent: Any = None, **props: Any):
        super().__init__(parent, **props)
        self._items: list[str] = []
        self._props["currentIndex"] = -1

    def _set_property(self, name: str, value: Any) -> None:
        if name == "currentIndex":
            value = int(value)
            if not -1 <= value < len(self._items):
                return  # Qt ignores out-of-range indices
            old = self._props.get("currentIndex", -1)
            self._props["currentIndex"] = value
            if old != value:
                self.emit("currentIndexChanged(int)", value)
                self.emit("currentTextChanged(QString)", self.currentText)
            return
        if name == "currentText":
            if value in self._items:
                self.currentIndex = self._items.index(value)
            return
        if name == "count":
            raise AttributeError("QComboBox.count is read-only")
        super()._set_property(name, value)

    def __getattr__(self, name: str) -> Any:
        if name == "currentText":
            i = self._props.get("currentIndex", -1)
            return self._items[i] if 0 <= i < len(self._items) else ""
        if name == "count":
            return len(self._items)
        return super().__getattr__(name)

    def addItem(self, text: str, userData: Any = None) -> None:
        self._items.append(str(text))
        if len(self._items) == 1:
            self.currentIndex = 0

    def addItems(self, texts: list[str]) -> None:
        for t in texts:
            self.addItem(t)

    def clear(self) -> None:
        self._items = []
        self._props["currentIndex"] = -1

    def itemText(self, index: int) -> str:
        return self._items[index]

    def findText(self, text: str) -> int:
        return self._items.index(text) if text in self._items else -1

    def setCurrentIndex(self, index: int) -> None:
        self.currentIndex = index


class QProgressBar(QWidget):
    SIGNALS = ("valueChanged(int)",)
    PROPERTIES = ("value", "minimum", "maximum", "textVisible", "format")
    DEFAULTS = {**QWidget.DEFAULTS, "value": 0, "minimum": 0, "maximum": 100, "textVisible": True}

    def setValue(self, value: int) -> None:
        if not isinstance(value, int):
            raise TypeError(f"QProgressBar.setValue(int) got {type(value).__name__}")
        self.value = value

    def setRange(self, minimum: int, maximum: int) -> None:
        self.minimum = int(minimum)
        self.maximum = int(maximum)

    def setMaximum(self, maximum: int) -> None:
        self.maximum = int(maximum)

    def reset(self) -> None:
        self.value = self.minimum


class QPlainTextEdit(QWidget):
    SIGNALS = ("textChanged()",)
    PROPERTIES = ("plainText", "readOnly", "maximumBlockCount", "placeholderText")
    DEFAULTS = {**QWidget.DEFAULTS, "plainText": "", "readOnly": False, "maximumBlockCount": 0}

    def appendPlainText(self, text: str) -> None:
        current = self._props.get("plainText", "")
        self._props["plainText"] = (current + "\n" if current else "") + str(text)
        self.emit("textChanged()")

    def setPlainText(self, text: str) -> None:
        self._props["plainText"] = str(text)

    def toPlainText(self) -> str:
        return self._props.get("plainText", "")

    def clear(self) -> None:
        self._props["plainText"] = ""

    def setReadOnly(self, readOnly: bool) -> None:
        self.readOnly = bool(readOnly)


class QTimer(QObject):
    SIGNALS = ("timeout()",)
    PROPERTIES = ("interval", "singleShot", "active")
    DEFAULTS = {"interval": 0, "singleShot": False, "active": False}

    instances: list[QTimer] = []

    def __init__(self, parent: Any = None, **props: Any):
        super().__init__(parent, **props)
        QTimer.instances.append(self)

    def setInterval(self, msec: int) -> None:
        self.interval = int(msec)

    def start(self, msec: int | None = None) -> None:
        if msec is not None:
            self.interval = int(msec)
        self._props["active"] = True

    def stop(self) -> None:
        self._props["active"] = False

    def isActive(self) -> bool:
        return bool(self._props.get("active"))

    def setSingleShot(self, singleShot: bool) -> None:
        self.singleShot = bool(singleShot)

    def fire(self) -> None:
        """Test helper: one timeout, as the event loop would deliver it while the timer runs."""
        if self.isActive():
            self.emit("timeout()")

    @staticmethod
    def singleShot_(msec: int, callback: Callable) -> None:  # pragma: no cover - not used by the module
        callback()


class Qt:
    WaitCursor = 3
    ArrowCursor = 0


class QMessageBox:
    """Enum values of QMessageBox (StandardButton, Icon) that slicer.util passes to ctk.ctkMessageBox."""

    NoButton = 0x0
    Ok = 0x400
    Cancel = 0x400000
    Yes = 0x4000
    No = 0x10000
    Critical = 3
    Warning = 2
    Information = 1
    Question = 4


class QVBoxLayout(QObject):
    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self._widgets: list[Any] = []

    def addWidget(self, widget: Any) -> None:
        self._widgets.append(widget)

    def count(self) -> int:
        return len(self._widgets)

    def addStretch(self, stretch: int = 0) -> None:
        pass


QT_CLASSES = {
    cls.__name__: cls
    for cls in (
        QWidget,
        QLabel,
        QPushButton,
        QToolButton,
        QCheckBox,
        QLineEdit,
        QDoubleSpinBox,
        QSpinBox,
        QComboBox,
        QProgressBar,
        QPlainTextEdit,
    )
}


class QCursor:
    def __init__(self, shape: int = 0):
        self._shape = shape

    def shape(self) -> int:
        return self._shape


class QApplication(QObject):
    """The static cursor API of QApplication (slicer.util's wait-cursor helpers use it)."""

    _cursors: list[QCursor] = []

    @staticmethod
    def setOverrideCursor(cursor: Any) -> None:
        QApplication._cursors.append(cursor if isinstance(cursor, QCursor) else QCursor(int(cursor)))

    @staticmethod
    def restoreOverrideCursor() -> None:
        if QApplication._cursors:
            QApplication._cursors.pop()

    @staticmethod
    def overrideCursor() -> QCursor | None:
        return QApplication._cursors[-1] if QApplication._cursors else None


class QUiLoader(QObject):
    """Builds the stand-in widgets from a Qt Designer file (classes without a stand-in raise)."""

    def load(self, device: Any, parentWidget: Any = None) -> QWidget:
        from .ui_file import load_ui

        return load_ui(device.fileName())
