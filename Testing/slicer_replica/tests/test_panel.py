"""The module panel (SR4ZCTWidget) over real MRML: stand-in widgets from the real .ui, real scene, real
parameter node, Slicer's real slicer.util (dialogs go to the ctkMessageBox stand-in)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import slicer
import standins
from dicom_plugin import load_series
from standins import ctk, qt
from test_logic_real_mrml import _ct_node

RUN_TIMEOUT_S = 120.0


_WIDGETS = []


@pytest.fixture(autouse=True)
def _cleanup_widgets():
    yield
    while _WIDGETS:
        _WIDGETS.pop().cleanup()  # as Slicer does when the module is unloaded: observers go


def _widget(replica):
    """The panel as Slicer makes it: the widget class gets Slicer's module panel as parent, then setup()."""
    widget = replica.module.SR4ZCTWidget(standins.scripted.qSlicerScriptedLoadableModuleWidget())
    widget.setup()
    _WIDGETS.append(widget)
    return widget


def _drain(widget, timeout_s=RUN_TIMEOUT_S):
    start = time.monotonic()
    while widget._timer.isActive():
        widget._timer.fire()
        if time.monotonic() - start > timeout_s:
            widget._job.kill()
            pytest.fail("the background job did not end in time")
        time.sleep(0.05)


@pytest.fixture
def l291_replica(monkeypatch, tmp_path, l291_files, l291_database):
    replica = standins.install(monkeypatch, tmp_path, dicom_database=l291_database)
    node = load_series(replica.app, l291_database, l291_files, "3: L291")
    return replica, node


def test_module_metadata_and_sample_data_registration(replica):
    module = replica.module
    parent = standins.scripted.qSlicerScriptedLoadableModule(str(standins.MODULE_DIR / "SR4ZCT.py"))
    module.SR4ZCT(parent)
    assert parent.categories == ["Filtering"]
    assert "SR4ZCT" in parent.title and "MLMI 2023" in parent.acknowledgementText
    assert slicer.selfTests["SR4ZCT"]
    assert replica.app.connections("startupCompleted()") == [module.registerSampleData]
    replica.app.emit("startupCompleted()")
    sources = replica.sampleData.SampleDataLogic.sources["SR4ZCT"]
    assert [s.sampleName for s in sources] == ["SR4ZCTPhantom"]
    assert Path(sources[0].thumbnailFileName).is_file()
    assert sources[0].uris[0].startswith("file://") and sources[0].checksums[0].startswith("SHA256:")
    assert "https://github.com/" in parent.helpText and "{url}" not in parent.helpText


def test_an_older_slicer_gets_a_clear_message(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match=r"needs 3D Slicer 5\.10 or later .*this is 3D Slicer 5\.8"):
        standins.install(monkeypatch, tmp_path, slicer_version=(5, 8))


def test_l291_panel_shows_thickness_spacing_overlap(l291_replica):
    replica, node = l291_replica
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(node)
    ui = widget.ui
    assert ui.sourceValueLabel.text == "DICOM"
    assert ui.thicknessSpinBox.value == pytest.approx(3.0)
    assert ui.spacingSpinBox.value == pytest.approx(2.0)
    assert ui.overlapValueLabel.text == "1 mm (overlapping)"
    assert ui.slicesValueLabel.text.startswith("343 slices")
    assert "0.7422" in ui.inPlaneValueLabel.text
    assert not ui.warningLabel.visible
    assert ui.applyButton.enabled
    parameterNode = replica.module.SR4ZCTLogic().getParameterNode().parameterNode  # the real MRML node
    assert parameterNode.GetParameter("thicknessMm") == "3.0"  # stored in the real node, saved with the scene
    assert parameterNode.GetNodeReferenceID("inputVolume") == node.GetID()


