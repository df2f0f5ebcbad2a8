"""3D Slicer module "SR4ZCT": enhance the through-plane resolution of a CT volume.

GUI and scene work over the Slicer-free core package ``sr4zct`` (bundled next to this file; what the module
needs beyond GUI and scene is in ``sr4zct.app``): the geometry of the selected volume (from the DICOM database
when it came from DICOM), the run in a background process (``PythonSlicer -m sr4zct enhance ... --events``),
its progress and live preview, and the result as a node placed, displayed and annotated like its input.

Scripting (Python console)::

    logic = slicer.util.getModuleLogic("SR4ZCT")   # or SR4ZCT.SR4ZCTLogic()
    outputNode = logic.enhance(getNode("CT"), thicknessMm=3.0, preset="fast")
    job = logic.enhance(getNode("CT"), thicknessMm=3.0, wait=False)   # a sr4zct.BackgroundJob
    outputNode = logic.waitForResult(job)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The oldest 3D Slicer this module supports, and with it Python 3.12 (the one Slicer 5.10 bundles): the same
# minimum everywhere (README, docs/slicer.md, SR4ZCTExtension/README.md). Checked before the core is imported.
MINIMUM_SLICER_VERSION = (5, 10)
# The public repository (the extension's CMakeLists.txt and SR4ZCTExtension/SR4ZCT.json name the same one).
REPOSITORY_URL = "https://github.com/SR4ZCT/SlicerSR4ZCT"


def checkSlicerVersion(app=None) -> None:
    """Raise a clear error on a 3D Slicer older than :data:`MINIMUM_SLICER_VERSION`."""
    app = app if app is not None else slicer.app
    version = (int(app.majorVersion), int(app.minorVersion))
    if version < MINIMUM_SLICER_VERSION:
        raise RuntimeError(_("SR4ZCT needs 3D Slicer {minimum} or later (with its Python 3.12); this is 3D Slicer "
                             "{version}. Install a current 3D Slicer from https://download.slicer.org.").format(
            minimum=".".join(map(str, MINIMUM_SLICER_VERSION)), version=".".join(map(str, version))))  # fmt: skip


checkSlicerVersion()

# The core package ships in this module's folder, which Slicer puts on sys.path.
import sr4zct  # noqa: E402
from sr4zct.app import node_geometry, results  # noqa: E402
from sr4zct.app.environment import device_lines  # noqa: E402
from sr4zct.app.estimates import result_lines, start_estimate  # noqa: E402
from sr4zct.app.panel_options import option_name, options_from_panel, panel_fields, panel_number  # noqa: E402
from sr4zct.app.run_folder import make_run_folder, start_run  # noqa: E402
from sr4zct.app.study_queue import is_enhanceable, job_ended_line  # noqa: E402
from sr4zct.errors import OutputError, ParameterError, ResourceError, SR4ZCTError  # noqa: E402
from sr4zct.run.options import EnhanceOptions  # noqa: E402
from sr4zct.system.progress import format_duration  # noqa: E402

TORCH_REQUIREMENT = ">=2.1"
TORCH_MISSING_FOR_TEST = _("PyTorch is not installed: the parts of the SR4ZCT self-test that need it were skipped. "
                           "Install the PyTorch extension (or press Enhance once: it offers to install PyTorch), then "
                           "run the self-test again.")  # fmt: skip
# Where the panel's queue of several volumes keeps its results and ledger (under Slicer's temporary folder).
QUEUE_FOLDER = "SR4ZCT batch"
# The disagreement overlay: colour map, opacity and the HU difference shown at full colour.
UNCERTAINTY_COLOR_NODE_ID = "vtkMRMLColorTableNodeRainbow"
UNCERTAINTY_OPACITY = 0.4
UNCERTAINTY_WINDOW_HU = 200.0
POLL_INTERVAL_MS = 250
# The layout of a run with a live preview (Resources/UI/SR4ZCTPreviewLayout.xml): original and preview or
# result side by side, the validation-gain chart below (Slicer's own layouts have no plot view beside two views).
LAYOUT_ID = 19190
LAYOUT_FILE = os.path.join(os.path.dirname(__file__), "Resources", "UI", "SR4ZCTPreviewLayout.xml")
SELFTEST_MINUTES = 1.0  # training budget of the self-test's short job

# The DICOM modality of a node's first instance decides whether the queue takes it.
TAG_MODALITY = "0008,0060"


class SR4ZCT(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SR4ZCT through-plane enhancement")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["SR4ZCT for 3D Slicer developers"]
        self.parent.helpText = _(
            """
Sharper coronal and sagittal CT images from thick, overlapping axial slices, without training data.
SR4ZCT learns from the scan itself how the real slice thickness and spacing blur the image, trains a
small network to undo it, and writes a thin-slice volume (isotropic by default) in HU with the input's
geometry. Select a CT volume, check the slice thickness and spacing read from DICOM, press
"Enhance through-plane". Training runs in the background; Slicer stays usable.
See <a href="{url}#using-it-in-3d-slicer">the documentation</a>.
"""
        ).format(url=REPOSITORY_URL)
        self.parent.acknowledgementText = _(
            """
