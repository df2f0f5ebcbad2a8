"""Stand-ins for the VTK and MRML classes the SR4ZCT module touches, with Slicer's method names.

Volumes keep a real NumPy voxel array (KJI order, as ``slicer.util.arrayFromVolume`` returns it) and a
real IJK-to-RAS geometry, so saving/loading through SimpleITK gives the same files Slicer would write.
Every MRML call is recorded in ``CALLS`` (name, args) for tests that check what the module did.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

CALLS: list[tuple[str, tuple]] = []


def record(name: str, *args: Any) -> None:
    CALLS.append((name, args))


# ---- vtk ------------------------------------------------------------------------------------------


class vtkCommand:
    ModifiedEvent = 33
    DeleteEvent = 1


class vtkObject:
    _tags = itertools.count(1)

    def __init__(self) -> None:
        self._observers: dict[int, tuple[int, Callable]] = {}

    def AddObserver(self, event: int, callback: Callable, priority: float = 0.0) -> int:
        tag = next(vtkObject._tags)
        self._observers[tag] = (event, callback)
        return tag

    def RemoveObserver(self, tag: int) -> None:
        self._observers.pop(tag, None)

    def HasObserver(self, event: int) -> int:
        return int(any(e == event for e, _ in self._observers.values()))

    def InvokeEvent(self, event: int, callData: Any = None) -> int:
        for e, callback in list(self._observers.values()):
            if e == event:
                callback(self, event)
        return 0

    def Modified(self) -> None:
        self.InvokeEvent(vtkCommand.ModifiedEvent)

    def GetClassName(self) -> str:
        return type(self).__name__


class vtkMatrix4x4(vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._m = np.eye(4)

    def SetElement(self, i: int, j: int, value: float) -> None:
        self._m[i, j] = float(value)

    def GetElement(self, i: int, j: int) -> float:
        return float(self._m[i, j])

    def Identity(self) -> None:
        self._m = np.eye(4)

    def DeepCopy(self, other: vtkMatrix4x4) -> None:
        self._m = np.array(other._m)

    def array(self) -> np.ndarray:
        """Test helper (not VTK API)."""
        return np.array(self._m)


class vtkImageData(vtkObject):
    def __init__(self, array: np.ndarray | None = None) -> None:
        super().__init__()
        self._array = array

    def GetDimensions(self) -> tuple[int, int, int]:
        k, j, i = self._array.shape
        return (i, j, k)

    def GetScalarRange(self) -> tuple[float, float]:
        return (float(self._array.min()), float(self._array.max()))

    def GetNumberOfScalarComponents(self) -> int:
        return 1


# ---- MRML -----------------------------------------------------------------------------------------


class vtkMRMLNode(vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._id: str | None = None
        self._name = ""
        self._attributes: dict[str, str] = {}
        self._scene: vtkMRMLScene | None = None

    def GetID(self) -> str | None:
        return self._id

    def GetName(self) -> str:
        return self._name

    def SetName(self, name: str) -> None:
        record("SetName", self, name)
        self._name = str(name)
        self.Modified()

    def GetAttribute(self, name: str) -> str | None:
        return self._attributes.get(name)

    def SetAttribute(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"SetAttribute({name!r}, ...) needs a string, got {type(value).__name__}")
        record("SetAttribute", self, name, value)
        self._attributes[name] = value

    def GetAttributeNames(self) -> list[str]:
        return list(self._attributes)

    def GetScene(self) -> vtkMRMLScene | None:
        return self._scene


class vtkMRMLTransformNode(vtkMRMLNode):
    pass


class vtkMRMLLinearTransformNode(vtkMRMLTransformNode):
    pass


class vtkMRMLGridTransformNode(vtkMRMLTransformNode):
    pass


class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._parameters: dict[str, str] = {}

    def GetParameter(self, name: str) -> str:
        return self._parameters.get(name, "")

    def SetParameter(self, name: str, value: str) -> None:
        self._parameters[name] = str(value)
        self.Modified()

    def GetParameterNames(self) -> list[str]:
        return list(self._parameters)


class vtkMRMLColorNode(vtkMRMLNode):
    pass


class vtkMRMLScalarVolumeDisplayNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._window = 1.0
        self._level = 0.0
        self._auto = True
        self._colorNodeID: str | None = "vtkMRMLColorTableNodeGrey"

    def AutoWindowLevelOff(self) -> None:
        record("AutoWindowLevelOff", self)
        self._auto = False

    def AutoWindowLevelOn(self) -> None:
        self._auto = True

    def GetAutoWindowLevel(self) -> int:
        return int(self._auto)

    def SetWindowLevel(self, window: float, level: float) -> None:
        record("SetWindowLevel", self, window, level)
        self._window, self._level = float(window), float(level)

    def GetWindow(self) -> float:
        return self._window

    def GetLevel(self) -> float:
        return self._level

    def GetColorNodeID(self) -> str | None:
        return self._colorNodeID

    def SetAndObserveColorNodeID(self, colorNodeID: str | None) -> None:
        self._colorNodeID = colorNodeID


class vtkMRMLStorageNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._fileName: str | None = None
        self._useCompression = 1
        self._references = 1
        self.written: list[str] = []

    def SetFileName(self, fileName: str) -> None:
        self._fileName = str(fileName)

    def GetFileName(self) -> str | None:
        return self._fileName

    def SetUseCompression(self, useCompression: int) -> None:
        self._useCompression = int(useCompression)

    def GetUseCompression(self) -> int:
        return self._useCompression

    def UseCompressionOff(self) -> None:
        self._useCompression = 0

    def UseCompressionOn(self) -> None:
        self._useCompression = 1

    def WriteData(self, refNode: vtkMRMLNode) -> int:
        from . import write_volume_node

        record("WriteData", self, refNode, self._fileName, self._useCompression)
        write_volume_node(refNode, self._fileName, compress=bool(self._useCompression))
        self.written.append(self._fileName)
        return 1

    def UnRegister(self, o: Any) -> None:
        self._references -= 1


class vtkMRMLVolumeArchetypeStorageNode(vtkMRMLStorageNode):
    pass


class vtkMRMLStorableNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._storageNodeID: str | None = None

    def GetStorageNode(self) -> vtkMRMLStorageNode | None:
        if self._storageNodeID is None or self._scene is None:
            return None
        return self._scene.GetNodeByID(self._storageNodeID)

    def SetAndObserveStorageNodeID(self, storageNodeID: str | None) -> None:
        record("SetAndObserveStorageNodeID", self, storageNodeID)
        self._storageNodeID = storageNodeID


class vtkMRMLTransformableNode(vtkMRMLStorableNode):
    def __init__(self) -> None:
        super().__init__()
        self._transformNodeID: str | None = None

    def GetTransformNodeID(self) -> str | None:
        return self._transformNodeID

    def SetAndObserveTransformNodeID(self, transformNodeID: str | None) -> bool:
        record("SetAndObserveTransformNodeID", self, transformNodeID)
        self._transformNodeID = transformNodeID
        return True

    def GetParentTransformNode(self) -> vtkMRMLTransformNode | None:
        if self._transformNodeID is None or self._scene is None:
            return None
        return self._scene.GetNodeByID(self._transformNodeID)


class vtkMRMLVolumeNode(vtkMRMLTransformableNode):
    def __init__(self) -> None:
        super().__init__()
        self._imageData: vtkImageData | None = None
        self._spacing = (1.0, 1.0, 1.0)
        self._origin = (0.0, 0.0, 0.0)
        self._directions = np.eye(3)  # column a = RAS direction of IJK axis a
        self._displayNode: vtkMRMLScalarVolumeDisplayNode | None = None

    # geometry
    def GetSpacing(self) -> tuple[float, float, float]:
        return tuple(self._spacing)

    def SetSpacing(self, *spacing: float) -> None:
        if len(spacing) == 1:
            spacing = tuple(spacing[0])
        self._spacing = tuple(float(s) for s in spacing)

    def GetOrigin(self) -> tuple[float, float, float]:
        return tuple(self._origin)

    def SetOrigin(self, *origin: float) -> None:
        if len(origin) == 1:
            origin = tuple(origin[0])
        self._origin = tuple(float(o) for o in origin)

    def GetIJKToRASDirectionMatrix(self, mat: vtkMatrix4x4) -> None:
        mat.Identity()
        for r in range(3):
            for c in range(3):
                mat.SetElement(r, c, self._directions[r, c])

    def SetIJKToRASDirectionMatrix(self, mat: vtkMatrix4x4) -> None:
        self._directions = np.array([[mat.GetElement(r, c) for c in range(3)] for r in range(3)])

    def GetIJKToRASMatrix(self, mat: vtkMatrix4x4) -> None:
        mat.Identity()
        for r in range(3):
            for c in range(3):
                mat.SetElement(r, c, self._directions[r, c] * self._spacing[c])
            mat.SetElement(r, 3, self._origin[r])

    def SetIJKToRASMatrix(self, mat: vtkMatrix4x4) -> None:
        m = np.array([[mat.GetElement(r, c) for c in range(4)] for r in range(4)])
        spacing = np.linalg.norm(m[:3, :3], axis=0)
        self._spacing = tuple(float(s) for s in spacing)
        self._directions = m[:3, :3] / spacing
        self._origin = tuple(float(o) for o in m[:3, 3])

    # data
    def GetImageData(self) -> vtkImageData | None:
        return self._imageData

    def SetAndObserveImageData(self, imageData: vtkImageData) -> None:
        self._imageData = imageData

    # display
    def CreateDefaultDisplayNodes(self) -> None:
        if self._displayNode is None:
            self._displayNode = vtkMRMLScalarVolumeDisplayNode()
            if self._scene is not None:
                self._scene.AddNode(self._displayNode)

    def GetDisplayNode(self) -> vtkMRMLScalarVolumeDisplayNode | None:
        return self._displayNode


class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    def GetScalarVolumeDisplayNode(self) -> vtkMRMLScalarVolumeDisplayNode | None:
        return self._displayNode


class vtkMRMLLabelMapVolumeNode(vtkMRMLScalarVolumeNode):
    pass


class vtkMRMLSubjectHierarchyNode(vtkMRMLNode):
    INVALID = 0

    def __init__(self) -> None:
        super().__init__()
        self._next = itertools.count(2)
        self._sceneItem = 1
        self._parent: dict[int, int] = {}
        self._name: dict[int, str] = {}
        self._dataNode: dict[int, vtkMRMLNode] = {}
        self._level: dict[int, str] = {}

    def GetSceneItemID(self) -> int:
        return self._sceneItem

    def CreateItem(self, parentItemID: int, dataNode: vtkMRMLNode, ownerPluginName: str | None = None) -> int:
        item = next(self._next)
        self._parent[item] = parentItemID
        self._dataNode[item] = dataNode
        return item

    def CreateHierarchyItem(
        self, parentItemID: int, name: str, level: str, positionUnderParent: int = -1
    ) -> int:
        item = next(self._next)
        self._parent[item] = parentItemID
        self._name[item] = name
        self._level[item] = level
        return item

    def CreateSubjectItem(self, parentItemID: int, name: str) -> int:
        return self.CreateHierarchyItem(parentItemID, name, "Patient")

    def CreateStudyItem(self, parentItemID: int, name: str) -> int:
        return self.CreateHierarchyItem(parentItemID, name, "Study")

    def CreateFolderItem(self, parentItemID: int, name: str) -> int:
        return self.CreateHierarchyItem(parentItemID, name, "Folder")

    def GetItemByDataNode(self, dataNode: vtkMRMLNode) -> int:
        for item, node in self._dataNode.items():
            if node is dataNode:
                return item
        return self.INVALID

    def GetItemParent(self, itemID: int) -> int:
        return self._parent.get(itemID, self.INVALID)

    def SetItemParent(self, itemID: int, parentItemID: int, enableCircularCheck: bool = True) -> None:
        if itemID == self.INVALID or itemID not in self._parent:
            raise ValueError(f"SetItemParent: invalid item {itemID}")
        if parentItemID != self._sceneItem and parentItemID not in self._parent:
            raise ValueError(f"SetItemParent: invalid parent item {parentItemID}")
        record("SetItemParent", itemID, parentItemID)
        self._parent[itemID] = parentItemID

    def GetItemName(self, itemID: int) -> str:
        node = self._dataNode.get(itemID)
        return node.GetName() if node is not None else self._name.get(itemID, "")


class vtkMRMLSliceCompositeNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._background: str | None = None
        self._foreground: str | None = None
        self._linked = 0

    def SetBackgroundVolumeID(self, id: str | None) -> None:
        record("SetBackgroundVolumeID", self, id)
        self._background = id

    def GetBackgroundVolumeID(self) -> str | None:
        return self._background

    def SetForegroundVolumeID(self, id: str | None) -> None:
        self._foreground = id

    def GetForegroundVolumeID(self) -> str | None:
        return self._foreground

    def SetLinkedControl(self, linked: int) -> None:
        record("SetLinkedControl", self, linked)
        self._linked = int(linked)

    def GetLinkedControl(self) -> int:
        return self._linked

    def LinkedControlOn(self) -> None:
        self._linked = 1


class vtkMRMLSliceNode(vtkMRMLNode):
    ORIENTATIONS = ("Axial", "Sagittal", "Coronal", "Reformat")

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name
        self._orientation = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}.get(name, "Axial")

    def SetOrientation(self, orientation: str) -> bool:
        record("SetOrientation", self, orientation)
        if orientation not in self.ORIENTATIONS:
            return False
        self._orientation = orientation
        return True

    def GetOrientation(self) -> str:
        return self._orientation

    def SetOrientationToCoronal(self) -> bool:
        return self.SetOrientation("Coronal")


class vtkMRMLLayoutNode(vtkMRMLNode):
    SlicerLayoutConventionalView = 2
    SlicerLayoutFourUpView = 3
    SlicerLayoutOneUpRedSliceView = 6
    SlicerLayoutSideBySideView = 29


class vtkMRMLScene(vtkObject):
    StartCloseEvent = 0x2001
    EndCloseEvent = 0x2002
    NodeAddedEvent = 0x2003

    CLASSES: dict[str, type] = {}

    def __init__(self) -> None:
        super().__init__()
        self._nodes: list[vtkMRMLNode] = []
        self._counts: dict[str, int] = {}
        self._sh = vtkMRMLSubjectHierarchyNode()
        self._register(self._sh)

    def _register(self, node: vtkMRMLNode) -> None:
        cls = node.GetClassName()
        self._counts[cls] = self._counts.get(cls, 0) + 1
        node._id = f"{cls}{self._counts[cls]}"
        node._scene = self
        self._nodes.append(node)

    def AddNode(self, node: vtkMRMLNode) -> vtkMRMLNode:
        if node._scene is self:
            return node
        self._register(node)
        if isinstance(node, (vtkMRMLVolumeNode, vtkMRMLTransformNode)):
            # Slicer's subject hierarchy plugins give every data node an item under the scene.
            self._sh.CreateItem(self._sh.GetSceneItemID(), node)
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    def CreateNodeByClass(self, className: str) -> vtkMRMLNode:
        """A new node of ``className``, not added to the scene (the caller owns one reference)."""
        return self.CLASSES[className]()

    def AddNewNodeByClass(self, className: str, nodeBaseName: str = "") -> vtkMRMLNode:
        node = self.CLASSES[className]()
        node._name = nodeBaseName or className
        return self.AddNode(node)

    def GetNodeByID(self, id: str | None) -> vtkMRMLNode | None:
        for node in self._nodes:
            if node.GetID() == id:
                return node
        return None

    def GetFirstNodeByClass(self, className: str) -> vtkMRMLNode | None:
        for node in self._nodes:
            if node.GetClassName() == className:
                return node
        return None

    def GetFirstNodeByName(self, name: str) -> vtkMRMLNode | None:
        for node in self._nodes:
            if node.GetName() == name:
                return node
        return None

    def GetNodesByClass(self, className: str) -> list[vtkMRMLNode]:
        return [n for n in self._nodes if isinstance(n, self.CLASSES.get(className, type(None)))]

    def RemoveNode(self, node: vtkMRMLNode) -> None:
        if node in self._nodes:
            self._nodes.remove(node)

    def GetSubjectHierarchyNode(self) -> vtkMRMLSubjectHierarchyNode:
        return self._sh

    def GenerateUniqueName(self, baseName: str) -> str:
        names = {n.GetName() for n in self._nodes}
        if baseName not in names:
            return baseName
        for k in itertools.count(1):
            if f"{baseName}_{k}" not in names:
                return f"{baseName}_{k}"
        raise AssertionError  # pragma: no cover

    def Clear(self, removeSingletons: int = 0) -> None:
        self.InvokeEvent(self.StartCloseEvent)
        self._nodes = []
        self._sh = vtkMRMLSubjectHierarchyNode()
        self._register(self._sh)
        self.InvokeEvent(self.EndCloseEvent)


vtkMRMLScene.CLASSES = {
    cls.__name__: cls
    for cls in (
        vtkMRMLScalarVolumeNode,
        vtkMRMLLabelMapVolumeNode,
        vtkMRMLScalarVolumeDisplayNode,
        vtkMRMLLinearTransformNode,
        vtkMRMLGridTransformNode,
        vtkMRMLScriptedModuleNode,
        vtkMRMLVolumeNode,
        vtkMRMLTransformNode,
        vtkMRMLVolumeArchetypeStorageNode,
    )
}


# ---- views ----------------------------------------------------------------------------------------


class vtkMRMLSliceLogic(vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._composite = vtkMRMLSliceCompositeNode()

    def GetSliceCompositeNode(self) -> vtkMRMLSliceCompositeNode:
        return self._composite


class qMRMLSliceWidget:
    def __init__(self, name: str) -> None:
        self._logic = vtkMRMLSliceLogic()
        self._sliceNode = vtkMRMLSliceNode(name)

    def sliceLogic(self) -> vtkMRMLSliceLogic:
        return self._logic

    def mrmlSliceNode(self) -> vtkMRMLSliceNode:
        return self._sliceNode


class qSlicerLayoutManager:
    VIEWS = ("Red", "Yellow", "Green")

    def __init__(self) -> None:
        self.layout = vtkMRMLLayoutNode.SlicerLayoutConventionalView
        self._widgets = {name: qMRMLSliceWidget(name) for name in self.VIEWS}

    def setLayout(self, layout: int) -> None:
        record("setLayout", layout)
        self.layout = int(layout)

    def sliceWidget(self, name: str) -> qMRMLSliceWidget | None:
        return self._widgets.get(name)

    def sliceViewNames(self) -> list[str]:
        return list(self.VIEWS)