def test_the_slice_profile_is_estimated_on_request_without_blocking_the_panel(l291_replica):
    replica, node = l291_replica
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(node)
    ui = widget.ui
    assert ui.profileEstimateLabel.text == "-"
    ui.estimateProfileButton.click()  # returns at once: the estimate runs in a thread, the timer shows it
    assert ui.profileEstimateLabel.text == "Estimating..." and not ui.estimateProfileButton.enabled
    assert widget._timer.isActive() and widget._job is None
    _drain(widget)
    text = ui.profileEstimateLabel.text
    assert text.startswith("Estimated from the scan: ") and ui.estimateProfileButton.enabled, text
    fwhm = float(text.split("FWHM ")[1].split(" mm")[0])
    assert 2.0 < fwhm < 4.5 and "\u26a0" not in text  # plausible for L291's 3 mm helical slices
    ui.thicknessSpinBox.setValue(8.0)  # a thickness far from the images' is flagged
    ui.estimateProfileButton.click()
    _drain(widget)
    assert "\u26a0 Far from the slice thickness of 8 mm" in ui.profileEstimateLabel.text
    ui.estimateProfileButton.click()
    widget.ui.inputSelector.setCurrentNode(_ct_node(replica))  # another volume: its estimate is not shown
    _drain(widget)
    assert ui.profileEstimateLabel.text == "-" and ui.estimateProfileButton.enabled


def test_non_dicom_volume_needs_a_thickness(replica):
    node = _ct_node(replica, thickness=None)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(node)
    ui = widget.ui
    assert ui.thicknessSpinBox.value == 0.0
    assert not ui.applyButton.enabled
    assert ui.warningLabel.visible and "thickness" in ui.warningLabel.text.lower()
    ui.thicknessSpinBox.setValue(2.5)
    assert widget._parameterNode.thicknessMm == 2.5
    assert ui.applyButton.enabled
    assert ui.overlapValueLabel.text == "0.5 mm (overlapping)"


def test_parameter_node_round_trip_through_the_panel(replica):
    widget = _widget(replica)
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
        "fast", "gaussian", "cpu", 7, True, "/tmp/model.pt")  # fmt: skip
    node = p.parameterNode
    assert [node.GetParameter(n) for n in ("preset", "seed", "keepTempFiles")] == ["fast", "7", "True"]
    p.targetSpacingMm = 1.0  # a scripted change shows in the GUI
    assert ui.targetSpacingSpinBox.value == 1.0


def test_the_panels_options_are_the_cores_defaults_choices_and_limits(replica):
    """The parameter node and the widgets are derived from EnhanceOptions: nothing to drift apart."""
    from sr4zct.app.panel_options import options_from_panel, panel_fields
    from sr4zct.run.options import SEED_MAX, EnhanceOptions

    widget = _widget(replica)
    p = widget._parameterNode
    widgets = {w.property("SlicerParameterName"): w for w in vars(widget.ui).values()
               if hasattr(w, "property") and w.property("SlicerParameterName")}  # fmt: skip
    defaults = EnhanceOptions()
    fields = panel_fields()
    unset = options_from_panel({f.name: getattr(p, f.name) for f in fields})  # a fresh node: the defaults
    assert unset == {f.option: getattr(defaults, f.option) for f in fields}
    for field in fields:
        shown = widgets[field.name]
        if field.choices:
            assert [shown.itemText(i) for i in range(shown.count)] == [str(c) for c in field.choices]
        if field.minimum is not None:
            assert (shown.minimum, shown.maximum) == (field.minimum, field.maximum)
    assert widgets["thicknessMm"].maximum == 50.0  # what the run accepts (run/validation.py)
    widget.ui.seedSpinBox.setValue(SEED_MAX)  # the core's largest seed fits the panel
    assert p.seed == SEED_MAX and widget.panelOptions()["seed"] == SEED_MAX
    assert (
        EnhanceOptions(**options_from_panel({f.name: getattr(p, f.name) for f in panel_fields()})).seed
        == SEED_MAX
    )


def test_selecting_another_volume_updates_parameter_node_and_panel(replica):
    first = _ct_node(replica, name="first", thickness="5")
    widget = _widget(replica)
    assert widget._parameterNode.inputVolume.GetID() == first.GetID()  # the first volume is preselected
    assert widget.ui.thicknessSpinBox.value == 5.0
    second = slicer.util.addVolumeFromArray(
        np.zeros((8, 20, 20), np.float32), np.diag([0.5, 0.5, 1.25, 1]), "second"
    )
    widget.ui.inputSelector.setCurrentNode(second)
    assert widget._parameterNode.inputVolume.GetID() == second.GetID()
    assert widget._parameterNode.thicknessMm == 0.0
    assert widget.ui.spacingSpinBox.value == 1.25
    assert widget.ui.slicesValueLabel.text.startswith("8 slices")
    assert not widget.ui.applyButton.enabled


