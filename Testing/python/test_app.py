"""sr4zct.app: what the Slicer module does beyond GUI and scene work, tested without Slicer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
import sr4zct
from sr4zct.app.node_geometry import check_dimensions, geometry_of_node, series_geometry, thickness_from_file
from sr4zct.app.panel_options import (
    PANEL_OPTIONS,
    option_name,
    options_from_panel,
    panel_fields,
    panel_number,
    slicer_name,
)
from sr4zct.app.results import export_metadata, made_by_sr4zct, result_attributes
from sr4zct.app.run_folder import make_run_folder
from sr4zct.app.study_queue import StudyQueue, is_enhanceable
from sr4zct.errors import GeometryError, ParameterError
from sr4zct.run.options import SEED_MAX, EnhanceOptions

# --- the panel's options ---------------------------------------------------------------------------------


def test_panel_names_are_the_options_in_slicers_spelling():
    assert [slicer_name(name) for name in PANEL_OPTIONS[:3]] == [
        "thicknessMm",
        "spacingMm",
        "targetSpacingMm",
    ]
    for name in EnhanceOptions.names():
        assert option_name(slicer_name(name)) == name and option_name(name) == name


def test_panel_fields_carry_the_options_defaults_choices_and_limits():
    fields = {f.option: f for f in panel_fields()}
    assert tuple(fields) == PANEL_OPTIONS
    options = {f.name: f for f in dataclasses.fields(EnhanceOptions)}
    for name, field in fields.items():
        assert field.kind is options[name].metadata["kind"] and field.help == options[name].metadata["help"]
    assert fields["preset"].choices == ("fast", "balanced", "best") and fields["preset"].default == "balanced"
    assert fields["device"].choices == ("auto", "cpu", "cuda", "mps")
    assert (fields["seed"].minimum, fields["seed"].maximum, fields["seed"].default) == (0, SEED_MAX, 0)
    assert (fields["thickness_mm"].default, fields["thickness_mm"].minimum, fields["thickness_mm"].maximum) == (
        0.0, 0.0, 50.0
    )  # fmt: skip
    assert fields["model_path"].default == ""
    # what issues 20 and 23 added: the estimated profile by default, measured noise, the precision
    assert (fields["profile"].default, fields["profile"].choices) == ("auto", ("auto", "box", "gaussian"))
    assert (fields["noise"].default, fields["noise"].choices) == ("auto", ("auto", "off"))
    assert (fields["precision"].default, fields["precision"].choices) == ("auto", ("auto", "fp32", "bf16"))
    assert (fields["noise"].name, fields["precision"].name) == ("noise", "precision")


def test_the_panels_values_become_options():
    values = {f.name: f.default for f in panel_fields()}
    assert EnhanceOptions(**options_from_panel(values)) == EnhanceOptions()
    values.update(thicknessMm=3.0, spacingMm=2.0, targetSpacingMm=1.0, modelPath="m.pt", seed=SEED_MAX)
    options = options_from_panel(values, measured_spacing_mm=2.00001)
    assert options["spacing_mm"] is None  # the measured spacing: the run measures it (irregular positions)
    assert (options["thickness_mm"], options["target_spacing_mm"], options["model_path"]) == (
        3.0,
        1.0,
        "m.pt",
    )
    assert options_from_panel(values, measured_spacing_mm=2.5)["spacing_mm"] == 2.0  # changed by the user
    assert EnhanceOptions(**options).seed == SEED_MAX


@pytest.mark.parametrize(
    ("value", "shown"), [(3.0, 3.0), (None, 0.0), (50.0, 50.0), (60.0, 0.0), (-1.0, 0.0)]
)
def test_a_value_the_panel_cannot_hold_shows_as_unset(value, shown):
    assert panel_number("thicknessMm", value) == shown


# --- the geometry of a volume node -----------------------------------------------------------------------

AXIAL_RAS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def _node(**changes):
    values = dict(dimensions=(48, 40, 12), spacing_mm=(0.75, 0.75, 2.0), directions_ras=AXIAL_RAS,
                  thickness_mm=3.0, source="volume node")  # fmt: skip
    return geometry_of_node(**{**values, **changes})


def test_a_plain_node_gives_its_coarse_axis_and_no_warning():
    geometry = _node()
    assert (geometry.axis, geometry.n_slices, geometry.spacing_mm, geometry.overlap_mm) == (2, 12, 2.0, 1.0)
    assert geometry.in_plane_spacing_mm == (0.75, 0.75) and geometry.warnings == []
    assert _node(thickness_mm=None).overlap_mm is None
    sagittal = _node(dimensions=(12, 40, 48), spacing_mm=(3.0, 0.8, 0.8))
    assert (sagittal.axis, sagittal.n_slices, sagittal.in_plane_spacing_mm) == (0, 12, (0.8, 0.8))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"transform_name": "3: CT acquisition transform"}, "regularised an irregular acquisition"),
        ({"transform_name": "registration"}, "under the transform 'registration'"),
        ({"dicom_missing": True}, "not in this Slicer's DICOM database"),
    ],
)
def test_what_the_panel_warns_about(changes, fragment):
    assert [w for w in _node(**changes).warnings if fragment in w]


def test_a_2d_volume_is_refused():
    check_dimensions("ok", (48, 40, 12))
    with pytest.raises(GeometryError, match=r"'localizer' is not a 3-D volume \(size 36 x 36 x 1\)"):
        check_dimensions("localizer", (36, 36, 1))


def test_dicom_attributes_give_the_series_geometry_and_its_warnings(tmp_path):
    from dicom_factory import write_series

    series = write_series(
        tmp_path / "ct", n_slices=6, thickness_mm=3.0, spacing_mm=2.0, file_order="shuffled"
    )
    headers = {str(p): pydicom.dcmread(p, stop_before_pixels=True) for p in series.paths}
    instance_value = _database(headers)
    uids = [h.SOPInstanceUID for h in headers.values()]
    geometry = series_geometry(uids, instance_value, list(headers))
    assert (geometry.slice_thickness_mm, geometry.slice_spacing_mm, geometry.n_slices) == (3.0, 2.0, 6)
    assert geometry.series_uid == series.series_uid
    node = _node(dimensions=(series.hu.shape[2], series.hu.shape[1], 5), series=geometry, source="DICOM")
    assert node.spacing_mm == 2.0 and node.thickness_mm == 3.0  # the node's own thickness is the series'
    assert any("has 6 slices but the volume has 5 along K" in w for w in node.warnings)
    fine = write_series(
        tmp_path / "fine", n_slices=6, thickness_mm=0.4, spacing_mm=0.4
    )  # pixels 0.5 x 0.6 mm
    fine_headers = {str(p): pydicom.dcmread(p, stop_before_pixels=True) for p in fine.paths}
    uids = [h.SOPInstanceUID for h in fine_headers.values()]
    node = _node(
        dimensions=(10, 12, 6), series=series_geometry(uids, _database(fine_headers), list(fine_headers))
    )
    assert any("finer than the in-plane pixel size" in w for w in node.warnings)
    del headers[str(series.paths[0])].ImagePositionPatient
    with pytest.raises(GeometryError, match="no valid ImagePositionPatient"):
        series_geometry([h.SOPInstanceUID for h in headers.values()], instance_value, list(headers))


def test_the_series_scan_mode_reaches_the_run_and_the_estimate(tmp_path):
    """The scan mode the DICOM files state becomes the run's (unless given) and fixes the panel's estimate."""
    from dicom_factory import write_series
    from sr4zct.app.run_folder import run_options

    series = write_series(tmp_path / "ct", n_slices=6, extra_tags={"SpiralPitchFactor": 0.9})
    headers = {str(p): pydicom.dcmread(p, stop_before_pixels=True) for p in series.paths}
    uids = [h.SOPInstanceUID for h in headers.values()]
    geometry = series_geometry(uids, _database(headers), list(headers))
    assert (geometry.scan_mode, geometry.scan_mode_source) == ("helical", "SpiralPitchFactor 0.9")
    node = _node(dimensions=(10, 12, 6), series=geometry, source="DICOM")
    folder = tmp_path / "run"
    assert (
        run_options(EnhanceOptions(), node, "CT", folder, preview=False, uncertainty=False).scan_mode
        == "helical"
    )
    given = EnhanceOptions(scan_mode="sequential")
    assert run_options(given, node, "CT", folder, preview=False, uncertainty=False).scan_mode == "sequential"
    assert (
        run_options(EnhanceOptions(), _node(), "CT", folder, preview=False, uncertainty=False).scan_mode
        == "auto"
    )
    mixed = write_series(
        tmp_path / "mixed", n_slices=6, per_slice_tags={"SpiralPitchFactor": [0.9, 0.9, 0, 0, 0, 0]}
    )
    headers = {str(p): pydicom.dcmread(p, stop_before_pixels=True) for p in mixed.paths}
    uids = [h.SOPInstanceUID for h in headers.values()]
    assert series_geometry(uids, _database(headers), list(headers)).scan_mode is None


def _database(headers):
    """``instance_value(uid, tag)`` as ctkDICOMDatabase.instanceValue answers it: the attribute's text."""
    by_uid = {h.SOPInstanceUID: h for h in headers.values()}
    tags = {"0020,0032": "ImagePositionPatient", "0020,0037": "ImageOrientationPatient", "0028,0010": "Rows",
            "0028,0011": "Columns", "0020,000E": "SeriesInstanceUID", "0008,103E": "SeriesDescription"}  # fmt: skip

    def instance_value(uid, tag):
        value = by_uid[uid].get(tags[tag], "")
        return (
            "\\".join(str(v) for v in value) if isinstance(value, pydicom.multival.MultiValue) else str(value)
        )

    return instance_value


