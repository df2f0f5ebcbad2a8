"""Issue 13 in Slicer: the live preview while it trains, "Finish now", the disagreement overlay and the result
added to the DICOM database (real MRML, the real background process under the replica's PythonSlicer)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer
import standins
import vtk
from dicom_plugin import load_series
from test_logic_real_mrml import _crop, _ct_node
from test_panel import _drain, _widget

pytestmark = pytest.mark.slow
TIMEOUT_S = 240.0


def _matrix(node):
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


def test_previews_show_in_the_right_view_and_finish_now_keeps_the_best_so_far(replica, python_slicer):
    node = _ct_node(replica, shape=(20, 48, 48))
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(node)
    widget.ui.presetComboBox.currentText = "fast"
    widget.ui.applyButton.click()
    job, logic = widget._job, widget.logic
    deadline = time.monotonic() + TIMEOUT_S
    seen = []
    while not (
        job.progress and job.progress.get("stage") == "train" and logic._runs[job]["gainChart"] is not None
    ):
        widget._timer.fire()
        assert time.monotonic() < deadline and widget._running(), widget.ui.statusLabel.text
        time.sleep(0.05)
    run = logic._runs[job]
    preview = run["previewNode"]
    seen.append(preview.GetName())
    assert preview.GetName() == "CT SR4ZCT preview" and preview.GetImageData().GetDimensions()[1] == 1
    lm = slicer.app.layoutManager()
    yellow = lm.sliceWidget("Yellow").sliceLogic().GetSliceCompositeNode()
    assert yellow.GetBackgroundVolumeID() == preview.GetID()
    assert lm.sliceWidget("Red").sliceLogic().GetSliceCompositeNode().GetBackgroundVolumeID() == node.GetID()
    assert "dB on held-out axial images" in widget.ui.previewLabel.text
    table = slicer.mrmlScene.GetNodeByID(run["gainChart"].GetNthPlotSeriesNode(0).GetTableNodeID())
    assert table.GetNumberOfRows() >= 1
    assert widget.ui.finishButton.enabled
    t0 = time.monotonic()
    widget.ui.finishButton.click()
    _drain(widget)
    assert time.monotonic() - t0 < 30
    out = logic.resultNode(job)
    assert job.terminal["event"] == "finished", job.terminal
    assert out.GetAttribute("SR4ZCT.finished_early") == "true"
    assert slicer.mrmlScene.GetFirstNodeByName("CT SR4ZCT preview") is None  # replaced by the result
    assert yellow.GetBackgroundVolumeID() == out.GetID()
    assert not widget.ui.finishButton.enabled and widget.ui.exportDicomButton.enabled


def test_the_disagreement_is_overlaid_on_the_result(replica, python_slicer):
    node = _ct_node(replica)
    logic = replica.module.SR4ZCTLogic()
    out = logic.enhance(node, preset="fast", maxMinutes=0.05, uncertainty=True)
    overlay = slicer.mrmlScene.GetFirstNodeByName("CT SR4ZCT disagreement")
    assert (
        overlay is not None and overlay.GetImageData().GetDimensions() == out.GetImageData().GetDimensions()
    )
    assert np.all(slicer.util.arrayFromVolume(overlay) >= 0)
    yellow = slicer.app.layoutManager().sliceWidget("Yellow").sliceLogic().GetSliceCompositeNode()
    assert yellow.GetBackgroundVolumeID() == out.GetID() and yellow.GetForegroundVolumeID() == overlay.GetID()
    assert yellow.GetForegroundOpacity() == pytest.approx(replica.module.UNCERTAINTY_OPACITY)


def test_the_result_added_to_the_dicom_database_reimports_with_identical_geometry(
    monkeypatch, tmp_path, l291_files, python_slicer
):
    database = standins.ctkDICOMDatabase(l291_files[140:164])
    replica = standins.install(monkeypatch, tmp_path, dicom_database=database)
    full = load_series(replica.app, database, l291_files[140:164], "3: L291")
    crop = _crop(replica, full, slices=(6, 20), size_mm=48.0)
    logic = replica.module.SR4ZCTLogic()
    out = logic.enhance(crop, preset="fast", maxMinutes=0.05, showResult=False)
    series_uid = logic.exportToDicomDatabase(out)
    files = [database.fileForInstance(uid) for uid in database.instanceUIDs]
    exported = [f for f in files if database.fileValue(f, "0020,000E") == series_uid]
    assert len(exported) == out.GetImageData().GetDimensions()[2]
    import pydicom

    first = pydicom.dcmread(exported[0], stop_before_pixels=True)
    source = pydicom.dcmread(str(l291_files[150]), stop_before_pixels=True)
    assert (
        first.StudyInstanceUID == source.StudyInstanceUID
        and first.SeriesInstanceUID != source.SeriesInstanceUID
    )
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"] and first.SeriesDescription.endswith(
        "SR4ZCT"
    )
    assert "preset=fast" in first.ImageComments
    back = load_series(replica.app, database, exported, "re-imported")
    np.testing.assert_allclose(_matrix(back), _matrix(out), atol=1e-5)
    assert back.GetImageData().GetDimensions() == out.GetImageData().GetDimensions()
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(back), slicer.util.arrayFromVolume(out))


def test_every_volume_of_a_study_is_queued_with_the_batch_ledger(replica, python_slicer, tmp_path):
    logic = replica.module.SR4ZCTLogic()
    first, second = _ct_node(replica, name="CT a"), _ct_node(replica, name="CT b", thickness="3")
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient"), "study")
    for node in (first, second):
        sh.SetItemParent(sh.GetItemByDataNode(node), study)
    nodes = logic.studyVolumes(first)
    assert nodes == [first, second]
    folder = tmp_path / "batch"
    batch = logic.enhanceQueue(nodes, str(folder), preset="fast", maxMinutes=0.05)
    deadline = time.monotonic() + TIMEOUT_S
    events = []
    while not batch.done:
        events += logic.pollQueue(batch)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    events += logic.pollQueue(batch)
    outputs = logic.queueOutputNodes(batch)
    assert [n.GetName() for n in outputs] == ["CT a SR4ZCT", "CT b SR4ZCT"], [
        e for e in events if "status" in e
    ]
    assert outputs[0].GetAttribute("SR4ZCT.preset") == "fast"
    assert (folder / "batch.jsonl").is_file() and batch.exit_code == 0
    assert (
        sum(e.get("model_role") == "train" for e in events if e["event"] == "job_started") == 1
    )  # one protocol
    # the same queue again: nothing to redo
    again = logic.enhanceQueue(nodes, str(folder), preset="fast", maxMinutes=0.05)
    while not again.done:
        logic.pollQueue(again)
        time.sleep(0.1)
    assert again.result().ran == 0 and again.result().skipped == 2


def test_the_panel_queues_the_study(replica, python_slicer, monkeypatch):
    monkeypatch.setattr(replica.module.SR4ZCTLogic, "enhanceQueue",
                        _with_max_minutes(replica.module.SR4ZCTLogic.enhanceQueue, 0.05))  # fmt: skip
    first, second = _ct_node(replica, name="CT a"), _ct_node(replica, name="CT b")
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient"), "study")
    for node in (first, second):
        sh.SetItemParent(sh.GetItemByDataNode(node), study)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(first)
    assert widget.ui.queueButton.enabled
    widget.ui.queueButton.click()
    assert widget.ui.applyButton.text == "Cancel"
    _drain(widget)
    assert widget.ui.statusLabel.text == "Done: 2 of 2 volume(s) enhanced."
    assert slicer.mrmlScene.GetFirstNodeByName("CT b SR4ZCT") is not None
    assert widget.ui.applyButton.text == "Enhance through-plane"


def _with_max_minutes(original, minutes):
    def enhanceQueue(self, *args, **kwargs):
        kwargs.setdefault("maxMinutes", minutes)
        return original(self, *args, **kwargs)

    return enhanceQueue
