"""SR4ZCT.py's Logic on Slicer's real MRML: geometry from the DICOM database, input file, result node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
import standins
import vtk
from dicom_plugin import load_series


@pytest.fixture
def l291(monkeypatch, tmp_path, l291_files, l291_database):
    """Slicer with the L291 series imported and loaded by the DICOM plugin (all 343 slices)."""
    replica = standins.install(monkeypatch, tmp_path, dicom_database=l291_database)
    node = load_series(replica.app, l291_database, l291_files, "3: L291")
    l291_database.resetCounts()
    return replica, node


def test_l291_loads_with_slicers_reader_like_the_core_reader(l291, l291_dir_core_volume):
    replica, node = l291
    assert node.GetImageData().GetDimensions() == (512, 512, 343)
    array = slicer.util.arrayFromVolume(node)
    core = l291_dir_core_volume
    np.testing.assert_array_equal(array, core.array)  # same voxels, same KJI order
    assert node.GetSpacing() == pytest.approx((0.7421875, 0.7421875, 2.0))
    origin_lps = np.array(node.GetOrigin()) * (-1, -1, 1)
    assert origin_lps == pytest.approx(core.geometry.origin_lps, abs=1e-6)


def test_l291_geometry_read_through_the_dicom_database(l291):
    replica, node = l291
    geometry = replica.module.SR4ZCTLogic().readGeometry(node)
    assert geometry.source == "DICOM"
    assert (geometry.thickness_mm, geometry.spacing_mm, geometry.overlap_mm) == pytest.approx((3.0, 2.0, 1.0))
    assert geometry.n_slices == 343
    assert geometry.axis == 2
    assert geometry.in_plane_spacing_mm == pytest.approx((0.7421875, 0.7421875))
    assert geometry.warnings == []
    db = slicer.dicomDatabase
    assert db.totalCalls >= 343  # it asked the database's cache per slice (positions, orientations) ...
    assert db.headerReads == 0  # ... and read the uncached SliceThickness/PixelSpacing itself, once per file


def _ct_node(replica, name="CT", shape=(14, 36, 36), spacing=(0.75, 0.75, 2.0), thickness="3"):
    """A small CT-like volume added with Slicer's slicer.util.addVolumeFromArray (array KJI)."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    body = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2 < (0.4 * shape[1]) ** 2).astype(np.float32)
    array = (-1000 + body * (1040 + 200 * np.sin(z / 2.0)) + rng.normal(0, 5, body.shape)).astype(np.int16)
    ijkToRas = np.diag([*spacing, 1.0])
    ijkToRas[:3, 3] = (10.0, -20.0, -100.0)
    node = slicer.util.addVolumeFromArray(array, ijkToRAS=ijkToRas, name=name)
    if thickness:
        node.SetAttribute("SR4ZCT.sliceThicknessMm", thickness)
    return node


def test_new_nodes_get_a_subject_hierarchy_item_and_display(replica):
    node = _ct_node(replica)
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    assert sh.GetItemByDataNode(node) != 0
    assert node.GetScalarVolumeDisplayNode() is not None


def test_geometry_of_a_sagittal_non_dicom_volume_uses_the_coarse_axis(replica):
    node = slicer.util.addVolumeFromArray(
        np.zeros((40, 32, 12), np.float32), ijkToRAS=np.diag([3.0, 0.8, 0.8, 1])
    )
    geometry = replica.module.SR4ZCTLogic().readGeometry(node)
    assert (geometry.axis, geometry.n_slices, geometry.thickness_mm) == (0, 12, None)
    assert geometry.spacing_mm == pytest.approx(3.0)
    assert geometry.in_plane_spacing_mm == (0.8, 0.8)


def test_volume_without_dicom_database_reads_the_thickness_attribute(replica):
    geometry = replica.module.SR4ZCTLogic().readGeometry(_ct_node(replica, thickness="2.5"))
    assert (geometry.thickness_mm, geometry.spacing_mm, geometry.overlap_mm) == (2.5, 2.0, 0.5)
    assert "attribute" in geometry.source


def test_acquisition_transform_is_reported(replica):
    node = _ct_node(replica)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", "CT acquisition transform")
    node.SetAndObserveTransformNodeID(transform.GetID())
    geometry = replica.module.SR4ZCTLogic().readGeometry(node)
    assert any("acquisition transform" in w for w in geometry.warnings)


def test_dropped_slice_is_reported(l291):
    replica, node = l291
    uids = node.GetAttribute("DICOM.instanceUIDs").split()
    node.SetAttribute("DICOM.instanceUIDs", " ".join(uids[:100] + uids[101:]))
    geometry = replica.module.SR4ZCTLogic().readGeometry(node)
    text = " ".join(geometry.warnings)
    assert "342" in text and "343" in text


