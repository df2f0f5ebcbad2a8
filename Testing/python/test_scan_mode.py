"""The scan mode (helical or sequential) read from a series' DICOM attributes, and shown by ``sr4zct info``."""

from __future__ import annotations

import pytest
from pydicom.multival import MultiValue
from pydicom.valuerep import DSfloat
from sr4zct.cli import main
from sr4zct.io import read_geometry
from sr4zct.volume.scan_mode import SCAN_MODES, scan_mode_from_attributes


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"acquisition_type": "SPIRAL"}, ("helical", "AcquisitionType SPIRAL")),
        ({"acquisition_type": "SEQUENCED"}, ("sequential", "AcquisitionType SEQUENCED")),
        ({"acquisition_type": "STATIONARY"}, ("sequential", "AcquisitionType STATIONARY")),
        ({"spiral_pitch_factor": DSfloat("0.8")}, ("helical", "SpiralPitchFactor 0.8")),
        ({"spiral_pitch_factor": "1.375"}, ("helical", "SpiralPitchFactor 1.375")),
        ({"scan_options": "HELICAL MODE"}, ("helical", "ScanOptions HELICAL MODE")),
        ({"scan_options": MultiValue(str, ["AXIAL MODE"])}, ("sequential", "ScanOptions AXIAL MODE")),
        (
            {"image_type": ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"]},
            ("helical", "ImageType CT_SOM5 SPI"),
        ),
        (
            {"image_type": ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SEQ"]},
            ("sequential", "ImageType CT_SOM5 SEQ"),
        ),
        # the first attribute that states a mode wins
        (
            {"acquisition_type": "SEQUENCED", "spiral_pitch_factor": 1.0},
            ("sequential", "AcquisitionType SEQUENCED"),
        ),
        # nothing said: a pitch of 0, a topogram, an axial image type alone, other options, nothing at all
        ({"spiral_pitch_factor": 0.0}, (None, "")),
        ({"acquisition_type": "CONSTANT_ANGLE"}, (None, "")),
        ({"image_type": ["ORIGINAL", "PRIMARY", "AXIAL"]}, (None, "")),
        ({"scan_options": "CARDIAC"}, (None, "")),
        ({"spiral_pitch_factor": "not a number"}, (None, "")),
        ({}, (None, "")),
        # a derived series (thick slabs averaged from thin ones) has the averaging's profile, not the scan's
        (
            {"image_type": ["DERIVED", "SECONDARY", "CSA MPR", "CT_SOM5 SPI"], "spiral_pitch_factor": 1.0},
            (None, ""),
        ),
    ],
)
def test_the_attributes_that_state_the_scan_mode(attributes, expected):
    assert scan_mode_from_attributes(**attributes) == expected
    assert expected[0] is None or expected[0] in SCAN_MODES


def test_a_dicom_series_states_its_scan_mode_and_info_shows_it(tmp_path, capsys):
    from dicom_factory import write_series

    helical = write_series(tmp_path / "helical", n_slices=5, extra_tags={"SpiralPitchFactor": 0.8})
    geometry = read_geometry(helical.folder)
    assert (geometry.scan_mode, geometry.scan_mode_source) == ("helical", "SpiralPitchFactor 0.8")
    assert geometry.to_dict()["scan_mode"] == "helical"
    assert main(["info", str(helical.folder), "--no-estimate"]) == 0
    assert (
        "Scan mode:         helical (DICOM SpiralPitchFactor 0.8): gaussian slice profile"
        in capsys.readouterr().out
    )
    sequential = write_series(
        tmp_path / "sequential",
        n_slices=5,
        extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SEQ"]},
    )
    assert read_geometry(sequential.folder).scan_mode == "sequential"
    plain = write_series(tmp_path / "plain", n_slices=5)
    assert read_geometry(plain.folder).scan_mode is None
    assert main(["info", str(plain.folder), "--no-estimate"]) == 0
    assert "Scan mode:         not stated in the DICOM header" in capsys.readouterr().out
    # slices that disagree (a series merged from two acquisitions) state none
    mixed = write_series(
        tmp_path / "mixed", n_slices=5, per_slice_tags={"SpiralPitchFactor": [1, 1, 1, 0, 0]}
    )
    assert read_geometry(mixed.folder).scan_mode is None


def test_the_real_series_is_helical(l291_dir):
    geometry = read_geometry(l291_dir)
    assert (geometry.scan_mode, geometry.scan_mode_source) == ("helical", "SpiralPitchFactor 0.8")
