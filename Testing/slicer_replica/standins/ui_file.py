"""Building the stand-in widgets from a Qt Designer ``.ui`` file (what ``qt.QUiLoader().load`` does)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from . import ctk, mrml_widgets, qt


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
    return value.text


def load_ui(path: str | os.PathLike) -> qt.QWidget:
    """The widget tree of ``path``; its ``<connections>`` are connected as Qt's loader does."""
    classes = {**qt.QT_CLASSES, **ctk.CTK_CLASSES, **mrml_widgets.MRML_WIDGET_CLASSES}
    root = ET.parse(path).getroot()

    def build(elem: ET.Element, parent: qt.QObject | None) -> qt.QObject:
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
        add_children(elem, widget)
        return widget

    def add_children(elem: ET.Element, widget: qt.QObject) -> None:
        for child in elem:
            if child.tag == "widget":
                widget._children.append(build(child, widget))
            elif child.tag in ("layout", "item"):
                add_children(child, widget)

    top_widget = build(root.find("widget"), None)
    by_name = {w.name: w for w in [top_widget, *top_widget.findChildren()]}
    for conn in root.iter("connection"):
        sender = by_name[conn.findtext("sender")]
        receiver = by_name[conn.findtext("receiver")]
        slot = conn.findtext("slot").split("(")[0]
        sender.connect(conn.findtext("signal"), getattr(receiver, slot))
    return top_widget