def test_the_thickness_recorded_in_a_file_header(tmp_path):
    import SimpleITK as sitk

    image = sitk.Image(8, 8, 4, sitk.sitkInt16)
    image.SetSpacing((0.75, 0.75, 2.0))
    plain, recorded = tmp_path / "plain.nrrd", tmp_path / "recorded.nrrd"
    sitk.WriteImage(image, str(plain))
    image.SetMetaData("sr4zct_slice_thickness_mm", "3")
    sitk.WriteImage(image, str(recorded))
    assert thickness_from_file(str(recorded)) == 3.0
    assert thickness_from_file(str(plain)) is None and thickness_from_file(None) is None
    assert thickness_from_file(str(tmp_path / "missing.nrrd")) is None


# --- the run folder --------------------------------------------------------------------------------------


def test_a_run_folder_is_named_for_its_process_and_stale_ones_go(tmp_path):
    import os
    import subprocess
    import sys

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    first = make_run_folder(tmp_path)
    assert first.parent == tmp_path and f"-{os.getpid()}-" in first.name and first.is_dir()
    stale = tmp_path / first.name.replace(f"-{os.getpid()}-", f"-{ended.pid}-")
    stale.mkdir()
    (stale / "input.nrrd").write_bytes(b"x")
    mine = tmp_path / "SR4ZCT-run"  # not a temporary's name: never touched
    mine.mkdir()
    second = make_run_folder(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name, "SR4ZCT-run"])