Method: J. Shi, D. M. Pelt, K. J. Batenburg, "SR4ZCT: Self-supervised Through-plane Resolution
Enhancement for CT Images with Arbitrary Resolution and Overlap", MLMI 2023.
"""
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


PHANTOM_SAMPLE_NAME = "SR4ZCTPhantom"
PHANTOM_FILE_NAME = "SR4ZCTPhantom.mha"  # made by Resources/make_sample_data.py; its header has the thickness


def phantomSamplePath() -> str:
    return os.path.join(os.path.dirname(__file__), "Resources", "Data", PHANTOM_FILE_NAME)


def registerSampleData():
    """Register the synthetic thick-slice phantom (3 mm slices every 2 mm) in the Sample Data module.

    Its address is the file shipped in this module's folder (``file://``): Sample Data copies it into its
    cache and loads it, from its tile and from ``SampleData.downloadSample("SR4ZCTPhantom")`` alike, without
    PyTorch. The checksum makes a cached copy of an older phantom be replaced.
    """
    import hashlib
    import pathlib

    import SampleData

    path = phantomSamplePath()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SR4ZCT", sampleName=PHANTOM_SAMPLE_NAME, uris=pathlib.Path(path).resolve().as_uri(),
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "SR4ZCT.png"),
        fileNames=PHANTOM_FILE_NAME, nodeNames=PHANTOM_SAMPLE_NAME, checksums=f"SHA256:{digest}",
    )  # fmt: skip


# The parameter node's own fields beside the panel's options: (type, default; None for a node).
MODULE_FIELDS = {
    "inputVolume": (vtkMRMLScalarVolumeNode, None),
    "keepTempFiles": (bool, False),
    "showUncertainty": (bool, False),
    "outputVolume": (vtkMRMLScalarVolumeNode, None),
}


def _parameterNodeClass():
    """The parameter node (saved with the scene): :data:`MODULE_FIELDS` and the panel's options as
    :func:`sr4zct.app.panel_options.panel_fields` lists them (``thicknessMm``, ``profile``, ``noise``,
    ``precision``, ...: names in Slicer's spelling, the options' defaults, choices and limits; 0 or empty
    text = the option's default)."""
    annotations = {name: kind for name, (kind, _default) in MODULE_FIELDS.items()}
    defaults = {name: default for name, (_kind, default) in MODULE_FIELDS.items() if default is not None}
    for field in panel_fields():
        validators = [Choice(list(field.choices))] if field.choices else []
        if field.minimum is not None:
            validators.append(WithinRange(field.minimum, field.maximum))
        annotations[field.name] = Annotated[(field.kind, *validators)] if validators else field.kind
        defaults[field.name] = field.default
    namespace = {
        "__annotations__": annotations,
        "__module__": __name__,
        "__doc__": _parameterNodeClass.__doc__,
    }
    return parameterNodeWrapper(type("SR4ZCTParameterNode", (), {**namespace, **defaults}))


SR4ZCTParameterNode = _parameterNodeClass()


def ijkToRasDirections(volumeNode) -> list[list[float]]:
    """Unit vectors (RAS) of the I, J and K axes of ``volumeNode``: ``result[axis]``."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(matrix)
    return [[matrix.GetElement(row, axis) for row in range(3)] for axis in range(3)]


def progressText(event: dict) -> str:
    """Status line for a ``progress`` event: stage, step and remaining time."""
    stage = str(event.get("stage") or "")
    text = {"prepare": _("Preparing"), "train": _("Training"), "infer": _("Enhancing"), "write": _("Writing")}
    line = text.get(stage, stage.capitalize())
    if event.get("total"):
        line += f" {event.get('step', 0)}/{event['total']}"
    eta = format_duration(event.get("eta_s"))
    if eta:
        line += " - " + _("about {eta} left").format(eta=eta)
    return line


class SR4ZCTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, options, run/cancel, progress and log."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._geometry: node_geometry.NodeGeometry | None = None
        self._geometryNodeId: str | None = None
        self._job = None  # the running sr4zct.BackgroundJob
        self._batch = None  # or the running sr4zct.batch.Batch of several volumes
        self._estimate = None  # the slice profile being estimated: (node ID, concurrent.futures.Future)
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SR4ZCT.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SR4ZCTLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.thicknessSpinBox.connect("valueChanged(double)", self.updateOverlapLabel)
        self.ui.spacingSpinBox.connect("valueChanged(double)", self.updateOverlapLabel)
        self.ui.detectDevicesButton.connect("clicked(bool)", self.onDetectDevices)
        self.ui.finishButton.connect("clicked(bool)", self.onFinishButton)
        self.ui.queueButton.connect("clicked(bool)", self.onQueueButton)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicomButton)
        self.ui.estimateProfileButton.connect("clicked(bool)", self.onEstimateProfile)

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onTimer)

        self.ui.progressBar.setRange(0, 1000)
        self.ui.progressBar.visible = False
        self.ui.warningLabel.visible = False
        self.ui.deviceInfoLabel.text = _("Press Detect to list the GPUs PyTorch can use.")

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """The module is closed (Slicer quits, the module is unloaded): a running enhancement or queue ends."""
        self.stopRunning()
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        # The input nodes are going away: stop the job or queue rather than load results into an empty scene.
        self.stopRunning()
        self.setParameterNode(None)

    def stopRunning(self) -> None:
        """Cancel the running enhancement or queue, if any; their results are not loaded."""
        if self._batch is not None and not self._batch.done:
            self.logic.cancelQueue(self._batch)
        if self._job is not None and not self._job.done:
            self.logic.discardResult(self._job)
            self._job.cancel()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: SR4ZCTParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self.onInputChanged(self._parameterNode.inputVolume)
            self._checkCanApply()

    # -- inputs ---------------------------------------------------------------------------------------
    def onInputChanged(self, node=None) -> None:
        """Read the geometry of the newly selected volume and fill in thickness and spacing. The input is stored
        first: the selector's signal can come before the parameter node knows it, which would then push its
        old input back into the selector."""
        nodeId = node.GetID() if node else None
        if nodeId == self._geometryNodeId and self._geometry is not None:
            return
        self._geometryNodeId = nodeId
        self._geometry = None
        self.ui.profileEstimateLabel.text = "-"  # an estimate in progress is for the volume it started on
        if node is None:
            self.showGeometry(None)
            return
        try:
            geometry = self.logic.readGeometry(node)
        except SR4ZCTError as exc:
            self.showGeometry(None, error=exc.message)
            return
        self._geometry = geometry
        if self._parameterNode:
            if self._parameterNode.inputVolume is not node:
                self._parameterNode.inputVolume = node
            self._parameterNode.thicknessMm = panel_number("thicknessMm", geometry.thickness_mm)
            self._parameterNode.spacingMm = panel_number("spacingMm", geometry.spacing_mm)
        self.showGeometry(geometry)

    def showGeometry(self, geometry: node_geometry.NodeGeometry | None, error: str | None = None) -> None:
        if geometry is None:
            for label in (self.ui.sourceValueLabel, self.ui.inPlaneValueLabel, self.ui.slicesValueLabel):
                label.text = "-"
            self.ui.overlapValueLabel.text = "-"
            self.ui.warningLabel.text = error or ""
            self.ui.warningLabel.visible = bool(error)
            self._checkCanApply()
            return
        self.ui.sourceValueLabel.text = geometry.source
        rowMm, columnMm = geometry.in_plane_spacing_mm
        self.ui.inPlaneValueLabel.text = f"{rowMm:.4g} x {columnMm:.4g} mm"
        self.ui.slicesValueLabel.text = _("{n} slices along {axis}").format(n=geometry.n_slices, axis="IJK"[geometry.axis])  # fmt: skip
        thicknessHint = "" if geometry.thickness_mm else _("Slice thickness unknown: enter it (required).")
        self.ui.thicknessSpinBox.toolTip = thicknessHint or _("Slice thickness read from {source}.").format(source=geometry.source)  # fmt: skip
        messages = list(geometry.warnings) + ([thicknessHint] if thicknessHint else [])
        self.ui.warningLabel.text = "\n".join(f"\u26a0 {m}" for m in messages)
        self.ui.warningLabel.visible = bool(messages)
        self.updateOverlapLabel()
        self._checkCanApply()

    def updateOverlapLabel(self, value=None) -> None:
        thickness = self.ui.thicknessSpinBox.value
        spacing = self.ui.spacingSpinBox.value
        if thickness <= 0 or spacing <= 0:
            self.ui.overlapValueLabel.text = "-"
            return
        overlap = thickness - spacing
        kind = _("overlapping") if overlap > 1e-6 else (_("gaps") if overlap < -1e-6 else _("contiguous"))
        self.ui.overlapValueLabel.text = f"{overlap:.4g} mm ({kind})"

    def onDetectDevices(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to detect devices."), waitCursor=True):
            if not self.logic.ensureTorch(askConfirmation=True):
                return
            self.ui.deviceInfoLabel.text = self.logic.deviceDescription()

    def onEstimateProfile(self) -> None:
        """Estimate the volume's slice profile in a thread (sr4zct.app.estimates); the timer shows it."""
        node = self._parameterNode.inputVolume if self._parameterNode else None
        with slicer.util.tryWithErrorDisplay(_("Failed to estimate the slice profile."), waitCursor=True):
            if node is None or self._geometry is None or not self.logic.ensureTorch(askConfirmation=True):
                return
            future = start_estimate(slicer.util.arrayFromVolume(node), node.GetSpacing(), self._geometry,
                                    self._parameterNode.thicknessMm or None)  # fmt: skip
            self._estimate = (node.GetID(), future)
            self.ui.profileEstimateLabel.text = _("Estimating...")
            self.ui.estimateProfileButton.enabled = False
            self._timer.start()

    def _showEstimateWhenDone(self) -> None:
        if self._estimate is None or not self._estimate[1].done():
            return
        nodeId, future = self._estimate
        self._estimate = None
        self.ui.estimateProfileButton.enabled = True
        if nodeId == self._geometryNodeId:
            error = future.exception()
            self.ui.profileEstimateLabel.text = future.result() if error is None else _(
                "Slice profile not estimated: {error}").format(error=error)  # fmt: skip

    def _checkCanApply(self, caller=None, event=None) -> None:
        running, p = self._running(), self._parameterNode
        job = self._job if running and (self._batch is None or self._batch.done) else None
        stage = (job.progress or {}).get("stage") if job is not None else None
        self.ui.finishButton.enabled = stage in ("prepare", "train")
        self.ui.exportDicomButton.enabled = bool(p and p.outputVolume) and not running
        self.ui.queueButton.enabled = bool(p and p.inputVolume) and not running
        self._showApplyButton(running, p.thicknessMm if p and p.inputVolume else None)

    def _showApplyButton(self, running: bool, thicknessMm: float | None) -> None:
        """Enhance (with an input volume and a thickness) or Cancel (while running)."""
        self.ui.applyButton.text = _("Cancel") if running else _("Enhance through-plane")
        self.ui.applyButton.enabled = running or (thicknessMm or 0) > 0
        if running:
            self.ui.applyButton.toolTip = _("Stop the running enhancement; nothing is written.")
        elif thicknessMm is None:
            self.ui.applyButton.toolTip = _("Select an input volume.")
        elif thicknessMm <= 0:
            self.ui.applyButton.toolTip = _("Enter the slice thickness.")
        else:
            self.ui.applyButton.toolTip = _("Train on this volume and write an enhanced copy.")

    # -- run ------------------------------------------------------------------------------------------
    def _running(self) -> bool:
        batch, job = self._batch, self._job
        return (batch is not None and not batch.done) or (job is not None and job.state not in ("finished", "cancelled", "failed"))  # fmt: skip

    def onApplyButton(self) -> None:
        if self._running():
            self.appendLog(_("Cancelling..."))
            (self._batch if self._batch is not None and not self._batch.done else self._job).cancel()
            self.ui.applyButton.enabled = False
            return
        self._startRunning(self._startJob, _("Failed to start the enhancement."))

    def onQueueButton(self) -> None:
        self._startRunning(self._startQueue, _("Failed to start the enhancements."))

    def _startRunning(self, start: Callable[[], None], failure: str) -> None:
        """Start a run or a queue (once PyTorch is there); the timer shows its progress."""
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            if self.logic.ensureTorch(askConfirmation=True):
                self.ui.logTextEdit.clear()
                self.ui.progressBar.setValue(0)
                self.ui.progressBar.visible = True
                self.ui.resultInfoLabel.text = ""
                self.ui.statusLabel.text = _("Starting...")
                start()
                self._timer.start()
        self._checkCanApply()

    def _startJob(self) -> None:
        p = self._parameterNode
        self._job = self.logic.enhance(
            p.inputVolume, **self.panelOptions(), keepTempFiles=p.keepTempFiles, uncertainty=p.showUncertainty,
            previewRow=self.logic.previewRow(p.inputVolume), wait=False,
        )  # fmt: skip

    def _startQueue(self) -> None:
        p, options = self._parameterNode, self.panelOptions()
        if options.pop("save_model_path"):
            self.appendLog(_("The queue saves no model: volumes of one protocol share one trained model."))
        folder = os.path.join(slicer.app.temporaryPath, QUEUE_FOLDER)
        nodes = self.logic.studyVolumes(p.inputVolume)
        self._batch = self.logic.enhanceQueue(nodes, folder, uncertainty=p.showUncertainty, **options)
        self.appendLog(_("Queued {n} volume(s); ledger in {folder}.").format(n=len(self._batch.jobs), folder=folder))  # fmt: skip

    def panelOptions(self) -> dict:
        """The enhancement options set in the panel (by option name, as :meth:`SR4ZCTLogic.enhance` takes them);
        the spacing only when the user changed the measured one."""
        values = {field.name: getattr(self._parameterNode, field.name) for field in panel_fields()}
        measured = self._geometry.spacing_mm if self._geometry is not None else None
        return options_from_panel(values, measured_spacing_mm=measured)

    def onTimer(self) -> None:
        self._showEstimateWhenDone()
        if self._batch is not None and not self._batch.done:
            for event in self.logic.pollQueue(self._batch):  # results are loaded in here, on the main thread
                self.handleQueueEvent(event)
        elif self._job is not None:
            for event in self._job.poll():  # the result is loaded in here, on the main thread
                self.handleEvent(event)
        if not self._running() and self._estimate is None:
            self._timer.stop()
            self._checkCanApply()

    def handleQueueEvent(self, event: dict) -> None:
        kind, (done, total, fraction) = event.get("event"), self.logic.queueProgress(self._batch, event)
        self.ui.progressBar.setValue(int(round(1000 * fraction)))
        if kind == "job_progress":
            self.ui.statusLabel.text = _("Volume {i} of {n}: {text}").format(i=done + 1, n=total, text=progressText(event))  # fmt: skip
        elif kind == "job_ended":
            self.appendLog(job_ended_line(event))
        elif kind == "batch_ended":
            self._showStatus(_("Done: {done} of {n} volume(s) enhanced.").format(done=done, n=total))

    def onFinishButton(self) -> None:
        if self._running():
            self.appendLog(_("Finishing: enhancing with the best network so far..."))
            self._job.finish()
            self.ui.finishButton.enabled = False

    def onExportDicomButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to add the result to the DICOM database."), waitCursor=True):  # fmt: skip
            seriesUid = self.logic.exportToDicomDatabase(self._parameterNode.outputVolume)
            self.appendLog(_("Added to the DICOM database as series {uid}.").format(uid=seriesUid))

    def handleEvent(self, event: dict) -> None:
        """Show one event of the running job (docs/events.md); unknown ones are ignored."""
        handlers = {"progress": self._showProgress, "preview": self._showPreview, "started": self._showStarted,
                    "log": self._showLog, "finished": self._showFinished,
                    "cancelled": self._showCancelled, "failed": self._showFailed}  # fmt: skip
        handlers.get(event.get("event"), lambda e: None)(event)

    def _showProgress(self, event: dict) -> None:
        self.ui.progressBar.setValue(int(round(1000 * float(event.get("fraction") or 0.0))))
        self.ui.statusLabel.text = progressText(event)
        self._checkCanApply()

    def _showPreview(self, event: dict) -> None:
        if self.logic.showPreview(self._job, event):
            self.ui.previewLabel.text = _("Live preview (right view): {caption}").format(caption=event.get("caption", ""))  # fmt: skip
        else:
            self.ui.previewLabel.text = _("The live preview could not be shown; training goes on.")

    def _showStarted(self, event: dict) -> None:
        device = event.get("device_description") or event.get("device") or "?"
        self.appendLog(_("Worker started on {device}.").format(device=device))

    def _showLog(self, event: dict) -> None:
        self.appendLog(f"[{event.get('level', 'info')}] {event.get('message', '')}")

    def _showFinished(self, event: dict) -> None:
        self.ui.progressBar.setValue(1000)
        node = self.logic.resultNode(self._job) if self._job else None
        if node is not None and self._parameterNode:
            self._parameterNode.outputVolume = node
        self._showStatus(_("Done: {name}").format(name=node.GetName() if node else ""))
        self.ui.resultInfoLabel.text = "\n".join(result_lines(event))

    def _showCancelled(self, event: dict) -> None:
        self._showStatus(_("Cancelled; nothing was written."))

    def _showFailed(self, event: dict) -> None:
        message = str(event.get("message") or _("The enhancement failed."))
        self._showStatus(_("Failed: {message}").format(message=message))
        if event.get("detail"):
            self.appendLog(str(event["detail"]))
        slicer.util.errorDisplay(message, detailedText=str(event.get("detail") or ""))

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        self.appendLog(text)

    def appendLog(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)


class SR4ZCTLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable from the Python console without the GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._runs: dict = {}  # sr4zct.BackgroundJob -> what its result needs (input node, name, folder)
        self._queues: dict = {}  # sr4zct.batch.Batch -> its input nodes, temporary folder and result nodes
        if hasattr(slicer.app, "connect"):
            slicer.app.connect("aboutToQuit()", self.stopAllRuns)

    def getParameterNode(self):
        return SR4ZCTParameterNode(super().getParameterNode())

    # -- dependencies ---------------------------------------------------------------------------------
    @staticmethod
    def torchInstalled() -> bool:
        try:
            import PyTorchUtils
        except ImportError:
            import importlib.util

            return importlib.util.find_spec("torch") is not None
        return bool(PyTorchUtils.PyTorchUtilsLogic().torchInstalled())

    def ensureTorch(self, askConfirmation: bool = True) -> bool:
        """Make sure PyTorch is installed, offering to install it through the PyTorch extension: False when the
        user declined, ``ResourceError`` when the PyTorch extension is missing too."""
        if self.torchInstalled():
            return True
        try:
            import PyTorchUtils
        except ImportError:
            raise ResourceError(_("PyTorch is not installed. Install the 'PyTorch' extension from the Extensions "
                                  "Manager, restart Slicer, and try again.")) from None  # fmt: skip
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(_(
            "SR4ZCT needs PyTorch. It will now be downloaded and installed through the PyTorch extension, which picks "
            "the build that fits your GPU driver (or the CPU build). This may take several minutes; Slicer may look "
            "busy meanwhile."), windowTitle=_("Install PyTorch")):  # fmt: skip
            return False
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)  # fmt: skip
        return torch is not None

    @staticmethod
    def deviceDescription() -> str:
        """One line per device PyTorch can use here (:func:`sr4zct.app.environment.device_lines`)."""
        return "\n".join(device_lines())

    # -- geometry -------------------------------------------------------------------------------------
    def readGeometry(self, volumeNode) -> node_geometry.NodeGeometry:
        """Acquisition geometry of ``volumeNode``: from its DICOM headers when it has them, else from the node."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise ParameterError(_("The selected volume has no image data."))
        dimensions = volumeNode.GetImageData().GetDimensions()
        node_geometry.check_dimensions(volumeNode.GetName(), dimensions)
        series, missing = self.dicomSeries(volumeNode)
        thickness, source = (series.slice_thickness_mm, "DICOM") if series else self.thicknessOfVolume(volumeNode)  # fmt: skip
        transform = volumeNode.GetParentTransformNode()
        return node_geometry.geometry_of_node(
            dimensions=dimensions, spacing_mm=volumeNode.GetSpacing(), directions_ras=ijkToRasDirections(volumeNode),
            thickness_mm=thickness, source=source, series=series, dicom_missing=missing,
            transform_name=(transform.GetName() or "") if transform is not None else None,
        )  # fmt: skip

    @staticmethod
    def dicomSeries(volumeNode):
        """The node's DICOM series geometry (:func:`sr4zct.app.node_geometry.series_geometry`) when the node
        came from DICOM and the database has its instances, else None; and whether the database lacks them."""
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)  # absent until the DICOM module has loaded
        files = [database.fileForInstance(uid) for uid in uids] if uids and database is not None else []
        if files and all(files):
            return node_geometry.series_geometry(uids, database.instanceValue, files), False
        return None, bool(files)

    @staticmethod
    def thicknessOfVolume(volumeNode) -> tuple[float | None, str]:
        """The slice thickness of a volume not from DICOM and its source: the attribute ``SR4ZCT.sliceThicknessMm``,
        else the header of the node's file where SR4ZCT recorded it (the sample phantom, the core's outputs)."""
        attribute = volumeNode.GetAttribute(results.THICKNESS_ATTRIBUTE)
        if attribute:
            return float(attribute), _("volume node (thickness from attribute {name})").format(name=results.THICKNESS_ATTRIBUTE)  # fmt: skip
        storageNode = volumeNode.GetStorageNode()
        thickness = node_geometry.thickness_from_file(storageNode.GetFileName() if storageNode else None)
        if thickness:
            return thickness, _("volume file (thickness from its header)")
        return None, _("volume node (not DICOM)")

    # -- run ------------------------------------------------------------------------------------------
    def enhance(
        self,
        inputVolumeNode,
        options: EnhanceOptions | None = None,
        *,
        keepTempFiles: bool = False,
        outputName: str | None = None,
        showResult: bool = True,
        uncertainty: bool = False,
        wait: bool = True,
        progressCallback: Callable[[dict], None] | None = None,
        **changes,
    ):
        """Enhance the through-plane resolution of ``inputVolumeNode`` (a CT in HU) in a background process.

        ``options`` (:class:`sr4zct.EnhanceOptions`) and ``changes`` (single options by the core's names or in
        Slicer spelling: ``thicknessMm=3.0``, ``preset="fast"``, ``maxMinutes=5``) as ``sr4zct enhance --help``
        describes them; the thickness defaults to the node's (DICOM, the attribute ``SR4ZCT.sliceThicknessMm``,
        its file's header). ``keepTempFiles`` keeps the run folder (logged); ``outputName`` defaults to "<input>
        SR4ZCT" (made unique); ``showResult`` shows the live preview, then input and output side by side;
        ``uncertainty`` overlays where the coronal and sagittal estimates disagree. With ``wait`` it blocks (Slicer
        keeps redrawing; ``progressCallback`` gets every event, docs/events.md) and returns the output node, else
        the running :class:`sr4zct.BackgroundJob` (``poll()``, ``cancel()``, ``finish()``, :meth:`waitForResult`).
        """
        if inputVolumeNode is None:
            raise ParameterError(_("No input volume given."))
        geometry, name = self.readGeometry(inputVolumeNode), inputVolumeNode.GetName()
        options = (options or EnhanceOptions()).replace(**{option_name(k): v for k, v in changes.items()})
        tempDir = self.makeRunFolder()
        run = {"inputNode": inputVolumeNode, "outputName": outputName or self.uniqueNodeName(name + results.OUTPUT_SUFFIX),
               "tempDir": tempDir, "keepTempFiles": keepTempFiles, "showResult": showResult, "outputNode": None,
               "discard": False, "previewNode": None, "gainChart": None}  # fmt: skip
        job = start_run(options, geometry, name, tempDir, lambda path: self.writeVolumeFile(inputVolumeNode, path),
                        preview=showResult, uncertainty=uncertainty)  # fmt: skip
        self._runs[job] = run  # its done callbacks run in the thread that polls it: this one
        job.add_done_callback(self._onJobDone)
        logging.info(f"SR4ZCT: enhancing '{name}' ({geometry!r}) in {tempDir}")
        return self.waitForResult(job, progressCallback=progressCallback) if wait else job

    def waitForResult(
        self, job, progressCallback: Callable[[dict], None] | None = None, timeoutS: float | None = None
    ):
        """Block until ``job`` ends (Slicer keeps redrawing, the live preview is shown); return the output node
        or raise the job's error. ``timeoutS`` limits the whole wait (the job is then cancelled)."""

        def onEvent(event: dict) -> None:
            if event.get("event") == "preview":
                self.showPreview(job, event)
            if progressCallback is not None:
                progressCallback(event)

        try:
            job.wait(timeoutS, while_waiting=slicer.app.processEvents, on_event=onEvent)
        except TimeoutError:
            job.cancel()
            raise ResourceError(_("The enhancement did not finish within {seconds} s and was cancelled.").format(
                seconds=f"{timeoutS:g}")) from None  # fmt: skip
        job.outcome()  # raises sr4zct.Cancelled or the job's error
        return self.resultNode(job)

    def resultNode(self, job):
        """The output node of a finished ``job`` (None before, or when it did not finish)."""
        return self._runs.get(job, {}).get("outputNode")

    def discardResult(self, job) -> None:
        """Do not load ``job``'s result (the scene is closing)."""
        if job in self._runs:
            self._runs[job]["discard"] = True

    def _onJobDone(self, job) -> None:
        run = self._runs[job]
        try:
            if job.state == "finished" and not run["discard"]:
                run["outputNode"] = self.loadResult(run, job.result)
        finally:
            if run.get("previewNode") is not None:  # the preview goes with the run (the result replaces it)
                slicer.mrmlScene.RemoveNode(run["previewNode"])
                run["previewNode"] = None
            self.removeTempFiles(run)

    def stopAllRuns(self) -> None:
        """Slicer is quitting: cancel every running job and remove its temporary folder."""
        for job, run in list(self._runs.items()):
            if not job.done:
                run["discard"] = True
                job.cancel(grace_s=2.0)
                with contextlib.suppress(TimeoutError):
                    job.wait(timeout=3.0)
            run["keepTempFiles"] = False
            self.removeTempFiles(run)
        for batch, queue in list(self._queues.items()):
            if not batch.done:
                queue.cancel()
            queue.remove_folder()

    @staticmethod
    def makeRunFolder() -> str:
        """A new run folder in Slicer's temporary folder, after removing stale ones (:mod:`sr4zct.app.run_folder`)."""
        return str(make_run_folder(slicer.app.temporaryPath))

    @staticmethod
    def removeTempFiles(run: dict) -> None:
        """Remove the run's folder (:meth:`makeRunFolder`) unless it is to be kept."""
        if run.get("keepTempFiles"):
            logging.info(f"SR4ZCT: temporary files kept in {run['tempDir']}")
        else:
            shutil.rmtree(run["tempDir"], ignore_errors=True)

    @staticmethod
    def uniqueNodeName(name: str) -> str:
        """``name``, or ``name_2``, ``name_3`` ... when the scene already has a node of that name."""
        scene = slicer.mrmlScene
        return scene.GenerateUniqueName(name) if scene.GetFirstNodeByName(name) else name

    @staticmethod
    def writeVolumeFile(volumeNode, path: str) -> None:
        """Write ``volumeNode`` to ``path`` (NRRD keeps the geometry) through a detached storage node:
        ``slicer.util.saveNode`` would re-point the node's own one at the file (and change its compression)."""
        storageNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        try:
            storageNode.SetFileName(path)
            storageNode.UseCompressionOff()
            if not storageNode.WriteData(volumeNode):
                raise OutputError(_("Could not write the input volume to the temporary file {path} (disk full or "
                                    "not writable?).").format(path=path))  # fmt: skip
        finally:
            storageNode.UnRegister(None)

    def loadResult(self, run: dict, finished: dict):
        """Load the background process's output as a new node placed, displayed and annotated like its input."""
        inputNode = run["inputNode"]
        outputNode = self._loadVolume(finished["output_path"], run["outputName"], inputNode)
        inputDisplay = inputNode.GetScalarVolumeDisplayNode()
        if inputDisplay is not None and inputDisplay.GetColorNodeID():
            outputNode.GetScalarVolumeDisplayNode().SetAndObserveColorNodeID(inputDisplay.GetColorNodeID())
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        inputItem = shNode.GetItemByDataNode(inputNode)
        shNode.SetItemParent(shNode.GetItemByDataNode(outputNode), shNode.GetItemParent(inputItem))
        for name, value in results.result_attributes(inputNode.GetName(), finished).items():
            outputNode.SetAttribute(name, value)
        uids = (inputNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        if uids:  # the study a DICOM export joins
            outputNode.SetAttribute(results.REFERENCE_ATTRIBUTE, uids[0])
        overlay = self.loadUncertainty(finished, outputNode)
        if run["showResult"]:
            self.showSideBySide(inputNode, outputNode, overlay=overlay, chart=run.get("gainChart"))
        return outputNode

    def loadUncertainty(self, finished: dict, outputNode):
        """The coronal-sagittal disagreement as a node ``"<result> disagreement"`` (a colour overlay), if made."""
        path = finished.get("uncertainty_path")
        if not path or not os.path.isfile(path):
            return None
        node = self._loadVolume(path, outputNode.GetName() + " disagreement", outputNode, role="disagreement")
        display = node.GetScalarVolumeDisplayNode()
        if display is not None:
            display.SetAndObserveColorNodeID(UNCERTAINTY_COLOR_NODE_ID)
            display.SetWindowLevel(UNCERTAINTY_WINDOW_HU, UNCERTAINTY_WINDOW_HU / 2)
        return node

    @staticmethod
    def _loadVolume(path: str, name: str, like, role: str | None = None):
        """``path`` as a hidden node ``name`` under ``like``'s transform, with its window/level. The file goes
        with the run folder: the node is detached from it, so that saving the scene writes the volume anew."""
        node = slicer.util.loadVolume(path, {"name": name, "show": False})
        node.SetName(name)
        storageNode = node.GetStorageNode()
        if storageNode is not None:
            node.SetAndObserveStorageNodeID(None)
            slicer.mrmlScene.RemoveNode(storageNode)
        node.SetAndObserveTransformNodeID(like.GetTransformNodeID())
        if role is not None:
            node.SetAttribute(results.ATTRIBUTE_PREFIX + "role", role)
        likeDisplay, display = like.GetScalarVolumeDisplayNode(), node.GetScalarVolumeDisplayNode()
        if likeDisplay is not None and display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(likeDisplay.GetWindow(), likeDisplay.GetLevel())
        return node

    # -- several volumes: a batch with its ledger on disk ---------------------------------------------
    def enhanceQueue(
        self, volumeNodes, outputFolder: str, options: EnhanceOptions | None = None, *, uncertainty: bool = False,
        **changes,
    ):  # fmt: skip
        """Enhance several volumes one after another in the background with the ledger of ``sr4zct batch``
        (``<outputFolder>/batch.jsonl``: what was done with the same options is not redone); returns the started
        :class:`sr4zct.batch.Batch`, drained by :meth:`pollQueue`. The options (as for :meth:`enhance`) apply
        to every volume, the thickness and spacing to the first only; a volume that cannot be enhanced is
        recorded as failed and the others go on (:class:`sr4zct.app.study_queue.StudyQueue`)."""
        from sr4zct.app.study_queue import StudyQueue

        options = (options or EnhanceOptions()).replace(**{option_name(k): v for k, v in changes.items()})
        queue = StudyQueue(self.makeRunFolder(), options)
        for node in volumeNodes:  # the queue removes its folder on an error that is not the volume's
            queue.add(node, node.GetName(), lambda node=node: self.readGeometry(node),
                      lambda path, node=node: self.writeVolumeFile(node, path))  # fmt: skip
        batch = queue.start(outputFolder, uncertainty=uncertainty)
        self._queues[batch] = queue
        return batch

    def pollQueue(self, batch) -> list[dict]:
        """Batch events since the last call (first the volumes that could not be queued, recorded as failed);
        each volume done is loaded like a single result (main thread)."""
        return self._queues[batch].poll(self._loadQueueResult)

    def _loadQueueResult(self, inputNode, finished: dict):
        name = self.uniqueNodeName(inputNode.GetName() + results.OUTPUT_SUFFIX)
        return self.loadResult({"inputNode": inputNode, "showResult": False, "outputName": name}, finished)

    def cancelQueue(self, batch) -> None:
        """Stop ``batch``: no new volume starts, the running one is cancelled, no further result is loaded."""
        self._queues[batch].cancel()

    def queueOutputNodes(self, batch) -> list:
        """The result nodes of ``batch`` so far, in the order the volumes were given."""
        return self._queues[batch].outputs()

    def queueProgress(self, batch, event: dict) -> tuple[int, int, float]:
        """Volumes done, volumes queued and the fraction of the whole queue after ``event`` of ``batch``."""
        return self._queues[batch].progress(event)

    @staticmethod
    def isEnhanceable(node) -> bool:
        """A CT scalar volume (:func:`sr4zct.app.study_queue.is_enhanceable`): not a label map, vector or tensor
        volume, nothing this module made, and CT when its DICOM modality is known."""
        if node is None:
            return False
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        modality = database.instanceValue(uids[0], TAG_MODALITY) if uids and database is not None else ""
        made = results.made_by_sr4zct(node.GetAttributeNames() or ())
        return is_enhanceable(node.GetClassName(), made, modality)

    def studyVolumes(self, volumeNode) -> list:
        """Every CT scalar volume in ``volumeNode``'s study (subject hierarchy), ``volumeNode`` first
        (:meth:`isEnhanceable`)."""
        shNode = slicer.mrmlScene.GetSubjectHierarchyNode()
        study = shNode.GetItemParent(shNode.GetItemByDataNode(volumeNode))
        children = vtk.vtkIdList()
        shNode.GetItemChildren(study, children, True)
        found = [shNode.GetItemDataNode(children.GetId(i)) for i in range(children.GetNumberOfIds())]
        return [volumeNode] + [n for n in found if n is not volumeNode and self.isEnhanceable(n)]

    # -- live preview ---------------------------------------------------------------------------------
    def previewRow(self, inputNode) -> int | None:
        """The row (coronal image) of ``inputNode`` that a coronal slice view shows now, else None (centre)."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None or inputNode is None:
            return None
        for viewName in ("Yellow", "Red", "Green"):
            sliceWidget = layoutManager.sliceWidget(viewName)
            sliceNode = sliceWidget.mrmlSliceNode() if sliceWidget is not None else None
            if sliceNode is not None and sliceNode.GetOrientation() == "Coronal":
                rasToIjk = vtk.vtkMatrix4x4()
                inputNode.GetRASToIJKMatrix(rasToIjk)
                return node_geometry.row_at([sliceNode.GetSliceToRAS().GetElement(i, 3) for i in range(3)],
                                            [[rasToIjk.GetElement(r, c) for c in range(4)] for r in range(4)],
                                            self.readGeometry(inputNode).axis, inputNode.GetImageData().GetDimensions())  # fmt: skip
        return None

    def showPreview(self, job, event: dict) -> bool:
        """Show a ``preview`` event: its coronal image as ``"<input> SR4ZCT preview"`` beside the original, its
        gain on the validation-gain chart; False when the image could not be shown (the run goes on)."""
        run = self._runs.get(job)
        if run is None or run["discard"] or not os.path.isfile(event.get("path", "")):
            return False
        inputNode = run["inputNode"]
        previous = run["previewNode"]
        try:
            node = self._loadVolume(event["path"], inputNode.GetName() + " SR4ZCT preview", inputNode, role="preview")  # fmt: skip
        except RuntimeError as exc:  # e.g. the disk is full: the run itself may still succeed
            logging.warning(_("SR4ZCT: the live preview could not be loaded: {error}").format(error=exc))
            return False
        run["previewNode"] = node
        if previous is not None:
            slicer.mrmlScene.RemoveNode(previous)
        self._addGainPoint(run, event)
        if run["showResult"]:
            self.showSideBySide(inputNode, node, centreOn=node, chart=run["gainChart"])
        return True

    def _addGainPoint(self, run: dict, event: dict) -> None:
        if run.get("gainChart") is None:
            run["gainChart"] = self.gainChart(run["inputNode"])
        table = slicer.mrmlScene.GetNodeByID(run["gainChart"].GetNthPlotSeriesNode(0).GetTableNodeID())
        row = table.AddEmptyRow()
        table.SetCellText(row, 0, f"{float(event.get('elapsed_s') or 0.0):.1f}")
        table.SetCellText(row, 1, f"{float(event.get('validation_gain_db') or 0.0):.3f}")

    @staticmethod
    def gainChart(inputNode):
        """The chart ``"<input> SR4ZCT validation gain"`` (its table, series and chart nodes), emptied for a new
        run: one set per input volume, reused by every later run on it."""
        name = inputNode.GetName() + " SR4ZCT validation gain"
        nodes = {}
        for className in ("vtkMRMLTableNode", "vtkMRMLPlotSeriesNode", "vtkMRMLPlotChartNode"):
            nodes[className] = slicer.mrmlScene.GetFirstNode(name, className, None, True)
            if nodes[className] is None:
                nodes[className] = slicer.mrmlScene.AddNewNodeByClass(className, name)
                nodes[className].SetAttribute(results.ATTRIBUTE_PREFIX + "role", "validation gain")
        table, series, chart = nodes.values()
        table.RemoveAllColumns()
        for column in ("elapsed_s", "validation_gain_db"):
            table.AddColumn(vtk.vtkDoubleArray()).SetName(column)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("elapsed_s")
        series.SetYColumnName("validation_gain_db")
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        chart.RemoveAllPlotSeriesNodeIDs()
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetTitle(_("Validation gain of the best network so far"))
        chart.SetXAxisTitle(_("training time (s)"))
        chart.SetYAxisTitle(_("held-out validation gain over linear interpolation (dB)"))
        return chart

    # -- DICOM ----------------------------------------------------------------------------------------
    def exportToDicomDatabase(self, outputNode) -> str:
        """Write ``outputNode`` as a derived DICOM series in its input's study (new series UID, SeriesDescription
        ending in "SR4ZCT", ImageType DERIVED\\SECONDARY, the parameters in ImageComments) and import it into
        Slicer's DICOM database; returns the new SeriesInstanceUID."""
        from DICOMLib import DICOMUtils

        if outputNode is None:
            raise ParameterError(_("No enhanced volume to export."))
        database = getattr(slicer, "dicomDatabase", None)
        if database is None:
            raise ResourceError(_("The DICOM database is not open: open the DICOM module once, then try again."))  # fmt: skip
        uid = outputNode.GetAttribute(results.REFERENCE_ATTRIBUTE)
        attributes = {name: outputNode.GetAttribute(name) for name in outputNode.GetAttributeNames() or ()}
        with results.dicom_export(self.volumeFromNode(outputNode), attributes, outputNode.GetName(),
                                  database.fileForInstance(uid) if uid else None, slicer.app.temporaryPath) as (series, seriesUid):  # fmt: skip
            if not DICOMUtils.importDicom(str(series), database, copyFiles=True):
                raise OutputError(_("Slicer could not import the written DICOM series into its database."))
        return seriesUid

    @staticmethod
    def showSideBySide(
        inputNode, outputNode, orientation: str = "Coronal", overlay=None, centreOn=None, chart=None
    ) -> None:
        """Red view = original, Yellow view = ``outputNode`` (with ``overlay`` as a colour foreground), both
        ``orientation``, linked (same slice, same window/level); ``centreOn`` a node puts both views on it.
        With a ``chart`` (the validation gain), the layout has a plot view below the two that shows it."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no GUI (e.g. Slicer started with --no-main-window)
            return
        if chart is None:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        else:
            layoutNode = layoutManager.layoutLogic().GetLayoutNode()
            if not layoutNode.IsLayoutDescription(LAYOUT_ID):
                with open(LAYOUT_FILE, encoding="utf-8") as f:
                    layoutNode.AddLayoutDescription(LAYOUT_ID, f.read())
            layoutManager.setLayout(LAYOUT_ID)
            selection = slicer.app.applicationLogic().GetSelectionNode()
            selection.SetActivePlotChartID(chart.GetID())
            slicer.app.applicationLogic().PropagatePlotChartSelection()
        for viewName, node in (("Red", inputNode), ("Yellow", outputNode)):
            sliceWidget = layoutManager.sliceWidget(viewName)
            compositeNode = sliceWidget.sliceLogic().GetSliceCompositeNode()
            compositeNode.SetBackgroundVolumeID(node.GetID())
            over = overlay if viewName == "Yellow" else None
            compositeNode.SetForegroundVolumeID(over.GetID() if over is not None else None)
            compositeNode.SetForegroundOpacity(UNCERTAINTY_OPACITY if over is not None else 0.0)
            compositeNode.SetLinkedControl(True)
            sliceWidget.mrmlSliceNode().SetOrientation(orientation)
        if centreOn is None:
            slicer.util.resetSliceViews()
            return
        bounds = [0.0] * 6
        centreOn.GetRASBounds(bounds)
        centre = [(bounds[2 * i] + bounds[2 * i + 1]) / 2 for i in range(3)]
        for viewName in ("Red", "Yellow"):
            layoutManager.sliceWidget(viewName).mrmlSliceNode().JumpSliceByOffsetting(*centre)

    # -- conversions used by the sample data and the self-test ----------------------------------------
    @staticmethod
    def addVolumeNode(volume, name: str):
        """Add a core :class:`~sr4zct.volume.Volume` (array ``(slice, row, column)``) as a scalar volume node."""
        import numpy as np

        array = np.ascontiguousarray(volume.array, dtype=np.float32)
        ijkToRas = np.array(node_geometry.ijk_to_ras(volume.geometry))
        node = slicer.util.addVolumeFromArray(array, ijkToRAS=ijkToRas, name=name)
        if volume.geometry.slice_thickness_mm:
            node.SetAttribute(results.THICKNESS_ATTRIBUTE, f"{volume.geometry.slice_thickness_mm:g}")
        return node

    @staticmethod
    def volumeFromNode(volumeNode, thicknessMm: float | None = None):
        """The node's voxels as a core :class:`~sr4zct.volume.Volume` with K as the slice axis (array KJI)."""
        import numpy as np

        array = np.asarray(slicer.util.arrayFromVolume(volumeNode), dtype=np.float32)
        geometry = node_geometry.kji_geometry(array.shape, volumeNode.GetSpacing(), ijkToRasDirections(volumeNode),
                                              volumeNode.GetOrigin(), thickness_mm=thicknessMm, name=volumeNode.GetName())  # fmt: skip
        return sr4zct.Volume(array, geometry)


