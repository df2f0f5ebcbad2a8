"""Stand-in for the ``ctk`` module of Slicer's PythonQt: the CTK widgets the module's .ui uses, and
``ctkMessageBox`` (which ``slicer.util.messageBox`` shows), whose answers a test sets like a user would."""

from __future__ import annotations

from typing import Any

from .qt import QAbstractButton, QCheckBox, QComboBox, QDoubleSpinBox, QMessageBox, QWidget


class ctkCollapsibleButton(QAbstractButton):
    SIGNALS = ("contentsCollapsed(bool)",)
    PROPERTIES = ("collapsed", "collapsedHeight")
    DEFAULTS = {**QAbstractButton.DEFAULTS, "collapsed": False}


class ctkDoubleSpinBox(QDoubleSpinBox):
    pass


class ctkSliderWidget(QDoubleSpinBox):
    pass


class ctkCheckBox(QCheckBox):
    pass


class ctkComboBox(QComboBox):
    pass


class ctkPathLineEdit(QWidget):
    SIGNALS = ("currentPathChanged(QString)",)
    PROPERTIES = ("currentPath", "filters", "nameFilters")


class ctkMessageBox(QWidget):
    """A modal message box. ``exec_()`` records the box and returns the next queued answer.

    Tests queue what the user clicks with :meth:`answer` (``qt.QMessageBox.Ok``, ``Cancel``, ...); a box
    shown with no answer queued fails the test (a real one would wait for a click forever).
    """

    PROPERTIES = ("text", "windowTitle", "icon", "standardButtons", "detailedText", "informativeText",
                  "dontShowAgainSettingsKey", "dontShowAgainVisible")  # fmt: skip
    shown: list[dict[str, Any]] = []
    _answers: list[int] = []

    @classmethod
    def answer(cls, *buttons: int) -> None:
        cls._answers.extend(buttons)

    @classmethod
    def reset(cls) -> None:
        cls.shown.clear()
        cls._answers.clear()

    def setText(self, text: str) -> None:
        self.text = text

    def setStandardButtons(self, buttons: int) -> None:
        self.standardButtons = buttons

    def deleteLater(self) -> None:
        pass

    def exec_(self) -> int:
        record = {name: self._props.get(name) for name in self._all_properties() if name in self._props}
        ctkMessageBox.shown.append(record)
        if not ctkMessageBox._answers:
            raise AssertionError(
                f"a message box waits for a click that no test queued: {record.get('text')!r}"
            )
        return ctkMessageBox._answers.pop(0)

    exec = exec_


CTK_CLASSES = {
    cls.__name__: cls
    for cls in (
        ctkCollapsibleButton,
        ctkDoubleSpinBox,
        ctkSliderWidget,
        ctkCheckBox,
        ctkComboBox,
        ctkPathLineEdit,
        ctkMessageBox,
    )  # fmt: skip
}
__all__ = [*CTK_CLASSES, "QMessageBox"]