# --- results and the queue of a study's volumes ----------------------------------------------------------


def test_a_results_attributes_and_its_dicom_export_metadata():
    finished = {"parameters": {"preset": "fast", "steps": 120, "gain": None}, "timings_s": {"train": 1.5}}
    attributes = result_attributes("CT", finished)
    assert attributes == {"SR4ZCT.inputVolume": "CT", "SR4ZCT.version": sr4zct.__version__,
                          "SR4ZCT.preset": "fast", "SR4ZCT.steps": "120", "SR4ZCT.timings_s": '{"train": 1.5}'}  # fmt: skip
    assert made_by_sr4zct(list(attributes)) and not made_by_sr4zct(["SR4ZCT.sliceThicknessMm", "DICOM.x"])
    node = {**attributes, "SR4ZCT.referenceInstanceUID": "1.2.3", "DICOM.instanceUIDs": "1.2.4"}
    metadata = export_metadata(node, "CT SR4ZCT")
    assert metadata["preset"] == "fast" and metadata["series_description"] == "CT SR4ZCT"
    assert "referenceInstanceUID" not in metadata and "DICOM.instanceUIDs" not in metadata
    assert export_metadata(node, "renamed")["series_description"] == "renamed SR4ZCT"


def test_a_dicom_export_is_written_in_a_run_folder_that_goes_afterwards(tmp_path):
    from sr4zct.app.results import dicom_export

    volume = sr4zct.Volume(
        np.zeros((3, 8, 8), np.float32), sr4zct.make_geometry((3, 8, 8), slice_spacing_mm=1.0)
    )
    with dicom_export(volume, {"SR4ZCT.preset": "fast"}, "CT SR4ZCT", None, tmp_path) as (series, uid):
        files = sorted(series.iterdir())
        first = pydicom.dcmread(files[0])
        assert len(files) == 3 and first.SeriesInstanceUID == uid and first.SeriesDescription == "CT SR4ZCT"
        assert "fast" in str(first.ImageComments)
    assert list((tmp_path).iterdir()) == []  # the run folder went with the export