def test_detect_shows_the_devices_torch_sees(replica):
    widget = _widget(replica)
    widget.ui.detectDevicesButton.click()
    assert "cpu: CPU" in widget.ui.deviceInfoLabel.text
    assert ctk.ctkMessageBox.shown == []


@pytest.mark.parametrize("answer", [qt.QMessageBox.Cancel, qt.QMessageBox.Ok])
def test_missing_torch_offers_the_pytorch_extension(monkeypatch, tmp_path, answer):
    replica = standins.install(monkeypatch, tmp_path, torch_installed=False)
    ctk.ctkMessageBox.answer(answer)
    assert replica.module.SR4ZCTLogic().ensureTorch(askConfirmation=True) is (answer == qt.QMessageBox.Ok)
    assert len(ctk.ctkMessageBox.shown) == 1 and "minutes" in ctk.ctkMessageBox.shown[0]["text"]
    installs = [c for c in replica.pytorchCalls if c[0] == "installTorch"]
    assert installs == ([("installTorch", False, None, ">=2.1")] if answer == qt.QMessageBox.Ok else [])


def test_apply_does_nothing_when_the_torch_install_is_declined(monkeypatch, tmp_path):
    replica = standins.install(monkeypatch, tmp_path, torch_installed=False)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(_ct_node(replica))
    ctk.ctkMessageBox.answer(qt.QMessageBox.Cancel)
    widget.ui.applyButton.click()
    assert widget._job is None and not widget._timer.isActive()
    assert list(Path(slicer.app.temporaryPath).iterdir()) == []


def test_without_the_pytorch_extension_the_message_says_what_to_install(monkeypatch, tmp_path):
    from sr4zct.errors import ResourceError

    replica = standins.install(monkeypatch, tmp_path, pytorch_extension=False)
    with standins.without_torch(monkeypatch), pytest.raises(ResourceError, match="PyTorch"):
        replica.module.SR4ZCTLogic().ensureTorch()


def test_missing_python_slicer_is_a_clear_error(replica, monkeypatch, tmp_path):
    from sr4zct.errors import ResourceError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ResourceError, match="PythonSlicer"):
        replica.module.SR4ZCTLogic().enhance(_ct_node(replica), wait=False)


def test_bad_option_is_refused_before_anything_is_written(replica, python_slicer):
    from sr4zct.errors import ParameterError

    with pytest.raises(ParameterError, match="profile"):
        replica.module.SR4ZCTLogic().enhance(_ct_node(replica), profile="triangle", wait=False)
    assert list(Path(slicer.app.temporaryPath).iterdir()) == []


def test_progress_text_and_durations(replica):
    from sr4zct.system.progress import format_duration  # the one format of the time left (CLI, Slicer)

    module = replica.module
    assert (format_duration(None), format_duration(12.4)) == ("", "12 s")
    assert (format_duration(250), format_duration(3900)) == ("4 min 10 s", "1 h 05 min")
    event = {"event": "progress", "stage": "train", "step": 120, "total": 3000, "eta_s": 250}
    assert module.progressText(event) == "Training 120/3000 - about 4 min 10 s left"


def test_the_phantom_sample_loads_as_slicer_loads_samples(replica):
    module = replica.module
    module.registerSampleData()
    node = replica.sampleData.SampleDataLogic().downloadSample(
        "SR4ZCTPhantom"
    )  # a script's way, as in Slicer
    assert node.GetName() == "SR4ZCTPhantom"
    geometry = module.SR4ZCTLogic().readGeometry(node)
    assert (geometry.thickness_mm, geometry.spacing_mm, geometry.overlap_mm) == (3.0, 2.0, 1.0)
    assert "header" in geometry.source and geometry.n_slices == 44
    assert (
        replica.sampleData.SampleDataLogic()
        .clickTile("SR4ZCTPhantom")[0]
        .GetName()
        .startswith("SR4ZCTPhantom")
    )