def test_input_file_has_the_nodes_geometry_and_leaves_the_node_alone(replica, tmp_path):
    import sr4zct

    node = _ct_node(replica)
    path = tmp_path / "input.nrrd"
    replica.module.SR4ZCTLogic.writeVolumeFile(node, str(path))
    volume = sr4zct.read_volume(path, thickness_mm=3.0)
    np.testing.assert_array_equal(volume.array, slicer.util.arrayFromVolume(node))
    assert volume.geometry.spacing_mm == pytest.approx((2.0, 0.75, 0.75))
    assert volume.geometry.origin_lps == pytest.approx((-10.0, 20.0, -100.0))
    assert node.GetStorageNode() is None  # the user's node was not re-pointed at the temporary file


def test_core_volume_round_trips_through_a_real_node(replica):
    from sr4zct import Volume, make_geometry

    logic = replica.module.SR4ZCTLogic
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    c, s = np.cos(0.3), np.sin(0.3)
    axes = ((s, 0.0, c), (0.0, 1.0, 0.0), (c, 0.0, -s))
    volume = Volume(array, make_geometry(array.shape, slice_spacing_mm=2.5, pixel_spacing_mm=(0.8, 0.7),
                                         slice_thickness_mm=3.0, origin_lps=(10.0, -5.0, 30.0), axes_lps=axes))  # fmt: skip
    node = logic.addVolumeNode(volume, "oblique")
    assert node.GetSpacing() == pytest.approx((0.7, 0.8, 2.5))
    assert node.GetOrigin() == pytest.approx((-10.0, 5.0, 30.0))
    back = logic.volumeFromNode(node, thicknessMm=3.0)
    np.testing.assert_array_equal(back.array, array)
    assert np.allclose(back.geometry.axes_lps, axes)
    assert back.geometry.origin_lps == pytest.approx(volume.geometry.origin_lps)
    geometry = replica.module.SR4ZCTLogic().readGeometry(node)
    assert (geometry.axis, geometry.thickness_mm, geometry.spacing_mm) == (2, 3.0, 2.5)


def test_result_node_is_placed_displayed_and_annotated_like_its_input(l291, tmp_path):
    """loadResult on a real worker output (the core's enhance_file, in this process) of an L291 crop."""
    import sr4zct

    replica, full = l291
    module = replica.module
    logic = module.SR4ZCTLogic()
    crop = _crop(replica, full, slices=(150, 164), size_mm=40.0)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    crop.SetAndObserveTransformNodeID(transform.GetID())
    crop.GetScalarVolumeDisplayNode().AutoWindowLevelOff()
    crop.GetScalarVolumeDisplayNode().SetWindowLevel(400.0, 40.0)
    sh = slicer.mrmlScene.GetSubjectHierarchyNode()
    study = sh.GetItemParent(sh.GetItemByDataNode(full))
    sh.SetItemParent(sh.GetItemByDataNode(crop), study)

    tempDir = tmp_path / "SR4ZCT-run"
    tempDir.mkdir()
    inputPath, outputPath = tempDir / "input.nrrd", tempDir / "output.nrrd"
    logic.writeVolumeFile(crop, str(inputPath))
    result = sr4zct.enhance_file(
        inputPath, outputPath, thickness_mm=3.0, preset="fast", max_minutes=0.05, seed=0
    )
    finished = {"event": "finished", "output_path": str(outputPath), "parameters": result.parameters}
    run = {"inputNode": crop, "outputName": "crop SR4ZCT", "tempDir": str(tempDir), "showResult": True}
    out = logic.loadResult(run, finished)

    assert slicer.mrmlScene.GetFirstNodeByName("crop SR4ZCT") is out
    # geometry: same in-plane grid, orientation and origin; z spacing = in-plane pixel size
    assert out.GetSpacing() == pytest.approx((0.7421875, 0.7421875, 0.7421875), abs=1e-9)
    assert out.GetOrigin() == pytest.approx(crop.GetOrigin(), abs=1e-6)
    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    out.GetIJKToRASDirectionMatrix(a)
    crop.GetIJKToRASDirectionMatrix(b)
    assert [a.GetElement(i, j) for i in range(3) for j in range(3)] == [
        b.GetElement(i, j) for i in range(3) for j in range(3)
    ]
    dims_in, dims_out = crop.GetImageData().GetDimensions(), out.GetImageData().GetDimensions()
    assert dims_out[:2] == dims_in[:2]
    assert dims_out[2] == 1 + int(round((dims_in[2] - 1) * 2.0 / 0.7421875))
    # placed like the input
    assert out.GetTransformNodeID() == transform.GetID()
    assert sh.GetItemParent(sh.GetItemByDataNode(out)) == study
    display = out.GetScalarVolumeDisplayNode()
    assert (display.GetWindow(), display.GetLevel(), display.GetAutoWindowLevel()) == (400.0, 40.0, 0)
    assert display.GetColorNodeID() == crop.GetScalarVolumeDisplayNode().GetColorNodeID()
    # annotated
    assert float(out.GetAttribute("SR4ZCT.thickness_mm")) == 3.0
    assert out.GetAttribute("SR4ZCT.preset") == "fast"
    assert out.GetAttribute("SR4ZCT.inputVolume") == crop.GetName()
    assert out.GetAttribute("SR4ZCT.version") == sr4zct.__version__
    # the result does not refer to the temporary file, which goes with the run
    assert out.GetStorageNode() is None
    logic.removeTempFiles(run)
    assert not tempDir.exists()
    # shown side by side, coronal, linked
    lm = slicer.app.layoutManager()
    assert lm.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    red, yellow = (lm.sliceWidget(n).sliceLogic().GetSliceCompositeNode() for n in ("Red", "Yellow"))
    assert (red.GetBackgroundVolumeID(), yellow.GetBackgroundVolumeID()) == (crop.GetID(), out.GetID())
    assert red.GetLinkedControl() == yellow.GetLinkedControl() == 1
    assert lm.sliceWidget("Yellow").mrmlSliceNode().GetOrientation() == "Coronal"