def test_a_run_that_cannot_start_leaves_no_run_folder(tmp_path):
    from sr4zct.app.run_folder import make_run_folder, start_run

    folder = make_run_folder(tmp_path)
    node = _node()

    def write(path):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        start_run(EnhanceOptions(), node, "CT", folder, write, preview=True, uncertainty=False)
    with pytest.raises(ParameterError, match="slice thickness of 'CT' is unknown"):
        start_run(EnhanceOptions(), _node(thickness_mm=None), "CT", make_run_folder(tmp_path), write,
                  preview=False, uncertainty=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("class_name", "made", "modality", "taken"),
    [
        ("vtkMRMLScalarVolumeNode", False, "", True),
        ("vtkMRMLScalarVolumeNode", False, " ct", True),
        ("vtkMRMLScalarVolumeNode", False, "MR", False),
        ("vtkMRMLScalarVolumeNode", True, "CT", False),
        ("vtkMRMLLabelMapVolumeNode", False, "", False),
        ("vtkMRMLVectorVolumeNode", False, "", False),
    ],
)
def test_the_queue_takes_ct_scalar_volumes_only(class_name, made, modality, taken):
    assert is_enhanceable(class_name, made, modality) is taken


def test_the_queue_records_what_it_cannot_enhance_and_names_its_jobs(tmp_path):
    queue = StudyQueue(tmp_path, EnhanceOptions(thickness_mm=2.5, spacing_mm=2.0, preset="fast"))
    written = []
    plain = _node(thickness_mm=None)
    series = sr4zct.make_geometry((12, 40, 48), slice_spacing_mm=2.0, slice_thickness_mm=3.0)
    dicom = dataclasses.replace(_node(), series=dataclasses.replace(series, series_uid="1.2.3"))

    def localizer():
        check_dimensions("localizer", (36, 36, 1))

    for key, name, geometry in [("a", "CT a", plain), ("b", "CT/b", dicom), ("c", "CT c", plain),
                                ("d", "localizer", None)]:  # fmt: skip
        queue.add(key, name, (lambda g=geometry: g) if geometry else localizer, written.append)
    jobs = queue._jobs
    assert [j.job_id for j in jobs] == [
        "slicer:CT a",
        "dicom:1.2.3",
    ]  # a scene volume: its name; DICOM: its UID
    assert [j.output_name for j in jobs] == ["CT_a", "CT_b"]
    assert jobs[0].options == {"thickness_mm": 2.5, "slice_axis": 0, "spacing_mm": 2.0}  # the panel's volume
    assert jobs[1].options == {"thickness_mm": 3.0, "slice_axis": 0, "series_uid": "1.2.3"}  # its own
    assert written == [str(tmp_path / "000.nrrd"), str(tmp_path / "001.nrrd")]
    assert queue.outputs() == [] and queue.batch is None
    failed = {e["record"]["description"]: e["record"]["error_message"] for e in queue._backlog}
    assert "thickness is unknown" in failed["CT c"] and "not a 3-D volume" in failed["localizer"]


