"""Stand-ins for the qMRML widgets of the module's .ui (``slicer.qMRMLNodeComboBox``, ``qMRMLWidget``),
working on the real MRML scene."""

from __future__ import annotations

from typing import Any

from .qt import QWidget


class qMRMLWidget(QWidget):
    SIGNALS = ("mrmlSceneChanged(vtkMRMLScene*)",)

    def __init__(self, parent: Any = None, **props: Any):
        super().__init__(parent, **props)
        self._mrmlScene = None

    def setMRMLScene(self, scene: Any) -> None:
        self._mrmlScene = scene
        self.emit("mrmlSceneChanged(vtkMRMLScene*)", scene)

    def mrmlScene(self) -> Any:
        return self._mrmlScene


class qMRMLNodeComboBox(QWidget):
    SIGNALS = (
        "currentNodeChanged(vtkMRMLNode*)",
        "currentNodeChanged(bool)",
        "currentNodeIDChanged(QString)",
        "nodeAdded(vtkMRMLNode*)",
    )
    PROPERTIES = (
        "nodeTypes",
        "showChildNodeTypes",
        "addEnabled",
        "removeEnabled",
        "noneEnabled",
        "renameEnabled",
        "editEnabled",
        "showHidden",
        "selectNodeUponCreation",
    )
    DEFAULTS = {**QWidget.DEFAULTS, "nodeTypes": [], "noneEnabled": False}

    def __init__(self, parent: Any = None, **props: Any):
        super().__init__(parent, **props)
        self._scene = None
        self._current = None

    def setMRMLScene(self, scene: Any) -> None:
        self._scene = scene

    def mrmlScene(self) -> Any:
        return self._scene

    def currentNode(self) -> Any:
        return self._current

    def currentNodeID(self) -> str:
        return self._current.GetID() if self._current is not None else ""

    def setCurrentNode(self, node: Any) -> None:
        if node is not None:
            if self._scene is None or self._scene.GetNodeByID(node.GetID()) is None:
                raise ValueError("qMRMLNodeComboBox.setCurrentNode: node is not in the combo box's scene")
            types = self.nodeTypes or []
            childTypes = self._props.get("showChildNodeTypes", True)  # qMRMLNodeComboBox's default
            if not any(node.IsA(t) if childTypes else node.GetClassName() == t for t in types):
                raise ValueError(f"{node.GetClassName()} is not one of the combo box's nodeTypes")
        if node is self._current:
            return
        self._current = node
        self.emit("currentNodeChanged(vtkMRMLNode*)", node)
        self.emit("currentNodeChanged(bool)", node is not None)
        self.emit("currentNodeIDChanged(QString)", node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeId: str) -> None:
        self.setCurrentNode(self._scene.GetNodeByID(nodeId) if nodeId else None)


MRML_WIDGET_CLASSES = {cls.__name__: cls for cls in (qMRMLWidget, qMRMLNodeComboBox)}
