"""The Slicer module SR4ZCT.py under stand-ins for Slicer's API (no Slicer needed).

The stand-ins (``slicer_stubs``) are explicit classes with Slicer's method names; the module's background
jobs are REAL worker processes (a ``PythonSlicer`` on PATH that runs this Python), so the whole flow
"select volume -> Enhance -> progress -> result node placed and shown" is exercised end to end.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import slicer_stubs
from slicer_stubs import mrml
from sr4zct.errors import ParameterError, SR4ZCTError

RUN_TIMEOUT_S = 90.0


@pytest.fixture
def python_slicer(tmp_path, monkeypatch):
    """A ``PythonSlicer`` launcher on PATH that runs the current interpreter (as Slicer's does)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    launcher = bindir / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return launcher


@pytest.fixture
def stubs(tmp_path, monkeypatch):
    return slicer_stubs.install(monkeypatch, tmp_path)


def _short_runs(monkeypatch, module, max_minutes: float) -> None:
    """Cap the worker's time budget for runs started from the GUI (the panel has no such field)."""
    original = module.SR4ZCTLogic.enhance

    def enhance(self, *args, **kwargs):
        kwargs.setdefault("maxMinutes", max_minutes)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(module.SR4ZCTLogic, "enhance", enhance)


def _small_ct(slicer, name="CT", thickness="3"):
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(np.arange(14), np.arange(36), np.arange(36), indexing="ij")
    body = ((y - 18) ** 2 + (x - 18) ** 2 < 14**2).astype(np.float32)
    array = -1000 + body * (1040 + 200 * np.sin(z / 2.0)) + rng.normal(0, 5, body.shape)
    node = slicer_stubs.volume_node_from_array(
        slicer, array.astype(np.float32), spacing=(0.75, 0.75, 2.0), origin=(10.0, -20.0, -100.0), name=name
    )
    if thickness:
        node.SetAttribute("SR4ZCT.sliceThicknessMm", thickness)
    return node


def _make_widget(stubs):
    module = stubs.module
    widget = module.SR4ZCTWidget()
    widget.setup()
    return widget


def _select(widget, node):
    widget.ui.inputSelector.setCurrentNode(node)


def _drain(widget, timeout_s=RUN_TIMEOUT_S):
    timer = widget._timer
    start = time.monotonic()
    while timer.isActive():
        timer.fire()
        if time.monotonic() - start > timeout_s:
            widget._job.kill()
            pytest.fail("the background job did not end in time")
        time.sleep(0.05)


# ---- module object, sample data ------------------------------------------------------------------------


def test_module_metadata_and_sample_data_registration(stubs):
    module = stubs.module
    parent = slicer_stubs.qSlicerScriptedLoadableModule()
    module.SR4ZCT(parent)
    assert parent.categories == ["Filtering"]
    assert "SR4ZCT" in parent.title
    assert "MLMI 2023" in parent.acknowledgementText
    assert stubs.slicer.app.connections("startupCompleted()") == [module.registerSampleData]

    stubs.slicer.app.emit("startupCompleted()")
    sources = stubs.sampleData.SampleDataLogic.sources["SR4ZCT"]
    assert [s.sampleName for s in sources] == ["SR4ZCTPhantom"]
    assert sources[0].customDownloader is module.loadPhantomSample
    assert Path(sources[0].thumbnailFileName).is_file()


# ---- geometry -------------------------------------------------------------------------------------------


def test_through_plane_axis_from_directions_and_spacing(stubs):
    axis = stubs.module.throughPlaneAxis
    eye = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert axis(eye, (0.7, 0.7, 2.0)) == 2
    assert axis(eye, (3.0, 0.7, 0.7)) == 0  # sagittal stack: slices along I
    # with the DICOM stacking direction the spacing does not matter
    assert axis(eye, (0.7, 0.7, 0.7), stackingDirectionRas=(0, 1, 0)) == 1
    # ties in spacing: the axis closest to S-I
    assert axis([[0, 0, 1], [0, 1, 0], [1, 0, 0]], (1.0, 1.0, 1.0)) == 0


def test_geometry_of_a_sagittal_non_dicom_volume_uses_the_coarse_axis(stubs):
    slicer = stubs.slicer
    # volume whose I axis runs R-L with 3 mm steps: the slice axis is I, not K
    node = slicer_stubs.volume_node_from_array(
        slicer, np.zeros((40, 32, 12), np.float32), spacing=(3.0, 0.8, 0.8), name="sag"
    )
    geometry = stubs.module.SR4ZCTLogic().readGeometry(node)
    assert geometry.axis == 0
    assert geometry.numberOfSlices == 12
    assert geometry.spacingMm == pytest.approx(3.0)
    assert geometry.thicknessMm is None
    assert geometry.inPlaneSpacingMm == (0.8, 0.8)


def _l291_node(stubs, l291_dir):
    """A node as Slicer's DICOM plugin loads L291: slices in position order, I=-x, J=-y (RAS), K=+z."""
    slicer = stubs.slicer
    db = slicer.dicomDatabase
    uids = sorted(db.instanceUids, key=lambda u: float(db.instanceValue(u, "0020,0032").split("\\")[2]))
    first = [float(v) for v in db.instanceValue(uids[0], "0020,0032").split("\\")]
    voxels = np.broadcast_to(np.int16(0), (len(uids), 512, 512))  # shape only, no memory
    node = slicer_stubs.volume_node_from_array(
        slicer,
        voxels,
        spacing=(0.7421875, 0.7421875, 2.0),
        origin=(-first[0], -first[1], first[2]),
        directions=np.diag([-1.0, -1.0, 1.0]),
        name="3: L291",
    )
    node.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
    return node


@pytest.fixture(scope="module")
def l291_database(l291_dir):
    """The stand-in DICOM database, filled once from the real L291 headers."""
    return slicer_stubs.ctkDICOMDatabase(sorted(p for p in l291_dir.iterdir() if p.is_file()))


@pytest.fixture
def l291_stubs(tmp_path, monkeypatch, l291_database):
    l291_database.calls.clear()
    return slicer_stubs.install(monkeypatch, tmp_path, dicom_database=l291_database)


def test_l291_geometry_read_from_the_dicom_database(l291_stubs, l291_dir):
    node = _l291_node(l291_stubs, l291_dir)
    geometry = l291_stubs.module.SR4ZCTLogic().readGeometry(node)
    assert geometry.source == "DICOM"
    assert geometry.thicknessMm == pytest.approx(3.0)
    assert geometry.spacingMm == pytest.approx(2.0)
    assert geometry.overlapMm == pytest.approx(1.0)
    assert geometry.numberOfSlices == 343
    assert geometry.axis == 2
    assert geometry.inPlaneSpacingMm == pytest.approx((0.7421875, 0.7421875))
    assert geometry.warnings == []
    # it really asked the database, per slice, for the thickness and the position
    tags = {call[2] for call in l291_stubs.slicer.dicomDatabase.calls}
    assert {"0018,0050", "0020,0032", "0020,0037", "0028,0030"} <= tags


def test_l291_panel_shows_thickness_spacing_overlap(l291_stubs, l291_dir):
    node = _l291_node(l291_stubs, l291_dir)
    widget = _make_widget(l291_stubs)
    _select(widget, node)
    ui = widget.ui
    assert ui.sourceValueLabel.text == "DICOM"
    assert ui.thicknessSpinBox.value == pytest.approx(3.0)
    assert ui.spacingSpinBox.value == pytest.approx(2.0)
    assert ui.overlapValueLabel.text == "1 mm (overlapping)"
    assert ui.slicesValueLabel.text.startswith("343 slices")
    assert "0.7422" in ui.inPlaneValueLabel.text
    assert not ui.warningLabel.visible
    assert ui.applyButton.enabled
    assert widget._parameterNode.thicknessMm == pytest.approx(3.0)


def test_dicom_geometry_warnings_reach_the_panel(l291_stubs, l291_dir):
    """Drop one slice from the uid list: the core reports the gap; the count mismatch is reported too."""
    node = _l291_node(l291_stubs, l291_dir)
    uids = node.GetAttribute("DICOM.instanceUIDs").split()
    node.SetAttribute("DICOM.instanceUIDs", " ".join(uids[:100] + uids[101:]))
    widget = _make_widget(l291_stubs)
    _select(widget, node)
    assert widget.ui.warningLabel.visible
    text = widget.ui.warningLabel.text
    assert "342" in text and "343" in text


def test_acquisition_transform_is_reported(stubs):
    slicer = stubs.slicer
    node = _small_ct(slicer)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", "CT acquisition transform")
    node.SetAndObserveTransformNodeID(transform.GetID())
    geometry = stubs.module.SR4ZCTLogic().readGeometry(node)
    assert any("acquisition transform" in w for w in geometry.warnings)


def test_non_dicom_volume_needs_a_thickness(stubs):
    slicer = stubs.slicer
    node = _small_ct(slicer, thickness=None)
    widget = _make_widget(stubs)
    _select(widget, node)
    ui = widget.ui
    assert ui.thicknessSpinBox.value == 0.0
    assert not ui.applyButton.enabled
    assert ui.warningLabel.visible and "thickness" in ui.warningLabel.text.lower()
    ui.thicknessSpinBox.setValue(2.5)  # the user types it
    assert widget._parameterNode.thicknessMm == 2.5
    assert ui.applyButton.enabled
    assert ui.overlapValueLabel.text == "0.5 mm (overlapping)"
    with pytest.raises(ParameterError, match="thickness"):
        stubs.module.SR4ZCTLogic().enhance(node, wait=False)


def test_parameter_node_round_trip_through_the_panel(stubs):
    widget = _make_widget(stubs)
    ui, p = widget.ui, widget._parameterNode
    assert [ui.presetComboBox.itemText(i) for i in range(ui.presetComboBox.count)] == [
        "fast",
        "balanced",
        "best",
    ]
    assert ui.presetComboBox.currentText == "balanced"
    ui.presetComboBox.currentText = "fast"
    ui.profileComboBox.currentText = "gaussian"
    ui.deviceComboBox.currentText = "cpu"
    ui.seedSpinBox.setValue(7)
    ui.keepTempFilesCheckBox.click()
    ui.saveModelPathLineEdit.text = "/tmp/model.pt"
    assert (p.preset, p.profile, p.device, p.seed, p.keepTempFiles, p.saveModelPath) == (
        "fast",
        "gaussian",
        "cpu",
        7,
        True,
        "/tmp/model.pt",
    )
    p.targetSpacingMm = 1.0  # scripted change shows in the GUI
    assert ui.targetSpacingSpinBox.value == 1.0


# ---- running --------------------------------------------------------------------------------------------


def test_full_run_from_the_panel(stubs, python_slicer, monkeypatch):
    slicer, module = stubs.slicer, stubs.module
    _short_runs(monkeypatch, module, 0.05)
    node = _small_ct(slicer)
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient"), "study")
    sh.SetItemParent(sh.GetItemByDataNode(node), study)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    node.SetAndObserveTransformNodeID(transform.GetID())
    node.GetScalarVolumeDisplayNode().SetWindowLevel(400.0, 40.0)

    widget = _make_widget(stubs)
    _select(widget, node)
    widget.ui.presetComboBox.currentText = "fast"
    assert widget.ui.applyButton.text == "Enhance through-plane"
    widget.ui.applyButton.click()
    assert stubs.util.errors == []
    job = widget._job
    run = widget.logic._runs[job]
    assert widget.ui.applyButton.text == "Cancel"
    assert widget._timer.isActive()
    spec = job.options
    assert spec.thickness_mm == 3.0 and spec.spacing_mm is None and spec.target_spacing_mm is None
    assert (spec.preset, spec.profile, spec.device, spec.seed) == ("fast", "box", "auto", 0)
    assert spec.slice_axis == 0  # K, the panel's through-plane axis, is NumPy axis 0 of the NRRD
    assert job._command[0] == str(python_slicer)
    assert Path(job.input_path).parent == Path(run["tempDir"])
    assert Path(run["tempDir"]).parent == Path(slicer.app.temporaryPath)
    writes = [c[1] for c in mrml.CALLS if c[0] == "WriteData"]
    assert writes == [(writes[0][0], node, job.input_path, 0)]  # uncompressed, by a detached storage node
    assert node.GetStorageNode() is None  # the user's node was not re-pointed at the temporary file

    _drain(widget)
    assert job.terminal["event"] == "finished", job.terminal
    out = widget.logic.resultNode(job)
    assert out is not None and out.GetName() == "CT SR4ZCT"
    assert slicer.mrmlScene.GetFirstNodeByName("CT SR4ZCT") is out
    # geometry: same in-plane grid and origin, z spacing = in-plane pixel size
    assert out.GetSpacing() == pytest.approx((0.75, 0.75, 0.75))
    assert out.GetOrigin() == pytest.approx(node.GetOrigin())
    assert out.GetImageData().GetDimensions() == (36, 36, 1 + int(13 * 2.0 / 0.75))
    # placed like the input
    assert out.GetTransformNodeID() == transform.GetID()
    display = out.GetScalarVolumeDisplayNode()
    assert (display.GetWindow(), display.GetLevel(), display.GetAutoWindowLevel()) == (400.0, 40.0, 0)
    assert sh.GetItemParent(sh.GetItemByDataNode(out)) == study
    assert float(out.GetAttribute("SR4ZCT.thickness_mm")) == 3.0
    assert out.GetAttribute("SR4ZCT.preset") == "fast"
    assert out.GetAttribute("SR4ZCT.inputVolume") == "CT"
    assert out.GetAttribute("SR4ZCT.sr4zct_version")
    # shown side by side, coronal, linked
    lm = slicer.app.layoutManager()
    assert lm.layout == mrml.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    red, yellow = lm.sliceWidget("Red"), lm.sliceWidget("Yellow")
    assert red.sliceLogic().GetSliceCompositeNode().GetBackgroundVolumeID() == node.GetID()
    assert yellow.sliceLogic().GetSliceCompositeNode().GetBackgroundVolumeID() == out.GetID()
    assert red.sliceLogic().GetSliceCompositeNode().GetLinkedControl() == 1
    assert yellow.sliceLogic().GetSliceCompositeNode().GetLinkedControl() == 1
    assert red.mrmlSliceNode().GetOrientation() == yellow.mrmlSliceNode().GetOrientation() == "Coronal"
    # panel state afterwards
    assert widget.ui.progressBar.value == 1000
    assert widget.ui.applyButton.text == "Enhance through-plane" and widget.ui.applyButton.enabled
    assert "Done" in widget.ui.statusLabel.text
    assert "Worker started" in widget.ui.logTextEdit.toPlainText()
    assert widget._parameterNode.outputVolume is out
    assert not Path(run["tempDir"]).exists()  # temp files removed ...
    assert out.GetStorageNode() is None  # ... and the result no longer refers to them


def test_cancel_from_the_panel(stubs, python_slicer, monkeypatch):
    slicer, module = stubs.slicer, stubs.module
    _short_runs(monkeypatch, module, 5.0)
    node = _small_ct(slicer)
    widget = _make_widget(stubs)
    _select(widget, node)
    widget.ui.applyButton.click()
    job = widget._job
    start = time.monotonic()
    while not any("Worker started" in line for line in widget.ui.logTextEdit.toPlainText().splitlines()):
        widget._timer.fire()
        time.sleep(0.05)
        assert time.monotonic() - start < 30, "worker did not start"
    widget.ui.applyButton.click()  # the button reads "Cancel" now
    t0 = time.monotonic()
    _drain(widget)
    assert time.monotonic() - t0 < 15
    assert job.terminal["event"] == "cancelled"
    assert widget.logic.resultNode(job) is None
    assert slicer.mrmlScene.GetFirstNodeByName("CT SR4ZCT") is None
    assert "Cancelled" in widget.ui.statusLabel.text
    assert widget.ui.applyButton.text == "Enhance through-plane"
    assert stubs.util.loaded == []


def test_failed_run_shows_the_workers_message(stubs, python_slicer):
    slicer = stubs.slicer
    node = _small_ct(slicer)
    widget = _make_widget(stubs)
    _select(widget, node)
    widget.ui.modelPathLineEdit.text = str(Path(slicer.app.temporaryPath) / "no-such-model.pt")
    widget.ui.applyButton.click()
    _drain(widget)
    assert widget._job.terminal["event"] == "failed"
    assert widget.ui.statusLabel.text.startswith("Failed:")
    assert len(stubs.util.errorDialogs) == 1
    assert (
        "no-such-model" in stubs.util.errorDialogs[0][0] or "model" in stubs.util.errorDialogs[0][0].lower()
    )


def test_scripting_enhance_waits_and_returns_the_node(stubs, python_slicer):
    slicer, module = stubs.slicer, stubs.module
    node = _small_ct(slicer, thickness=None)
    events = []
    out = module.SR4ZCTLogic().enhance(
        node, thicknessMm=3.0, targetSpacingMm=1.0, preset="fast", maxMinutes=0.05, showResult=False,
        progressCallback=events.append,
    )  # fmt: skip
    assert out.GetName() == "CT SR4ZCT"
    assert out.GetSpacing()[2] == pytest.approx(1.0)
    assert float(out.GetAttribute("SR4ZCT.target_spacing_mm")) == 1.0
    assert [e["event"] for e in events][-1] == "finished"
    assert any(e["event"] == "progress" for e in events)
    assert slicer.app.layoutManager().layout != mrml.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert slicer.app.processEventsCalls > 0  # Slicer stayed responsive while waiting


def test_the_worker_reads_the_panels_through_plane_axis(stubs, python_slicer):
    slicer, module = stubs.slicer, stubs.module
    # a sagittal stack: the slices run along I (NumPy axis 2 of the NRRD handed to the worker)
    node = slicer_stubs.volume_node_from_array(
        slicer, np.zeros((40, 32, 12), np.float32), spacing=(3.0, 0.8, 0.8), name="sag"
    )
    missing = Path(slicer.app.temporaryPath) / "no-such-model.pt"
    logic = module.SR4ZCTLogic()
    job = logic.enhance(node, thicknessMm=4.0, modelPath=str(missing), wait=False)
    assert job.options.slice_axis == 2 and "--slice-axis" in job._command
    assert job._command[job._command.index("--slice-axis") + 1] == "2"
    with pytest.raises(SR4ZCTError, match="model"):
        logic.waitForResult(job, timeoutS=RUN_TIMEOUT_S)


def test_missing_python_slicer_is_a_clear_error(stubs, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    node = _small_ct(stubs.slicer)
    from sr4zct.errors import ResourceError

    with pytest.raises(ResourceError, match="PythonSlicer"):
        stubs.module.SR4ZCTLogic().enhance(node, wait=False)


# ---- PyTorch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [False, True])
def test_missing_torch_offers_the_pytorch_extension(tmp_path, monkeypatch, answer):
    stubs = slicer_stubs.install(monkeypatch, tmp_path, torch_installed=False)
    stubs.util.confirmAnswer = answer
    logic = stubs.module.SR4ZCTLogic()
    assert logic.ensureTorch(askConfirmation=True) is answer
    assert len(stubs.util.confirmations) == 1
    assert "minutes" in stubs.util.confirmations[0]
    installs = [c for c in stubs.pytorchCalls if c[0] == "installTorch"]
    if answer:
        assert installs == [("installTorch", False, None, ">=2.1")]
    else:
        assert installs == []


def test_apply_does_nothing_when_torch_install_declined(tmp_path, monkeypatch):
    stubs = slicer_stubs.install(monkeypatch, tmp_path, torch_installed=False)
    stubs.util.confirmAnswer = False
    node = _small_ct(stubs.slicer)
    widget = _make_widget(stubs)
    _select(widget, node)
    widget.ui.applyButton.click()
    assert widget._job is None
    assert not widget._timer.isActive()
    assert not [c for c in mrml.CALLS if c[0] == "WriteData"]


def test_without_pytorch_extension_the_message_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    stubs = slicer_stubs.install(monkeypatch, tmp_path, torch_installed=None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else object())
    from sr4zct.errors import ResourceError

    with pytest.raises(ResourceError, match="PyTorch"):
        stubs.module.SR4ZCTLogic().ensureTorch()


# ---- small helpers ------------------------------------------------------------------------------------


def test_progress_text_and_durations(stubs):
    module = stubs.module
    assert module.formatDuration(None) == ""
    assert module.formatDuration(12.4) == "12 s"
    assert module.formatDuration(250) == "4 min 10 s"
    assert module.formatDuration(3900) == "1 h 05 min"
    text = module.progressText(
        {"event": "progress", "stage": "train", "step": 120, "total": 3000, "eta_s": 250}
    )
    assert text == "Training 120/3000 - about 4 min 10 s left"


# ---- node <-> core volume conversions, the in-Slicer self-test's first part ---------------------------


def test_core_volume_round_trips_through_a_node(stubs):
    from sr4zct import Volume, make_geometry

    logic = stubs.module.SR4ZCTLogic
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    # an oblique stack: slices advance along a tilted axis, rows along y, columns along a rotated x
    c, s = np.cos(0.3), np.sin(0.3)
    axes = ((s, 0.0, c), (0.0, 1.0, 0.0), (c, 0.0, -s))
    volume = Volume(
        array,
        make_geometry(array.shape, slice_spacing_mm=2.5, pixel_spacing_mm=(0.8, 0.7), slice_thickness_mm=3.0,
                      origin_lps=(10.0, -5.0, 30.0), axes_lps=axes),
    )  # fmt: skip
    node = logic.addVolumeNode(volume, "oblique")
    assert node.GetSpacing() == pytest.approx((0.7, 0.8, 2.5))
    assert node.GetOrigin() == pytest.approx((-10.0, 5.0, 30.0))  # LPS -> RAS
    assert node.GetAttribute("SR4ZCT.sliceThicknessMm") == "3"
    back = logic.volumeFromNode(node, thicknessMm=3.0)
    np.testing.assert_array_equal(back.array, array)
    assert back.geometry.spacing_mm == pytest.approx(volume.geometry.spacing_mm)
    assert back.geometry.origin_lps == pytest.approx(volume.geometry.origin_lps)
    assert np.allclose(back.geometry.axes_lps, axes)
    geometry = stubs.module.SR4ZCTLogic().readGeometry(node)
    assert (geometry.axis, geometry.thicknessMm, geometry.spacingMm) == (2, 3.0, 2.5)


def test_selftest_geometry_part_and_phantom_sample(stubs):
    module = stubs.module
    module.SR4ZCTTest("test_geometry_of_node").test_geometry_of_node()
    node = module.loadPhantomSample(shape=(40, 64, 64))
    assert node.GetName() == "SR4ZCTPhantom"
    geometry = module.SR4ZCTLogic().readGeometry(node)
    assert (geometry.thicknessMm, geometry.spacingMm, geometry.overlapMm) == (3.0, 2.0, 1.0)
    assert geometry.numberOfSlices == node.GetImageData().GetDimensions()[2]


def test_bad_option_is_refused_before_anything_is_written(stubs, python_slicer):
    node = _small_ct(stubs.slicer)
    with pytest.raises(ParameterError, match="profile"):
        stubs.module.SR4ZCTLogic().enhance(node, profile="triangle", wait=False)
    assert not [c for c in mrml.CALLS if c[0] == "WriteData"]
    assert list(Path(stubs.slicer.app.temporaryPath).iterdir()) == []  # no temp folder left behind


def test_closing_the_scene_cancels_a_running_job(stubs, python_slicer, monkeypatch):
    slicer, module = stubs.slicer, stubs.module
    _short_runs(monkeypatch, module, 5.0)
    widget = _make_widget(stubs)
    _select(widget, _small_ct(slicer))
    widget.ui.applyButton.click()
    job = widget._job
    slicer.mrmlScene.Clear()
    _drain(widget)
    assert job.terminal["event"] == "cancelled"
    assert widget.logic.resultNode(job) is None and stubs.util.loaded == []


def test_selecting_another_volume_updates_parameter_node_and_panel(stubs):
    slicer = stubs.slicer
    first = _small_ct(slicer, name="first", thickness="5")
    widget = _make_widget(stubs)
    assert widget._parameterNode.inputVolume is first  # the first volume is preselected
    assert widget.ui.thicknessSpinBox.value == 5.0
    second = slicer_stubs.volume_node_from_array(
        slicer, np.zeros((8, 20, 20), np.float32), spacing=(0.5, 0.5, 1.25), name="second"
    )
    _select(widget, second)
    assert widget.ui.inputSelector.currentNode() is second
    assert widget._parameterNode.inputVolume is second
    assert widget._parameterNode.thicknessMm == 0.0  # not DICOM, no attribute: must be typed
    assert widget.ui.spacingSpinBox.value == 1.25
    assert widget.ui.slicesValueLabel.text.startswith("8 slices")
    assert not widget.ui.applyButton.enabled


def test_detect_shows_the_devices_torch_sees(stubs):
    import torch

    widget = _make_widget(stubs)
    widget.ui.detectDevicesButton.click()
    text = widget.ui.deviceInfoLabel.text
    assert stubs.util.errors == []
    assert "cpu: CPU" in text
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name(0) in text
    else:
        assert "No GPU found" in text
