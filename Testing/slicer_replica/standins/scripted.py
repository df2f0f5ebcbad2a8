"""Stand-in for ``slicer.ScriptedLoadableModule`` (Base/Python/slicer/ScriptedLoadableModule.py in Slicer).

The module, widget, logic and test base classes with the behaviour the SR4ZCT module relies on: the
parameter node is a real singleton ``vtkMRMLScriptedModuleNode`` in the real scene, tagged with the
module name like Slicer's; the widget gets a ``qMRMLWidget`` parent with a layout.
"""

from __future__ import annotations

import os
import unittest

import slicer

from . import qt
from .mrml_widgets import qMRMLWidget


class qSlicerScriptedLoadableModule(qt.QObject):
    """The C++ module object a ScriptedLoadableModule gets as ``parent`` (the properties it exposes)."""

    PROPERTIES = ("title", "categories", "dependencies", "contributors", "helpText", "acknowledgementText",
                  "icon", "path", "hidden", "isEntered")  # fmt: skip
    DEFAULTS = {"isEntered": False, "hidden": False}

    def __init__(self, path: str = ""):
        super().__init__()
        self.path = path


class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
    """The panel Slicer makes for a scripted module and passes as ``parent`` to its widget class."""

    PROPERTIES = ("isEntered",)
    DEFAULTS = {**qMRMLWidget.DEFAULTS, "isEntered": False}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setLayout(qt.QVBoxLayout())
        self.setMRMLScene(slicer.mrmlScene)


class ScriptedLoadableModule:
    def __init__(self, parent):
        super().__init__()
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    def runTest(self, msec=100, **kwargs):
        module = __import__(self.__module__)
        testCase = getattr(module, self.moduleName + "Test")()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        super().__init__()  # cooperative, as Slicer's: initialises VTKObservationMixin in subclasses
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.developerMode = False
        if not parent:
            self.parent = qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

    def setup(self):
        pass

    def cleanup(self):
        pass

    def enter(self):
        pass

    def exit(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        scene = slicer.mrmlScene
        if self.isSingletonParameterNode:
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                if node.GetAttribute("ModuleName") != self.moduleName:
                    node.SetAttribute("ModuleName", self.moduleName)
                return node
        else:
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
                node = scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode")
                if node.GetAttribute("ModuleName") == self.moduleName:
                    return node
        return scene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        if self.isSingletonParameterNode:
            node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, requestedDelay=None, msec=None):
        slicer.util.delayDisplay(message, 0)

    def setUp(self):
        return

    def tearDown(self):
        return


__all__ = ["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
           "ScriptedLoadableModuleTest"]  # fmt: skip