class SR4ZCTTest(ScriptedLoadableModuleTest):
    """The self-test. "Reload and Test" calls :meth:`runTest`; ctest loads the ``test_*`` methods by name, so each
    test that needs PyTorch skips itself without it (the Extensions Index's build machines have none)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        torch = SR4ZCTLogic.torchInstalled()
        tests = [self.test_geometry_of_node, self.test_sample_data]
        for test in tests + ([self.test_enhance_beats_linear] if torch else []):
            self.setUp()
            test()
        if not torch:  # a note, not an error: the rest of the self-test needs PyTorch
            slicer.util.infoDisplay(TORCH_MISSING_FOR_TEST, windowTitle=_("SR4ZCT self-test"))

    def requireTorch(self) -> None:
        if not SR4ZCTLogic.torchInstalled():
            self.skipTest(TORCH_MISSING_FOR_TEST)

    def test_geometry_of_node(self):
        import numpy as np

        array = np.full((12, 40, 48), -1000, dtype=np.int16)  # (K, J, I): 12 slices every 2 mm
        node = slicer.util.addVolumeFromArray(array, ijkToRAS=np.diag([0.75, 0.75, 2.0, 1.0]), name="thick")
        node.SetAttribute(results.THICKNESS_ATTRIBUTE, "3")
        g = SR4ZCTLogic().readGeometry(node)
        self.assertEqual((g.axis, g.thickness_mm, g.spacing_mm, g.overlap_mm), (2, 3.0, 2.0, 1.0))

    def test_sample_data(self):
        """The phantom of Sample Data loads without PyTorch, its thickness read from its file."""
        import SampleData

        registerSampleData()
        node = SampleData.SampleDataLogic().downloadSample(PHANTOM_SAMPLE_NAME)
        g = SR4ZCTLogic().readGeometry(node)
        self.assertEqual((node.GetName(), g.n_slices), (PHANTOM_SAMPLE_NAME, 44))
        self.assertEqual((g.thickness_mm, g.spacing_mm), (3.0, 2.0))

    def test_enhance_beats_linear(self):
        self.requireTorch()
        from sr4zct.demo.evaluation import interpolate_baseline, score
        from sr4zct.demo.phantom import make_demo_case

        self.delayDisplay("Building a small phantom (3 mm slices every 2 mm)")
        groundTruth, thick = make_demo_case(thickness_mm=3.0, spacing_mm=2.0, shape=(48, 80, 80), voxel_mm=0.75)  # fmt: skip
        inputNode = SR4ZCTLogic.addVolumeNode(thick, "thick")
        self.delayDisplay("Running a short SR4ZCT job")
        outputNode = SR4ZCTLogic().enhance(inputNode, preset="fast", maxMinutes=SELFTEST_MINUTES, showResult=False)  # fmt: skip

        self.assertEqual(outputNode.GetName(), "thick" + results.OUTPUT_SUFFIX)
        spacing = outputNode.GetSpacing()
        self.assertAlmostEqual(spacing[2], 0.75, places=4)
        self.assertAlmostEqual(spacing[0], inputNode.GetSpacing()[0], places=4)
        for a, b in zip(outputNode.GetOrigin(), inputNode.GetOrigin(), strict=True):
            self.assertAlmostEqual(a, b, places=3)
        self.assertAlmostEqual(float(outputNode.GetAttribute("SR4ZCT.thickness_mm")), 3.0)

        # The core's evaluation protocol: result and linear interpolation scored on the ground truth's grid.
        result = SR4ZCTLogic.volumeFromNode(outputNode)
        enhanced = score(result, groundTruth, 3.0)["psnr_db"]
        linear = score(interpolate_baseline(thick, "linear"), groundTruth, 3.0)["psnr_db"]
        self.delayDisplay(f"Body-box PSNR: SR4ZCT {enhanced:.2f} dB, linear {linear:.2f} dB")
        self.assertGreater(enhanced, linear)
        self.delayDisplay("Test passed")