def _crop(replica, node, slices, size_mm):
    """What Crop Volume makes of ``node`` (voxel-based, real vtkSlicerCropVolumeLogic) for slices [a, b)."""
    crop_logic = slicer.vtkSlicerCropVolumeLogic()
    crop_logic.SetMRMLApplicationLogic(slicer.app.applicationLogic())
    crop_logic.SetMRMLScene(slicer.mrmlScene)
    ijkToRas = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijkToRas)
    dims = node.GetImageData().GetDimensions()
    centre_ijk = [(dims[0] - 1) / 2, (dims[1] - 1) / 2, (slices[0] + slices[1] - 1) / 2, 1.0]
    centre = ijkToRas.MultiplyPoint(centre_ijk)[:3]
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "crop ROI")
    roi.SetCenter(centre)
    roi.SetSize(size_mm, size_mm, (slices[1] - slices[0]) * node.GetSpacing()[2])
    out = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "crop")
    crop_logic.CropVoxelBased(roi, node, out)
    uids = node.GetAttribute("DICOM.instanceUIDs").split()[slices[0] : slices[1]]
    out.SetAttribute("DICOM.instanceUIDs", " ".join(uids))  # the crop's own slices, in the database
    out.CreateDefaultDisplayNodes()
    assert out.GetImageData().GetDimensions()[2] == slices[1] - slices[0]
    first = ijkToRas.MultiplyPoint([0, 0, slices[0], 1.0])[2]
    assert out.GetOrigin()[2] == pytest.approx(first)  # its first slice is slice slices[0]
    return out


def test_stale_run_folders_of_a_crashed_session_are_removed_at_the_next_run(replica):
    import os
    import subprocess
    import sys

    from sr4zct.io.atomic import temporary_name

    module, temp = replica.module, Path(slicer.app.temporaryPath)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    ours = temporary_name(temp / "SR4ZCT-run").name  # .SR4ZCT-run.sr4zct-tmp-<host>-<pid>-<random>
    host = ours.split("sr4zct-tmp-")[1].split("-")[0]

    def folder(name):
        path = temp / name
        path.mkdir()
        (path / "input.nrrd").write_bytes(b"x" * 1000)
        return path

    crashed = folder(ours.replace(f"-{os.getpid()}-", f"-{ended.pid}-"))
    running = folder(ours.replace(ours[-12:], "0" * 12))  # this process's: a run still going
    other_host = folder(crashed.name.replace(host, "f" * 8 if host != "f" * 8 else "e" * 8))
    not_ours = folder("SR4ZCT-user-data")
    new = Path(module.SR4ZCTLogic.makeRunFolder())
    assert not crashed.exists()
    assert running.exists() and other_host.exists() and not_ours.exists()  # never touched
    assert new.parent == temp and f"-{os.getpid()}-" in new.name and list(new.iterdir()) == []  # ours, empty


def test_the_background_run_waits_passively_and_leaves_a_gui_core_where_it_can(replica, monkeypatch):
    from sr4zct.app.environment import gui_run_environment  # what the module's runs and queue get
    from sr4zct.system.threads import LEAVE_CORES_ENV, cores_for_a_gui

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv(LEAVE_CORES_ENV, raising=False)
    env = gui_run_environment("cpu")
    assert env == {
        "OMP_WAIT_POLICY": "PASSIVE",
        LEAVE_CORES_ENV: str(cores_for_a_gui()),
        "CUDA_VISIBLE_DEVICES": "-1",
    }
    monkeypatch.setenv(LEAVE_CORES_ENV, "0")  # the user's choice reaches the process unchanged
    assert gui_run_environment("auto") == {"OMP_WAIT_POLICY": "PASSIVE"}