def test_the_queues_progress_and_log_lines():
    from sr4zct.app.study_queue import job_ended_line

    queue = StudyQueue("unused", EnhanceOptions())
    queue._jobs, queue._outputs = ["j1", "j2", "j3", "j4"], {"j1": "node 1"}  # one of four volumes done
    assert queue.progress({"event": "job_progress", "fraction": 0.5}) == (1, 4, 0.375)
    assert queue.progress({"event": "job_ended"}) == (1, 4, 0.25)
    assert queue.progress({"event": "batch_ended"}) == (1, 4, 1.0)
    failed = {"event": "job_ended", "job_id": "slicer:CT c", "status": "failed",
              "record": {"description": "CT c", "error_message": "its slice thickness is unknown"}}  # fmt: skip
    assert job_ended_line(failed) == "CT c: failed (its slice thickness is unknown)"
    assert job_ended_line({"job_id": "dicom:1.2.3", "status": "done", "record": {}}) == "dicom:1.2.3: done"


def test_a_volume_that_cannot_be_written_for_an_unexpected_reason_removes_the_queues_folder(tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    queue = StudyQueue(folder, EnhanceOptions(thickness_mm=3.0))

    def write(path):
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="disk went away"):
        queue.add("a", "CT a", _node, write)
    assert list(tmp_path.iterdir()) == []


def test_a_queue_of_volumes_that_cannot_be_enhanced_does_not_start(tmp_path):
    queue = StudyQueue(tmp_path / "q", EnhanceOptions())
    (tmp_path / "q").mkdir()
    queue.add("a", "CT a", lambda: _node(thickness_mm=None), lambda path: None)
    with pytest.raises(ParameterError, match="None of the volumes can be enhanced: its slice thickness"):
        queue.start(tmp_path / "out", engine=None)
    queue.remove_folder()
    assert list(tmp_path.iterdir()) == []


def test_a_volume_and_a_node_matrix_carry_the_same_geometry():
    from sr4zct.app.node_geometry import ijk_to_ras, kji_geometry

    c, s = np.cos(0.3), np.sin(0.3)
    axes = ((0.0, s, c), (0.0, c, -s), (1.0, 0.0, 0.0))  # an oblique stack: slice axis tilted in y-z
    geometry = sr4zct.make_geometry((6, 8, 10), slice_spacing_mm=2.5, pixel_spacing_mm=(0.7, 0.8),
                                    origin_lps=(10.0, -20.0, 30.0), axes_lps=axes)  # fmt: skip
    matrix = np.array(ijk_to_ras(geometry))
    flip = np.array([-1.0, -1.0, 1.0])
    assert matrix[:3, 3] == pytest.approx(flip * (10.0, -20.0, 30.0)) and list(matrix[3]) == [0, 0, 0, 1]
    assert matrix[:3, 2] == pytest.approx(flip * np.array(axes[0]) * 2.5)  # K: the slices
    assert matrix[:3, 0] == pytest.approx(flip * np.array(axes[2]) * 0.8)  # I: the columns
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    directions = (matrix[:3, :3] / spacing).T
    back = kji_geometry((6, 8, 10), spacing, directions, matrix[:3, 3], thickness_mm=3.0, name="CT")
    assert np.allclose(back.axes_lps, axes) and back.origin_lps == pytest.approx(geometry.origin_lps)
    assert back.spacing_mm == pytest.approx((2.5, 0.7, 0.8)) and back.slice_thickness_mm == 3.0


# --- what the panel shows of the slice model and the precision ------------------------------------------


