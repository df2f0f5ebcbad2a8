"""Stand-ins for the Qt side of Slicer's application, over the real MRML scene and logics of slicer-core.

* :class:`qSlicerApplication` (``slicer.app``): temporary path, testing flag, cursor, ``processEvents``,
  ``coreIOManager()``, ``layoutManager()``, ``startupCompleted()``; it owns the real
  ``vtkSlicerApplicationLogic`` with the Colors, Volumes and Subject Hierarchy logics wired as Slicer does.
* :class:`qSlicerCoreIOManager`: ``loadNodes``/``saveNodes`` for volumes, doing what Slicer's
  qSlicerVolumesReader/-Writer do (``vtkSlicerVolumesLogic.AddArchetypeVolume`` and a volume archetype
  storage node).
* :class:`qSlicerLayoutManager`: layouts in the real ``vtkMRMLLayoutNode``, slice widgets over real
  ``vtkMRMLSliceLogic`` objects.
* :class:`qSlicerSubjectHierarchyPluginLogic`: new data nodes get a subject hierarchy item under the
  scene, as the Qt plugin logic does in Slicer (the C++ MRML does not).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import slicer
import vtk

from . import qt

SLICE_VIEWS = (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))
# Node classes a subject hierarchy plugin adds to the hierarchy (Volumes, Transforms plugins).
_SUBJECT_HIERARCHY_CLASSES = ("vtkMRMLVolumeNode", "vtkMRMLTransformNode")


class qSlicerSubjectHierarchyPluginLogic:
    """Adds an item for every new data node a plugin can own, unless the scene is importing."""

    def __init__(self, scene: Any):
        self.scene = scene
        self._tag = scene.AddObserver(scene.NodeAddedEvent, self.onNodeAdded)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, scene, event, node) -> None:
        if scene.IsImporting() or node is None or node.GetHideFromEditors():
            return
        if not any(node.IsA(cls) for cls in _SUBJECT_HIERARCHY_CLASSES):
            return
        sh = scene.GetSubjectHierarchyNode()
        if sh.GetItemByDataNode(node) == 0:
            sh.CreateItem(sh.GetSceneItemID(), node)


class qSlicerCoreIOManager:
    """The file reading/writing API slicer.util uses (``fileType``, ``loadNodes``, ``saveNodes``, ...)."""

    def __init__(self, app: qSlicerApplication):
        self._app = app

    def fileType(self, fileName: str) -> str:
        lower = str(fileName).lower()
        if lower.endswith((".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm", ".ima")):
            return "VolumeFile"
        return "NoFile"

    def fileWriterFileType(self, object: Any) -> str:  # noqa: A002 - Qt's parameter name
        return "VolumeFile" if object.IsA("vtkMRMLVolumeNode") else "NoFile"

    def loadNodes(
        self, fileType: str, properties: dict, loadedNodes: Any = None, userMessages: Any = None
    ) -> bool:
        if fileType != "VolumeFile":
            raise NotImplementedError(f"the stand-in IO manager reads volumes only, not {fileType!r}")
        fileName = str(properties["fileName"])
        name = properties.get("name") or Path(fileName).name.split(".")[0]  # QFileInfo.baseName()
        options = 0
        for bit, key in ((0x1, "labelmap"), (0x2, "center"), (0x4, "singleFile"), (0x8, "autoWindowLevel"),
                         (0x10, "discardOrientation")):  # fmt: skip
            if properties.get(key):
                options |= bit
        fileList = None
        if properties.get("fileNames"):
            fileList = vtk.vtkStringArray()
            for f in properties["fileNames"]:
                fileList.InsertNextValue(str(f))
        node = self._app.volumesLogic.AddArchetypeVolume(fileName, name, options, fileList)
        if node is None:
            if userMessages is not None:
                userMessages.AddMessage(vtk.vtkCommand.ErrorEvent, f"Failed to read {fileName}")
            return False
        if properties.get("colorNodeID") and node.GetVolumeDisplayNode():
            node.GetVolumeDisplayNode().SetAndObserveColorNodeID(properties["colorNodeID"])
        if properties.get("show", True):
            selection = self._app.applicationLogic().GetSelectionNode()
            selection.SetActiveVolumeID(node.GetID())
            self._app.applicationLogic().PropagateVolumeSelection()
        if loadedNodes is not None:
            loadedNodes.AddItem(node)
        return True

    def saveNodes(self, fileType: str, properties: dict, userMessages: Any = None) -> bool:
        node = self._app.mrmlScene().GetNodeByID(properties["nodeID"])
        storage = node.GetStorageNode() or node.CreateDefaultStorageNode()
        if node.GetStorageNode() is None:
            self._app.mrmlScene().AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
        storage.SetFileName(str(properties["fileName"]))
        if "useCompression" in properties:
            storage.SetUseCompression(int(bool(properties["useCompression"])))
        return bool(storage.WriteData(node))


class qMRMLSliceControllerWidget:
    def __init__(self, sliceLogic: Any):
        self._sliceLogic = sliceLogic

    def fitSliceToBackground(self) -> None:
        self._sliceLogic.FitSliceToBackground()


class qMRMLSliceWidget:
    def __init__(self, sliceLogic: Any):
        self._sliceLogic = sliceLogic

    def sliceLogic(self) -> Any:
        return self._sliceLogic

    def mrmlSliceNode(self) -> Any:
        return self._sliceLogic.GetSliceNode()

    def sliceController(self) -> qMRMLSliceControllerWidget:
        return qMRMLSliceControllerWidget(self._sliceLogic)


class qSlicerLayoutManager:
    """Layouts through the real vtkMRMLLayoutLogic (which makes the view nodes); slice views with real logics."""

    def __init__(self, app: qSlicerApplication):
        self._app = app
        scene = app.mrmlScene()
        self._layoutLogic = slicer.vtkMRMLLayoutLogic()
        self._layoutLogic.SetMRMLScene(scene)
        self._layoutNode = self._layoutLogic.GetLayoutNode()
        self._layoutNode.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        logics = vtk.vtkCollection()
        self._sliceLogics = {}
        for name, _orientation in SLICE_VIEWS:
            sliceNode = next(
                scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
                for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))
                if scene.GetNthNodeByClass(i, "vtkMRMLSliceNode").GetLayoutName() == name
            )
            sliceLogic = slicer.vtkMRMLSliceLogic()
            sliceLogic.SetMRMLApplicationLogic(app.applicationLogic())
            sliceLogic.SetMRMLScene(scene)
            sliceLogic.SetSliceNode(sliceNode)
            logics.AddItem(sliceLogic)
            self._sliceLogics[name] = sliceLogic
        app.applicationLogic().SetSliceLogics(logics)

    @property
    def layout(self) -> int:
        return self._layoutNode.GetViewArrangement()

    def setLayout(self, layout: int) -> None:
        self._layoutNode.SetViewArrangement(int(layout))

    def layoutLogic(self) -> Any:
        return self._layoutLogic

    def sliceViewNames(self) -> list[str]:
        return list(self._sliceLogics)

    def sliceWidget(self, name: str) -> qMRMLSliceWidget | None:
        logic = self._sliceLogics.get(name)
        return qMRMLSliceWidget(logic) if logic is not None else None

    def mrmlSliceLogics(self) -> Any:
        return self._app.applicationLogic().GetSliceLogics()

    def resetSliceViews(self) -> None:
        for name in self.sliceViewNames():
            self.sliceWidget(name).sliceController().fitSliceToBackground()


class qSlicerApplication(qt.QApplication):
    """``slicer.app``. ``withLayout=False`` is Slicer without a main window (no layout manager)."""

    SIGNALS = ("startupCompleted()", "aboutToQuit()")
    PROPERTIES = ("applicationName", "majorVersion", "minorVersion")

    def __init__(
        self, temporaryPath: str, scene: Any, withLayout: bool = True, testing: bool = False,
        version: tuple[int, int] = (5, 10), cachePath: str | None = None,
    ):  # fmt: skip
        super().__init__()
        self._props["applicationName"] = "Slicer"
        self._props["majorVersion"], self._props["minorVersion"] = version
        self._temporaryPath = temporaryPath
        self._cachePath = cachePath or tempfile.mkdtemp(prefix="slicer-cache-")
        self._scene = scene
        self._testing = testing
        self._processEventsCalls = 0
        self._share = tempfile.mkdtemp(prefix="slicer-share-")
        (Path(self._share) / "ColorFiles").mkdir()
        logic = slicer.vtkSlicerApplicationLogic()
        logic.SetHomeDirectory(self._share)
        logic.SetShareDirectory(".")
        logic.SetTemporaryPath(temporaryPath)
        logic.SetMRMLScene(scene)
        self._appLogic = logic
        colors = slicer.vtkSlicerColorLogic()
        colors.SetMRMLApplicationLogic(logic)
        colors.SetMRMLScene(scene)
        logic.SetColorLogic(colors)
        logic.SetModuleLogic("Colors", colors)
        self._volumesLogic = slicer.vtkSlicerVolumesLogic()
        self._volumesLogic.SetMRMLApplicationLogic(logic)
        self._volumesLogic.SetMRMLScene(scene)
        logic.SetModuleLogic("Volumes", self._volumesLogic)
        self._subjectHierarchyLogic = slicer.vtkSlicerSubjectHierarchyModuleLogic()
        self._subjectHierarchyLogic.SetMRMLApplicationLogic(logic)
        self._subjectHierarchyLogic.SetMRMLScene(scene)
        logic.SetModuleLogic("SubjectHierarchy", self._subjectHierarchyLogic)
        self._shPluginLogic = qSlicerSubjectHierarchyPluginLogic(scene)
        self._coreIOManager = qSlicerCoreIOManager(self)
        self._layoutManager = qSlicerLayoutManager(self) if withLayout else None
        self._mainWindow = qt.QWidget() if withLayout else None
        if self._mainWindow is not None:
            self._mainWindow.setObjectName("qSlicerMainWindow")

    @property
    def temporaryPath(self) -> str:
        return self._temporaryPath

    @property
    def cachePath(self) -> str:
        """Where Sample Data keeps what it fetched (the cache manager's remote cache folder in Slicer)."""
        return self._cachePath

    def mrmlScene(self) -> Any:
        return self._scene

    def applicationLogic(self) -> Any:
        return self._appLogic

    def coreIOManager(self) -> qSlicerCoreIOManager:
        return self._coreIOManager

    def layoutManager(self) -> qSlicerLayoutManager | None:
        return self._layoutManager

    def topLevelWidgets(self) -> list[qt.QWidget]:
        return [self._mainWindow] if self._mainWindow is not None else []

    def testingEnabled(self) -> bool:
        return self._testing

    def setTestingEnabled(self, enabled: bool = True) -> None:
        self._testing = bool(enabled)

    def processEvents(self) -> None:
        self._processEventsCalls += 1

    @property
    def processEventsCalls(self) -> int:
        """Test record: how often the module let the event loop run."""
        return self._processEventsCalls

    @property
    def volumesLogic(self) -> Any:
        """The Volumes module's logic (``slicer.modules.volumes.logic()`` in Slicer)."""
        return self._volumesLogic
