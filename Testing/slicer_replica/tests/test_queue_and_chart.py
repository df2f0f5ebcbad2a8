"""Issue 19 in the module: the queue of a study's volumes (what it takes, what it records, the panel's options,
the background environment, cancelled with the scene) and the validation-gain chart (shown, reused)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer
import standins
from test_logic_real_mrml import _ct_node
from test_panel import _widget

RUN_TIMEOUT_S = 240.0


def _study(replica, nodes):
    """Put ``nodes`` in one patient's study of the subject hierarchy, as the DICOM module does."""
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient"), "study")
    for node in nodes:
        sh.SetItemParent(sh.GetItemByDataNode(node), study)
    return nodes


def _mixed_study(replica):
    first, second = _ct_node(replica, "first"), _ct_node(replica, "second")
    unknown = _ct_node(replica, "no thickness", thickness=None)
    localizer = slicer.util.addVolumeFromArray(np.zeros((1, 36, 36), np.int16), name="localizer")
    localizer.SetAttribute("SR4ZCT.sliceThicknessMm", "3")
    label = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "segmentation")
    label.SetAndObserveImageData(first.GetImageData())
    earlier = _ct_node(replica, "first SR4ZCT")
    earlier.SetAttribute("SR4ZCT.version", "0.1.0")  # an earlier result
    disagreement = _ct_node(replica, "first SR4ZCT disagreement")
    disagreement.SetAttribute("SR4ZCT.role", "disagreement")
    return _study(replica, [first, second, unknown, localizer, label, earlier, disagreement])


def test_the_queue_takes_only_the_studys_ct_scalar_volumes(replica):
    nodes = _mixed_study(replica)
    queued = replica.module.SR4ZCTLogic().studyVolumes(nodes[0])
    assert [n.GetName() for n in queued] == ["first", "second", "no thickness", "localizer"]


@pytest.mark.slow
def test_the_queue_records_what_it_cannot_enhance_goes_on_and_applies_the_options(replica, python_slicer):
    first, second, *_ = nodes = _mixed_study(replica)
    logic = replica.module.SR4ZCTLogic()
    folder = str(replica.app.temporaryPath) + "/queue"
    batch = logic.enhanceQueue(
        logic.studyVolumes(first), folder, thicknessMm=2.5, profile="gaussian", targetSpacingMm=1.0,
        preset="fast", maxMinutes=0.05, device="cpu", uncertainty=True,
    )  # fmt: skip
    events, environments, start = [], [], time.monotonic()
    while not batch.done:
        events += logic.pollQueue(batch)
        environments += [dict(item.job._env) for item in batch.engine._running]
        assert time.monotonic() - start < RUN_TIMEOUT_S
        time.sleep(0.05)
    ended = {e["record"]["description"]: e for e in events if e["event"] == "job_ended"}
    assert {name: e["status"] for name, e in ended.items()} == {
        "first": "done", "second": "done", "no thickness": "failed", "localizer": "failed"
    }  # fmt: skip
    assert "thickness is unknown" in ended["no thickness"]["record"]["error_message"]
    assert "not a 3-D volume" in ended["localizer"]["record"]["error_message"]
    results = logic.queueOutputNodes(batch)
    assert [n.GetName() for n in results] == ["first SR4ZCT_1", "second SR4ZCT"]  # "first SR4ZCT" existed
    for result in results:  # the panel's options, as a single run gets them
        assert result.GetAttribute("SR4ZCT.profile") == "gaussian"
        assert result.GetSpacing()[2] == pytest.approx(1.0)
        assert slicer.mrmlScene.GetFirstNodeByName(result.GetName() + " disagreement") is not None
    assert results[0].GetAttribute("SR4ZCT.thickness_mm") == "2.5"  # the panel's thickness: its volume only
    assert results[1].GetAttribute("SR4ZCT.thickness_mm") == "3"
    assert environments and all(env.get("OMP_WAIT_POLICY") == "PASSIVE" for env in environments)
    assert all(env.get("CUDA_VISIBLE_DEVICES") == "-1" for env in environments)  # device cpu, as a single run
    assert len(nodes) == 7


@pytest.mark.slow
def test_closing_the_scene_cancels_the_queue_when_no_single_run_was_made(replica, python_slicer, monkeypatch):
    original = replica.module.SR4ZCTLogic.enhanceQueue
    monkeypatch.setattr(replica.module.SR4ZCTLogic, "enhanceQueue",
                        lambda self, *a, **k: original(self, *a, **{**k, "maxMinutes": 5.0}))  # fmt: skip
    first, *_ = _mixed_study(replica)
    widget = _widget(replica)
    widget.ui.inputSelector.setCurrentNode(first)
    widget.ui.queueButton.click()
    batch = widget._batch
    assert widget._job is None and batch is not None and widget.ui.applyButton.text == "Cancel"
    start = time.monotonic()
    while not any(item.job.started for item in batch.engine._running):
        widget._timer.fire()
        assert time.monotonic() - start < 60
        time.sleep(0.05)
    running = batch.engine._running[0].job
    slicer.mrmlScene.Clear()  # no AttributeError: there is no single run
    while not batch.done:
        widget._timer.fire()
        assert time.monotonic() - start < 60
        time.sleep(0.05)
    assert running.terminal["event"] == "cancelled"
    assert widget.logic.queueOutputNodes(batch) == []
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0


@pytest.mark.slow
def test_the_gain_chart_is_shown_in_a_plot_view_and_reused(replica, python_slicer):
    node = _ct_node(replica)
    logic = replica.module.SR4ZCTLogic()
    for _run in range(2):
        logic.enhance(node, preset="fast", maxMinutes=0.05)
        chart = slicer.mrmlScene.GetFirstNode("CT SR4ZCT validation gain", "vtkMRMLPlotChartNode")
        counts = [slicer.mrmlScene.GetNumberOfNodesByClass(c)
                  for c in ("vtkMRMLTableNode", "vtkMRMLPlotSeriesNode", "vtkMRMLPlotChartNode")]  # fmt: skip
        assert counts == [1, 1, 1]  # one set per input, reused by the second run
        table = slicer.mrmlScene.GetNodeByID(chart.GetNthPlotSeriesNode(0).GetTableNodeID())
        assert table.GetNumberOfRows() >= 1 and table.GetColumnName(1) == "validation_gain_db"
        assert slicer.app.layoutManager().layout == replica.module.LAYOUT_ID
        plotViews = slicer.util.getNodesByClass("vtkMRMLPlotViewNode")
        assert [v.GetPlotChartNodeID() for v in plotViews] == [chart.GetID()]
        red = slicer.app.layoutManager().sliceWidget("Red").sliceLogic().GetSliceCompositeNode()
        assert red.GetBackgroundVolumeID() == node.GetID()


def test_a_run_without_a_preview_uses_slicers_side_by_side_layout(replica):
    a, b = _ct_node(replica, "a"), _ct_node(replica, "b")
    replica.module.SR4ZCTLogic.showSideBySide(a, b)
    assert slicer.app.layoutManager().layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert standins.LAUNCHER_DIR.is_dir()