@pytest.mark.parametrize("axis", [2, 0])  # the node's IJK slice axis: K (axial), I (slices along I)
def test_the_panels_profile_estimate_runs_in_a_thread_and_flags_a_wrong_thickness(axis):
    from sr4zct.app.estimates import start_estimate
    from test_profile import isotropic_texture, thick_slices

    thick = thick_slices(isotropic_texture(), 6.0, 3.0, "gaussian")  # (slice, row, column), 1 mm pixels
    kji = thick if axis == 2 else np.moveaxis(thick, 0, 2)  # slices along the node's axis
    voxel_ijk = [1.0, 1.0, 1.0]
    voxel_ijk[axis] = 3.0
    geometry = geometry_of_node(dimensions=kji.shape[::-1], spacing_mm=voxel_ijk, directions_ras=AXIAL_RAS,
                                thickness_mm=6.0, source="test")  # fmt: skip
    assert geometry.axis == axis
    right = start_estimate(kji, voxel_ijk, geometry)
    kji[...] = -1000.0  # the user changes the node meanwhile: the estimate works on its own copy
    text = right.result(timeout=120)
    assert text.startswith("Estimated from the scan: gaussian, FWHM ") and "\u26a0" not in text
    assert float(text.split("FWHM ")[1].split(" mm")[0]) == pytest.approx(6.0, rel=0.15)
    thick = thick_slices(isotropic_texture(), 6.0, 3.0, "gaussian")
    wrong = start_estimate(thick if axis == 2 else np.moveaxis(thick, 0, 2), voxel_ijk, geometry, 3.0)
    assert "\u26a0 Far from the slice thickness of 3 mm" in wrong.result(timeout=120)
    air = start_estimate(np.full_like(kji, -1000.0), voxel_ijk, geometry)
    assert air.result(timeout=120).startswith("Slice profile not estimated: Too little")


def test_what_a_finished_run_shows_of_its_profile_noise_and_precision():
    from sr4zct.app.estimates import result_lines

    finished = {
        "parameters": {
            "profile": "gaussian", "profile_option": "auto", "profile_estimate": "gaussian, FWHM 3.10 mm",
            "noise_sigma_hu": "8.20", "training_noise": "on", "precision": "bf16",
            "precision_reason": "the CPU has native bf16",
        },
        "warnings": ["The slice profile estimated from the scan disagrees with the slice thickness."],
    }  # fmt: skip
    assert result_lines(finished) == [
        "Slice profile: gaussian (estimated from the scan: gaussian, FWHM 3.10 mm)",
        "Slice noise: 8.20 HU, added to the training inputs",
        "Precision: bf16 (the CPU has native bf16)",
        "\u26a0 The slice profile estimated from the scan disagrees with the slice thickness.",
    ]
    given = {"parameters": {"profile": "box", "profile_option": "box", "precision": "fp32"}}
    assert result_lines(given) == ["Slice profile: box (given)", "Precision: fp32"]
    assert result_lines({}) == []
    fallback = {"parameters": {"profile": "box", "profile_option": "auto"}}  # the estimate failed
    assert result_lines(fallback) == ["Slice profile: box (auto, not estimated from the scan)"]


@pytest.mark.parametrize("axis", [2, 1, 0])
def test_the_preview_row_under_a_slice_view_is_the_row_the_core_shows(axis):
    """The row of the point a coronal view shows is the row that holds it once the core has read the run's
    file (slice axis first, the others in file order), for slices along K, J and I."""
    from sr4zct.app.node_geometry import row_at
    from sr4zct.io.image import permutation

    dimensions = (7, 9, 11)  # I, J, K
    identity = [[float(r == c) for c in range(4)] for r in range(4)]  # RAS = IJK
    ijk = (5, 3, 8)
    kji = np.zeros(dimensions[::-1])
    kji[ijk[2], ijk[1], ijk[0]] = 1.0
    core = np.transpose(kji, permutation(2 - axis))  # (slice, row, column) as the core reads the file
    assert row_at(ijk, identity, axis, dimensions) == int(np.argwhere(core == 1.0)[0][1])
    assert row_at((-40.0, -40.0, -40.0), identity, axis, dimensions) == 0  # clipped to the volume
