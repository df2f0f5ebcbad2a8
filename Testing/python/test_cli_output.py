"""What the command line prints: Python names the sentence places in Python stay, lines that a console cannot
encode do not fail a run that succeeded, and the --control-file help names standard input."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from sr4zct.cli import build_parser, main
from sr4zct.cli.messages import echo, to_cli_words
from sr4zct.io import write_volume
from sr4zct.run.control import CONTROL_COMMANDS, STDIN
from sr4zct.run.pipeline import enhance
from sr4zct.run.presets import Preset
from sr4zct.volume import Volume, make_geometry

TINY = Preset("tiny", steps=4, patch_px=16, batch=2, max_minutes=1.0, validate_every=2,
              network_config={"layers": 2, "channels": 4, "unshuffle": 2})  # fmt: skip


def small_volume() -> Volume:
    z, y, x = np.mgrid[0:10, 0:32, 0:32]
    disc = ((y - 16) ** 2 + (x - 16) ** 2) < 12**2
    array = (-1000 + 1040 * disc + 300 * disc * np.sin(z / 2.0 + x / 5.0)).astype(np.float32)
    geometry = make_geometry(
        array.shape, slice_spacing_mm=2.0, slice_thickness_mm=3.0, pixel_spacing_mm=(0.8, 0.8)
    )
    return Volume(array, geometry)


def test_names_the_sentence_places_in_python_stay():
    sentence = "Give the thickness: thickness_mm in Python, --thickness MM on the command line."
    assert to_cli_words(sentence) == sentence
    assert to_cli_words("allow_non_ct=True in Python") == "allow_non_ct=True in Python"
    assert to_cli_words("series_uid=1.2.3 in Python") == "series_uid=1.2.3 in Python"
    # elsewhere the names still become flags
    assert to_cli_words("give thickness_mm or use overwrite=True") == "give --thickness or use --overwrite"
    assert to_cli_words("thickness_mm in Pythonic words") == "--thickness in Pythonic words"


def test_info_on_a_file_without_thickness_names_both_spellings(tmp_path, capsys):
    image = sitk.GetImageFromArray(np.full((6, 16, 16), 40, np.int16))
    image.SetSpacing((0.8, 0.8, 2.0))
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(image, str(path))
    assert main(["info", str(path), "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "thickness_mm in Python, --thickness MM on the command line" in out
    assert "--thickness in Python" not in out


def cp1252_stream() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="cp1252", errors="strict", newline="\n")


def test_echo_escapes_what_the_stream_cannot_encode():
    stream = cp1252_stream()
    echo("wrote C:\\Users\\José\\日本\\out.nrrd \udcff", file=stream)
    stream.flush()
    text = stream.buffer.getvalue().decode("cp1252")
    assert text == "wrote C:\\Users\\José\\\\u65e5\\u672c\\out.nrrd \\udcff\n"
    with pytest.raises(UnicodeEncodeError):  # what print alone does
        print("日本", file=cp1252_stream())


def test_enhance_ends_with_its_summary_on_a_cp1252_console(tmp_path, monkeypatch):
    volume = small_volume()
    model = tmp_path / "model.pt"
    enhance(volume, preset=TINY, save_model_path=model, device="cpu")
    source = tmp_path / "ct.nrrd"
    write_volume(volume, source)
    output = tmp_path / "日本 résultat" / "out.nrrd"
    output.parent.mkdir()
    stdout = cp1252_stream()
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["enhance", str(source), "-o", str(output), "--model", str(model), "--device", "cpu"])
    stdout.flush()
    printed = stdout.buffer.getvalue().decode("cp1252")
    assert code == 0 and output.is_file()
    assert printed.startswith("wrote ") and "\\u65e5\\u672c résultat" in printed and "slices every" in printed


def test_the_control_file_help_names_standard_input():
    parser = build_parser()
    enhance_parser = parser._subparsers._group_actions[0].choices["enhance"]
    action = next(a for a in enhance_parser._actions if a.dest == "control_file")
    assert f"or {STDIN} for standard input" in action.help
    assert all(command in action.help for command in CONTROL_COMMANDS)


def test_the_batch_progress_line_writes_the_eta_as_every_other_view_does():
    import io

    from sr4zct.cli.batch import _Progress
    from sr4zct.system.progress import format_duration

    stream = io.StringIO()
    progress = _Progress(total=3, stream=stream)
    progress({"event": "job_started", "job_id": "j1", "description": "A #1", "model_role": "own"})
    progress({"event": "job_progress", "job_id": "j1", "stage": "train", "step": 120, "total": 3000,
              "fraction": 0.41, "eta_s": 83.0})  # fmt: skip
    assert f"train 120/3000, ETA {format_duration(83.0)}" in stream.getvalue()
    assert format_duration(83.0) == "1 min 23 s"