# ---- runs from the panel (real background process) ------------------------------------------------------


def _short_runs(monkeypatch, module, max_minutes: float) -> None:
    original = module.SR4ZCTLogic.enhance

    def enhance(self, *args, **kwargs):
        kwargs.setdefault("maxMinutes", max_minutes)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(module.SR4ZCTLogic, "enhance", enhance)


def _wait_until_started(widget):
    start = time.monotonic()
    while "Worker started" not in widget.ui.logTextEdit.toPlainText():
        widget._timer.fire()
        assert widget._timer.isActive() and time.monotonic() - start < 60, widget.ui.statusLabel.text
        time.sleep(0.05)


@pytest.mark.slow
def test_full_run_from_the_panel(replica, python_slicer, monkeypatch):
    _short_runs(monkeypatch, replica.module, 0.05)
    node = _ct_node(replica)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.presetComboBox.currentText = "fast"
    widget.ui.applyButton.click()
    assert widget.ui.applyButton.text == "Cancel" and widget._timer.isActive()
    job = widget._job
    tempDir = widget.logic._runs[job]["tempDir"]
    _drain(widget)
    assert job.terminal["event"] == "finished", job.terminal
    out = widget.logic.resultNode(job)
    assert out.GetName() == "CT SR4ZCT" and widget._parameterNode.outputVolume.GetID() == out.GetID()
    assert "Done" in widget.ui.statusLabel.text and widget.ui.progressBar.value == 1000
    info = widget.ui.resultInfoLabel.text.splitlines()  # what the run used, from its parameters
    parameters = job.result["parameters"]
    assert (
        info[0].startswith(f"Slice profile: {parameters['profile']} (")
        and parameters["profile_option"] == "auto"
    )
    assert ("estimated from the scan: " in info[0]) == ("profile_estimate" in parameters)
    assert any(line.startswith(f"Precision: {job.result['parameters']['precision']} (") for line in info)
    assert "Worker started" in widget.ui.logTextEdit.toPlainText()
    assert widget.ui.applyButton.text == "Enhance through-plane"
    assert not Path(tempDir).exists()


@pytest.mark.slow
def test_cancel_from_the_panel(replica, python_slicer, monkeypatch):
    _short_runs(monkeypatch, replica.module, 5.0)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(_ct_node(replica))
    widget.ui.applyButton.click()
    _wait_until_started(widget)
    widget.ui.applyButton.click()  # reads "Cancel" now
    _drain(widget, timeout_s=15)
    assert widget._job.terminal["event"] == "cancelled"
    assert slicer.mrmlScene.GetFirstNodeByName("CT SR4ZCT") is None
    assert "Cancelled" in widget.ui.statusLabel.text


@pytest.mark.slow
def test_failed_run_shows_the_workers_message(replica, python_slicer):
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(_ct_node(replica))
    widget.ui.modelPathLineEdit.text = str(Path(slicer.app.temporaryPath) / "no-such-model.pt")
    ctk.ctkMessageBox.answer(qt.QMessageBox.Ok)
    widget.ui.applyButton.click()
    _drain(widget)
    assert widget._job.terminal["event"] == "failed"
    assert widget.ui.statusLabel.text.startswith("Failed:")
    assert len(ctk.ctkMessageBox.shown) == 1 and "model" in ctk.ctkMessageBox.shown[0]["text"].lower()


@pytest.mark.slow
def test_failure_to_load_the_result_ends_the_run_visibly(replica, python_slicer, monkeypatch):
    _short_runs(monkeypatch, replica.module, 0.05)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(_ct_node(replica))
    # The worker's file cannot be read back (as for a full disk): Slicer's reader reports failure.
    monkeypatch.setattr(replica.app.coreIOManager(), "loadNodes", lambda *args, **kwargs: False)
    ctk.ctkMessageBox.answer(qt.QMessageBox.Ok)
    widget.ui.applyButton.click()
    _drain(widget)
    assert widget.ui.statusLabel.text.startswith("Failed:")
    assert len(ctk.ctkMessageBox.shown) == 1
    assert widget.ui.applyButton.text == "Enhance through-plane" and widget.ui.applyButton.enabled


@pytest.mark.slow
def test_closing_the_scene_cancels_a_running_job(replica, python_slicer, monkeypatch):
    _short_runs(monkeypatch, replica.module, 5.0)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(_ct_node(replica))
    widget.ui.applyButton.click()
    job = widget._job
    _wait_until_started(widget)
    slicer.mrmlScene.Clear()
    _drain(widget)
    assert job.terminal["event"] == "cancelled" and widget.logic.resultNode(job) is None


# ---- a Slicer without PyTorch (fresh install): nothing may import torch before the install step ----------


def test_sample_data_loads_in_a_slicer_without_torch_and_asks_nothing(monkeypatch, tmp_path):
    replica = standins.install(monkeypatch, tmp_path, torch_installed=False)
    replica.module.SR4ZCT(slicer.modules.sr4zct)  # Slicer instantiates the module at start-up ...
    replica.app.emit("startupCompleted()")  # ... which registers the sample data
    with standins.without_torch(monkeypatch):
        tile = replica.sampleData.SampleDataLogic().clickTile("SR4ZCTPhantom")[0]
        scripted = replica.sampleData.SampleDataLogic().downloadSample("SR4ZCTPhantom")
        assert replica.module.SR4ZCTLogic().readGeometry(scripted).thickness_mm == 3.0
    assert tile.GetImageData().GetDimensions() == scripted.GetImageData().GetDimensions() == (160, 160, 44)
    assert ctk.ctkMessageBox.shown == [] and replica.pytorchCalls == []


def test_a_generated_uri_would_not_download(replica):
    """What Slicer's SampleData does with an address it cannot fetch (the module's sample once had one)."""
    replica.sampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="x",
        sampleName="broken",
        uris="generated://sr4zct/phantom",
        fileNames="p.nrrd",
        nodeNames="p",
    )
    with pytest.raises(IndexError):
        replica.sampleData.SampleDataLogic().downloadSample("broken")


SELFTEST_WITHOUT_TORCH = """
import json, sys, unittest
from pathlib import Path
import pytest
sys.path.insert(0, sys.argv[2])
import standins
from standins import ctk, qt
monkeypatch = pytest.MonkeyPatch()
with standins.without_torch(monkeypatch):
    replica = standins.install(monkeypatch, Path(sys.argv[1]), pytorch_extension=False)
    suite = unittest.TestLoader().loadTestsFromName("SR4ZCT")  # what Slicer's testing.runUnitTest does (ctest)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    ctk.ctkMessageBox.answer(qt.QMessageBox.Ok)
    replica.module.SR4ZCTTest().runTest()  # what "Reload and Test" does
    print(json.dumps({"run": result.testsRun, "errors": [str(e) for e in result.errors + result.failures],
                      "skipped": [[t.id(), reason] for t, reason in result.skipped],
                      "boxes": ctk.ctkMessageBox.shown, "torch": "torch" in sys.modules}))
"""


def test_the_selftest_without_torch_passes_or_skips_with_a_reason(tmp_path):
    """In a fresh process that cannot import torch (the Extensions Index's factory, a fresh Slicer)."""
    import json
    import os
    import subprocess

    proc = subprocess.run([sys.executable, "-c", SELFTEST_WITHOUT_TORCH, str(tmp_path), str(standins.ROOT / "Testing" / "slicer_replica")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == [] and report["run"] == 3 and not report["torch"]
    assert [t.rsplit(".", 1)[1] for t, _reason in report["skipped"]] == ["test_enhance_beats_linear"]
    assert "PyTorch is not installed" in report["skipped"][0][1]
    # Reload and Test: the torch-free tests ran, then a note (information, not an error dialog)
    assert len(report["boxes"]) == 1 and "PyTorch is not installed" in report["boxes"][0]["text"]


def test_checking_for_torch_does_not_import_it(monkeypatch, tmp_path):
    replica = standins.install(monkeypatch, tmp_path, pytorch_extension=False)
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    assert replica.module.SR4ZCTLogic.torchInstalled() is True
    assert "torch" not in sys.modules
