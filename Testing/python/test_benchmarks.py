"""Tests of the benchmark suite (benchmarks/): result bookkeeping, targets, measurement, and the smoke run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sr4zct.volume import Volume, make_geometry  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.measure import run_measured  # noqa: E402
from benchmarks.quality import add_gains, crop_volume, extract_run_info, normalise_scores  # noqa: E402
from benchmarks.run import BenchmarkError, parse_settings  # noqa: E402


def _run(run_id: str = "r1", command: str = "python -m benchmarks.run") -> dict:
    return {
        "id": run_id,
        "date": "2026-01-01 00:00 UTC",
        "command": command,
        "machine": {"cpu": "test", "versions": {}},
    }


def _quality(
    method, psnr, *, t=5.0, o=2.5, profile="box", preset=None, linear=40.0, wall_s=100.0, crop=None, **extra
):
    row = {
        "kind": "quality",
        "status": "ok",
        "method": method,
        "thickness_mm": t,
        "overlap_mm": o,
        "profile": profile,
        "crop": crop,
        "preset": preset,
        "network": "default",
        "psnr_box": psnr,
        "psnr_coronal": psnr - 1,
        "psnr_sagittal": psnr - 2,
        "wall_s": wall_s,
        "key": f"q|{method}|{preset}|{t}|{o}|{profile}|{crop}",
    }
    base = {
        "linear": {"psnr_box": linear, "psnr_coronal": linear - 1, "psnr_sagittal": linear - 2},
        "bspline": {"psnr_box": linear + 0.9, "psnr_coronal": linear, "psnr_sagittal": linear - 1},
        "lanczos": {"psnr_box": linear + 1.0, "psnr_coronal": linear, "psnr_sagittal": linear - 1},
    }
    row.update(extra)
    return add_gains(row, base)


def _status(targets, startswith):
    matches = [t for t in targets if t["target"].startswith(startswith)]
    assert matches, f"no target starting with {startswith!r}"
    return matches[0]


# ---------------------------------------------------------------------------------------------------
# Settings and bookkeeping
# ---------------------------------------------------------------------------------------------------
def test_parse_settings():
    assert parse_settings("5/2.5, 3/-1") == [(5.0, 2.5), (3.0, -1.0)]
    assert len(parse_settings("all")) == 8
    assert (5.0, 0.0) in parse_settings("all") and (3.0, -1.0) in parse_settings("all")
    for bad in ("5", "5/x", "2/2", "-1/0", ""):
        with pytest.raises(BenchmarkError):
            parse_settings(bad)


def test_merge_replaces_same_key_and_keeps_others(tmp_path):
    results = report.empty_results()
    results = report.merge_results(results, _run("a"), [{"key": "k1", "v": 1}, {"key": "k2", "v": 2}])
    results = report.merge_results(
        results, _run("b", "python -m benchmarks.run --x"), [{"key": "k1", "v": 3}]
    )
    by_key = {r["key"]: r for r in results["rows"]}
    assert by_key["k1"]["v"] == 3 and by_key["k1"]["run_id"] == "b"
    assert by_key["k1"]["command"] == "python -m benchmarks.run --x"
    assert by_key["k2"]["v"] == 2 and by_key["k2"]["run_id"] == "a"
    assert [r["id"] for r in results["runs"]] == ["a", "b"]
    # a run whose rows were all replaced is dropped from the run list
    results = report.merge_results(results, _run("c"), [{"key": "k2", "v": 4}])
    results = report.merge_results(results, _run("d"), [{"key": "k1", "v": 5}])
    assert [r["id"] for r in results["runs"]] == ["c", "d"]
    path = tmp_path / "results.json"
    results["rows"].append({"key": "nan", "psnr_box": math.inf})
    report.save_results(results, path)
    loaded = report.load_results(path)
    assert loaded["rows"][-1]["psnr_box"] == "inf" and report.num("inf") == math.inf
    assert loaded["runs"] == results["runs"]


def test_add_gains_uses_same_run_linear():
    row = _quality("sr4zct", 45.5, preset="fast", linear=41.0)
    assert row["gain_db"] == pytest.approx(4.5)
    assert row["gain_coronal_db"] == pytest.approx(4.5)
    assert row["linear_psnr_box"] == 41.0 and row["lanczos_psnr_box"] == 42.0


# ---------------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------------
def test_targets_met_and_not_met():
    rows = [
        _quality("linear", 41.0, linear=41.0),
        _quality("sr4zct", 45.5, preset="fast", linear=41.0, wall_s=280.0),  # +4.5 dB in 4.7 min: both met
        _quality("sr4zct", 46.0, preset="balanced", linear=41.0, wall_s=1000.0),  # +5 dB, 16.7 min: neither
    ]
    results = report.merge_results(report.empty_results(), _run(), rows)
    targets = report.compute_targets(results)
    assert _status(targets, "`fast`: body-box")["status"] == report.MET
    assert _status(targets, "`balanced`: body-box")["status"] == report.NOT_MET
    assert _status(targets, "`best`: body-box")["status"].startswith("not measured")
    assert _status(targets, "`fast` end to end")["status"] == report.MET
    assert _status(targets, "`balanced` end to end")["status"] == report.NOT_MET
    assert _status(targets, "every preset beats B-spline")["status"] == report.MET
    assert _status(targets, "no preset loses to linear")["status"] == report.MET
    assert _status(targets, "GPU:")["status"].startswith("not measured")
    assert _status(targets, "`fast`: ETA within")["status"].startswith("not measured")  # no progress trace
    # every target of issues 6 and 16 is listed, measured or not
    assert len(targets) == 3 + 4 + 2 + 1 + 2 + 3 + 1 + 1 + 3 + 1


def test_targets_crop_rows_do_not_count_for_headline_and_losers_are_named():
    rows = [
        _quality("sr4zct", 50.0, preset="fast", linear=41.0, crop=192),
        _quality("sr4zct", 40.5, t=3.0, o=-1.0, preset="fast", linear=41.0),
    ]
    results = report.merge_results(report.empty_results(), _run(), rows)
    targets = report.compute_targets(results)
    assert _status(targets, "`fast`: body-box")["status"].startswith("not measured")
    lose = _status(targets, "no preset loses to linear")
    assert lose["status"] == report.NOT_MET and "3/-1" in lose["measured"]
    assert _status(targets, "every preset beats Lanczos")["status"] == report.NOT_MET


def test_targets_paper_gain_and_peers():
    best = _quality("sr4zct", 48.5, preset="best", linear=41.0)  # +7.5 on all planes vs paper 7.0 / 6.7
    peers = [
        {
            "kind": "peer",
            "key": "p1",
            "method": "sr4zct-default",
            "status": "ok",
            "psnr_box": 39.5,
            "wall_s": 240,
            "crop": 192,
        },
        {
            "kind": "peer",
            "key": "p2",
            "method": "sr4zct-msd",
            "status": "ok",
            "psnr_box": 38.9,
            "wall_s": 240,
            "crop": 192,
        },
        {
            "kind": "peer",
            "key": "p3",
            "method": "eclare",
            "status": "no result within 12 min",
            "wall_s": 720,
            "crop": 192,
        },
        # a peer run on another crop does not count for the target
        {
            "kind": "peer",
            "key": "p4",
            "method": "sr4zct-msd",
            "status": "ok",
            "psnr_box": 30.0,
            "wall_s": 240,
            "crop": 64,
        },
    ]
    results = report.merge_results(report.empty_results(), _run(), [best, *peers])
    targets = report.compute_targets(results)
    assert _status(targets, "`best` >= paper gain at 5/2.5")["status"] == report.MET
    assert _status(targets, "`best` >= paper gain at 2.5/1.25")["status"].startswith("not measured")
    assert (
        _status(targets, "equal wall time on the 192x192 crop (5/2.5 box): default network beats the MS-D")[
            "status"
        ]
        == report.NOT_MET
    )  # +0.6 dB < 1 dB
    eclare = _status(targets, "equal wall time on the 192x192 crop (5/2.5 box): default network beats ECLARE")
    assert eclare["status"].startswith("not measured") and "no result" in eclare["measured"]


def test_markdown_has_every_section():
    rows = [
        _quality("linear", 41.0, linear=41.0, input_shape=[96, 512, 512]),
        _quality("sr4zct", 45.5, preset="fast", linear=41.0, timings_s={"train": 200.0, "infer": 60.0}),
        {"kind": "acquisition", "key": "a", "status": "ok", "speedup": 120.0, "fast_s": 0.5, "naive_s": 60.0,
         "shape": [343, 512, 512]},
        {"kind": "network_speed", "key": "n", "status": "ok", "device": "cpu", "network": "default",
         "train_steps_per_s": 5.0, "infer_voxels_per_s": 2e6},
    ]  # fmt: skip
    results = report.merge_results(report.empty_results(), _run(), rows)
    text = report.render_markdown(results)
    assert "## Targets (issue 6)" in text and "| target | measured | status |" in text
    assert "### 5 mm every 2.5 mm (overlap 2.5 mm), box profile, full volume" in text
    assert "+4.50 dB" in text and "train 3.3 min" in text
    assert "120x" in text and "| cpu | default |" in text
    assert "`python -m benchmarks.run`" in text


def test_a_run_with_a_cut_budget_measures_the_eta_but_not_the_preset():
    from benchmarks.run import _cap_suffix, _capped

    assert _capped("best", 8.0) and not _capped("best", None) and not _capped("fast", 60.0)
    assert _cap_suffix("best", 8.0) == "|cap8min" and _cap_suffix("fast", None) == ""
    own = _quality("sr4zct", 48.0, preset="best", linear=40.0, wall_s=2700.0)
    cut = _quality("sr4zct", 44.0, preset="best", linear=40.0, wall_s=480.0, capped=True, max_minutes=8.0,
                   eta_error_max=0.12, eta_error_median=0.05, key=own["key"] + "|cap8min")  # fmt: skip
    results = report.merge_results(report.empty_results(), _run(), [own, cut])
    targets = report.compute_targets(results)
    assert _status(targets, "`best`: body-box")["measured"].startswith("+8.00 dB")
    assert _status(targets, "`best` end to end")["status"] == report.MET
    eta = _status(targets, "`best`: ETA within")
    assert "12%" in eta["measured"] and "budget cut to 8 min" in eta["measured"]
    text = report.render_markdown(results)
    assert "SR4ZCT `best`, budget cut to 8 min" in text
    assert report.spread_table(results)["best"]["cases"]["full"] is own  # not the cut run


def test_regenerating_the_report_keeps_sections_other_commands_own(tmp_path):
    from benchmarks.sections import write_section

    path = tmp_path / "BENCHMARKS.md"
    results = report.merge_results(report.empty_results(), _run(), [_quality("linear", 41.0, linear=41.0)])
    report.write_report(path, results)
    write_section("cohort", "## Cohort\n\nreuse 3.4x", path)
    write_section("preview", "## Preview\n\ncost 2 %", path)
    results = report.merge_results(results, _run("r2"), [_quality("linear", 40.0, linear=40.0)])
    report.write_report(path, results)
    text = path.read_text()
    assert text.count("<!-- cohort:begin -->") == 1 and "reuse 3.4x" in text and "cost 2 %" in text
    assert text.startswith(report.render_markdown(results).rstrip("\n"))
    write_section("cohort", "## Cohort\n\nreuse 3.5x", path)
    assert "reuse 3.5x" in path.read_text() and "reuse 3.4x" not in path.read_text()


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
def test_normalise_scores_flat_and_nested():
    flat = {
        "psnr_box": 40.0,
        "psnr_coronal": 39.0,
        "psnr_sagittal": 38.0,
        "ssim_coronal": 0.9,
        "ssim_sagittal": 0.8,
    }
    assert normalise_scores(flat) == flat
    nested = {
        "body_box": {"psnr": 40.0},
        "coronal": {"psnr": 39.0, "ssim": 0.9},
        "sagittal": {"psnr": 38.0, "ssim": 0.8},
    }
    out = normalise_scores(nested)
    assert out == {
        "psnr_box": 40.0,
        "psnr_coronal": 39.0,
        "psnr_sagittal": 38.0,
        "ssim_coronal": 0.9,
        "ssim_sagittal": 0.8,
    }


def test_extract_run_info_from_metadata_and_summary_line():
    meta = {
        "steps": "1234",
        "device": "cpu (2 threads)",
        "timings_s": json.dumps({"train_s": 10.5, "infer_s": 3}),
    }
    info = extract_run_info(meta)
    assert info["steps"] == 1234 and info["device"] == "cpu (2 threads)"
    assert info["timings_s"] == {"train": 10.5, "infer": 3.0}
    info = extract_run_info({}, 'noise\n{"timings": {"train": 2.0}, "steps": 7}\n')
    assert info["timings_s"] == {"train": 2.0} and info["steps"] == 7


def test_crop_keeps_physical_positions():
    geom = make_geometry(
        (10, 20, 30),
        slice_spacing_mm=2.0,
        pixel_spacing_mm=(0.5, 0.25),
        slice_thickness_mm=3.0,
        origin_lps=(1.0, 2.0, 3.0),
        axes_lps=((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
    )
    array = np.arange(10 * 20 * 30, dtype=np.float32).reshape(10, 20, 30)
    cropped = crop_volume(Volume(array, geom), crop_px=8, n_slices=4)
    assert cropped.array.shape == (4, 8, 8)
    z0, y0, x0 = 3, 6, 11
    np.testing.assert_array_equal(cropped.array, array[z0 : z0 + 4, y0 : y0 + 8, x0 : x0 + 8])
    # voxel [0,0,0] of the crop sits where voxel [z0,y0,x0] of the original was
    assert cropped.geometry.origin_lps == pytest.approx((1.0 + x0 * 0.25, 2.0 + y0 * 0.5, 3.0 + z0 * 2.0))
    assert cropped.geometry.slice_positions_mm == pytest.approx((0.0, 2.0, 4.0, 6.0))
    assert cropped.geometry.slice_thickness_mm == 3.0
    with pytest.raises(BenchmarkError):
        crop_volume(Volume(array, geom), crop_px=25)


def test_run_measured_peak_rss_wall_time_and_timeout():
    code = "import numpy as np, time; a = np.ones(40_000_000); time.sleep(0.8); print('done')"
    rec = run_measured([sys.executable, "-c", code], interval_s=0.05)
    assert rec["returncode"] == 0 and not rec["timed_out"] and "done" in rec["output_tail"]
    assert rec["peak_rss_bytes"] > 300e6  # 320 MB of float64 ones
    assert rec["wall_s"] >= 0.8
    t0 = time.perf_counter()
    rec = run_measured([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=1.0)
    assert rec["timed_out"] and rec["returncode"] is None
    assert time.perf_counter() - t0 < 10


# ---------------------------------------------------------------------------------------------------
# The smoke run (what CI runs): real data, real CLI in a subprocess
# ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.realdata
def test_smoke_run_writes_report_with_sane_numbers(vhm_head_path, tmp_path):
    out = tmp_path / "BENCH.md"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(out), "--quiet",
         "--ground-truth", str(vhm_head_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "## Targets (issue 6)" in text and "| target | measured | status |" in text
    assert "--smoke" in text  # the exact command is recorded
    results = json.loads((tmp_path / "results.json").read_text())
    rows = [r for r in results["rows"] if r["kind"] == "quality"]
    methods = {r["method"] for r in rows}
    assert {"linear", "bspline", "lanczos", "sr4zct"} <= methods
    for r in rows:
        assert r["status"] == "ok", r
        assert r["crop"] == 96 and r["input_shape"][1:] == [96, 96]
        assert math.isfinite(r["psnr_box"]) and 15.0 < r["psnr_box"] < 80.0
        assert 0.0 < r["ssim_coronal"] <= 1.0 and 0.0 < r["ssim_sagittal"] <= 1.0
    sr = next(r for r in rows if r["method"] == "sr4zct")
    assert sr["wall_s"] > 0 and sr["peak_rss_bytes"] > 50e6
    assert sr["timings_s"].get("train") is not None and sr["timings_s"].get("infer") is not None
    # residual design: even an under-trained model stays close to linear interpolation
    assert sr["gain_db"] > -1.0
    assert elapsed < 90


def test_eclare_progress_reads_where_a_killed_run_was():
    from benchmarks.peers import eclare_progress

    training = " 50%|#| 128/256 [00:10<00:10, 12it/s]\r"
    assert eclare_progress(training, 256) == "training: 128/256 patches after 10 s"
    inference = (
        training + "100%|#| 256/256 [00:20<00:00]\n  0%| | 0/192 [00:00<?]\r 10%| | 19/192 [01:02<10:00]\r"
    )
    text = eclare_progress(inference, 256)
    assert text.startswith("inference: slice 19/192 of rotation 1 of 2 after 62 s")
    second = inference + "100%| | 192/192 [10:00<00:00]\n  0%| | 0/192 [00:00<?]\r  5%| | 10/192 [00:30<9:00]"
    assert "rotation 2 of 2" in eclare_progress(second, 256)
    assert eclare_progress("no progress bar", 256) is None


def test_normalise_scores_evaluation_keys():
    raw = {"psnr_db": 41.4, "coronal_psnr_db": 40.1, "sagittal_psnr_db": 39.9, "coronal_ssim": 0.95,
           "sagittal_ssim": 0.94, "data_range_hu": 4641.0, "box": {"z": [5, 240], "y": [135, 482], "x": [71, 459]}}  # fmt: skip
    assert normalise_scores(raw) == {
        "psnr_box": 41.4,
        "psnr_coronal": 40.1,
        "psnr_sagittal": 39.9,
        "ssim_coronal": 0.95,
        "ssim_sagittal": 0.94,
    }


def test_device_kind_from_pipeline_description():
    from benchmarks.run import _device_kind

    assert _device_kind("CUDA not available, using CPU (2 threads)", "auto") == "cpu"
    assert _device_kind("CUDA GPU 0: NVIDIA H100 80GB HBM3", "auto") == "cuda"
    assert _device_kind(None, "cuda") == "cuda"
    assert _device_kind(None, "auto") == "cpu"


def test_markdown_tables_survive_pipes_in_messages():
    import re

    peer = {"kind": "peer", "key": "p", "method": "sr4zct-msd", "label": "MS-D", "crop": 192, "wall_s": 400.0,
            "timed_out": True, "status": "no result; last progress: infer 64/128:  86%|####  | , ETA 0:16"}  # fmt: skip
    text = report.render_markdown(report.merge_results(report.empty_results(), _run(), [peer]))
    table = [ln for ln in text.splitlines() if ln.startswith("| ") and "MS-D" in ln and "no result" in ln]
    assert len(table) == 1
    header = next(
        ln for ln in text.splitlines() if ln.startswith("| method | body-box PSNR") and "note" in ln
    )
    unescaped = re.compile(r"(?<!\\)\|")
    assert len(unescaped.findall(table[0])) == len(unescaped.findall(header))


def test_merging_rows_of_one_run_as_they_finish_keeps_one_run_record():
    run = _run("x")
    results = report.merge_results(report.empty_results(), run, [{"key": "a", "v": 1}])
    results = report.merge_results(results, run, [{"key": "b", "v": 2}])
    assert [r["id"] for r in results["runs"]] == ["x"]
    assert sorted(r["key"] for r in results["rows"]) == ["a", "b"]


def _peer_targets(*peers: dict) -> dict[str, dict]:
    base = {"kind": "peer", "crop": 192, "status": "ok"}
    default = {**base, "key": "d", "method": "sr4zct-default", "psnr_box": 41.5, "wall_s": 180.0}
    rows = [default] + [{**base, **p} for p in peers]
    targets = report.compute_targets(report.merge_results(report.empty_results(), _run(), rows))
    return {
        peer: next(t for t in targets if "equal wall time" in t["target"] and label in t["target"])
        for peer, label in (("msd", "MS-D"), ("eclare", "ECLARE"))
    }


def test_peer_targets_need_a_peer_result_and_count_a_slower_loser():
    t = _peer_targets(
        {"key": "m", "method": "sr4zct-msd", "status": "no result within 6.0 min", "timed_out": True},
        {"key": "e", "method": "eclare", "psnr_box": 39.0, "wall_s": 2400.0},
    )
    assert t["msd"]["status"].startswith("not measured")  # no result is not a win on quality
    assert t["eclare"]["status"] == "met (the peer had more time and still lost)"
    assert "+2.50" in t["eclare"]["measured"]
    t = _peer_targets(
        {"key": "m", "method": "sr4zct-msd", "psnr_box": 41.0, "wall_s": 185.0},
        {"key": "e", "method": "eclare", "psnr_box": 40.9, "wall_s": 2400.0},
    )
    assert t["msd"]["status"] == report.NOT_MET  # equal time, within 1 dB
    assert t["eclare"]["status"] == f"{report.NOT_MET} (the peer had more time)"


# ---------------------------------------------------------------------------------------------------
# Thread rule and inference profile (issue 16)
# ---------------------------------------------------------------------------------------------------
def test_thread_variants_parse_and_name():
    from benchmarks.threads import parse_variant, variant_name

    assert parse_variant("2") == (2, None)
    assert parse_variant("2:passive") == (2, "PASSIVE")
    assert parse_variant(" 1:Active ") == (1, "ACTIVE")
    assert variant_name(2, "PASSIVE") == "2:passive" and variant_name(1, None) == "1"
    for bad in ("0", "x", "2:sleepy", ""):
        with pytest.raises(ValueError, match="thread variant"):
            parse_variant(bad)


def test_thread_summary_and_best_rule():
    from benchmarks.threads import best_rule, summarise

    stats = summarise([4.0, 6.0, 5.0])
    assert stats["median"] == 5.0 and stats["min"] == 4.0 and stats["max"] == 6.0
    assert stats["spread"] == pytest.approx(0.4)
    assert summarise([])["median"] is None
    rows = [
        {"kind": "threads", "competitors": 0, "variant": "1", "threads": 1, "steps_per_s_median": 6.0},
        {"kind": "threads", "competitors": 0, "variant": "2", "threads": 2, "steps_per_s_median": 9.0},
        {"kind": "threads", "competitors": 1, "variant": "1", "threads": 1, "steps_per_s_median": 3.0},
        {"kind": "threads", "competitors": 1, "variant": "2", "threads": 2, "steps_per_s_median": 0.8},
        {
            "kind": "threads",
            "competitors": 1,
            "variant": "2:passive",
            "threads": 2,
            "steps_per_s_median": None,
        },
    ]
    assert best_rule(rows) == {0: "2", 1: "1"}


def test_thread_and_inference_sections_render():
    rows = [
        {"kind": "threads", "key": "t1", "status": "ok", "competitors": 1, "threads": 2, "variant": "2:passive",
         "wait_policy": "PASSIVE", "steps_per_s_all": [3.0, 3.5], "steps_per_s_median": 3.25,
         "steps_per_s_min": 3.0, "steps_per_s_max": 3.5, "steps_per_s_spread": 0.154, "load_avg_1min": [2.0, 3.1]},
        {"kind": "threads", "key": "t2", "status": "ok", "competitors": 1, "threads": 2, "variant": "2",
         "steps_per_s_all": [0.8], "steps_per_s_median": 0.8, "steps_per_s_min": 0.8, "steps_per_s_max": 0.8,
         "steps_per_s_spread": 0.0, "load_avg_1min": []},
        {"kind": "inference_profile", "key": "i", "status": "ok", "preset": "fast", "device": "CPU (2 threads)",
         "repeats": 2, "parts_s": {"total": {"median": 58.2, "min": 57.0, "max": 61.0},
                                   "network": {"median": 50.0, "min": 49.0, "max": 52.0}}},
    ]  # fmt: skip
    text = report.render_markdown(report.merge_results(report.empty_results(), _run(), rows))
    assert "### CPU threads (training steps/s of `fast`)" in text
    assert "| 1 | `2:passive` | 3.25 (best) | 3.00 - 3.50 | 15 % | 2 | 2.0 - 3.1 | [1] |" in text
    assert "| 1 | `2` | 0.80 | 0.80 - 0.80 |" in text
    assert (
        "reaches: 1 competing: 100% of the best variant, 4.06x the spinning wait on as many threads." in text
    )
    assert "### Inference on the full L291 series: where the time goes" in text
    assert (
        "| `fast` | CPU (2 threads) | 58.2 (57.0 - 61.0) | - (- - -) | - (- - -) | 50.0 (49.0 - 52.0) |"
        in text
    )


def test_merging_another_results_file_keeps_its_runs_and_newer_rows(tmp_path):
    from benchmarks.run import main

    mine = report.merge_results(report.empty_results(), _run("a"), [{"key": "k1", "kind": "x", "v": 1}])
    mine = report.merge_results(mine, _run("b"), [{"key": "k2", "kind": "x", "v": 2}])
    gpu_run = {
        **_run("g", command="python -m benchmarks.run --l291 best --device cuda"),
        "date": "2027-01-01",
    }
    other = report.merge_results(report.empty_results(), gpu_run, [{"key": "k2", "kind": "x", "v": 20}])
    report.save_results(mine, tmp_path / "results.json")
    report.save_results(other, tmp_path / "gpu.json")
    assert main(["--merge", str(tmp_path / "gpu.json"), "--results", str(tmp_path / "results.json"),
                 "--output", str(tmp_path / "B.md"), "--quiet"]) == 0  # fmt: skip
    merged = report.load_results(tmp_path / "results.json")
    assert {r["key"]: r["v"] for r in merged["rows"]} == {"k1": 1, "k2": 20}
    assert [r["id"] for r in merged["runs"]] == ["a", "g"]  # run b has no row left
    assert "--device cuda" in (tmp_path / "B.md").read_text()
    missing = ["--merge", str(tmp_path / "missing.json"), "--results", str(tmp_path / "results.json")]
    assert main([*missing, "--output", str(tmp_path / "B.md"), "--quiet"]) == 2  # named, not skipped


def test_cases_are_regions_of_the_ground_truth_with_their_positions():
    from benchmarks.quality import CASES, region_volume

    geometry = make_geometry((245, 512, 512), slice_spacing_mm=1.0, pixel_spacing_mm=(1.0, 1.0))
    vol = Volume(
        np.arange(245, dtype=np.float32)[:, None, None] * np.ones((1, 512, 512), np.float32), geometry
    )
    for name, case in CASES.items():
        if case["region"] is None:
            continue
        z0, z1, y0, y1, x0, x1 = case["region"]
        sub = region_volume(vol, case["region"])
        assert sub.array.shape == (z1 - z0, y1 - y0, x1 - x0), name
        assert sub.array[0, 0, 0] == z0  # the first kept slice
        np.testing.assert_allclose(sub.geometry.origin_lps, np.asarray(geometry.origin_lps) + [x0, y0, z0])
    with pytest.raises(BenchmarkError, match="outside"):
        region_volume(vol, (0, 300, 0, 10, 0, 10))


def test_spread_reports_min_and_median_over_cases_and_the_l291_proxy():
    rows = [
        _quality("sr4zct", 47.0, preset="fast", linear=41.0, case="full", parameters={"validation_gain_db": "3.1"}),
        _quality("sr4zct", 44.0, preset="fast", linear=41.5, case="neck", key="n", warnings=[
            "Training stopped by the time limit after 10 of 3000 steps."]),
        _quality("sr4zct", 45.0, preset="fast", linear=40.0, case="skull", key="s"),
        _quality("sr4zct", 46.0, preset="fast", linear=40.0, case="skull", key="crop", crop=192),  # not a case
        {"kind": "l291", "key": "l", "status": "ok", "preset": "fast", "device_kind": "cpu",
         "peak_rss_bytes": 3e9, "wall_s": 300.0, "parameters": {"validation_gain_db": "1.29"}},
    ]  # fmt: skip
    results = report.merge_results(report.empty_results(), _run(), rows)
    table = report.spread_table(results)["fast"]
    assert sorted(table["cases"]) == ["full", "neck", "skull"]
    assert table["min"] == pytest.approx(2.5) and table["median"] == pytest.approx(5.0) and table["n"] == 3
    text = report.render_markdown(results)
    assert "## Quality spread over ground-truth cases" in text
    assert "+2.50 dB (time-bound) [1]" in text and "+6.00 dB (+3.10) [1]" in text
    assert "| **minimum** (vhm-head cases) | **+2.50 dB** of 3 |" in text and "(+1.29) [1]" in text
    # case rows are not the headline case
    assert report._headline_row(results, "fast")["case"] == "full"


def test_eta_accuracy_from_the_progress_the_user_saw():
    from benchmarks.quality import eta_accuracy

    # a 100 s run whose ETA is exact until 50 s, then 20 % too high
    trace = [[t, "train", t / 100, (100 - t) * (1.0 if t <= 50 else 1.2)] for t in range(0, 101, 5)]
    trace.append([1.0, "prepare", 0.01, None])  # no ETA yet: not counted
    acc = eta_accuracy(trace, 100.0)
    assert acc["eta_error_max"] == pytest.approx(0.2)
    assert acc["eta_error_at"] == {"10": 0.0, "25": 0.0, "50": 0.0}
    assert acc["eta_samples"] == 17  # 10 s .. 90 s
    assert eta_accuracy([], 100.0) == {} and eta_accuracy(trace, None) == {}


def test_eta_target_and_section():
    rows = [
        _quality("sr4zct", 47.0, preset="fast", linear=41.0, eta_error_max=0.12, eta_error_median=0.05,
                 eta_error_at={"10": 0.1, "25": 0.05, "50": 0.02}, eta_samples=40),
        {"kind": "l291", "key": "l", "status": "ok", "preset": "fast", "device_kind": "cpu", "wall_s": 290.0,
         "peak_rss_bytes": 3e9, "eta_error_max": 0.31, "eta_samples": 50},
        {"kind": "l291", "key": "lb", "status": "ok", "preset": "best", "device_kind": "cpu", "wall_s": 2690.0,
         "peak_rss_bytes": 3e9, "eta_error_max": 0.08, "eta_samples": 50},
    ]  # fmt: skip
    results = report.merge_results(report.empty_results(), _run(), rows)
    fast = _status(report.compute_targets(results), "`fast`: ETA within 20%")
    assert fast["status"] == report.NOT_MET and "31% (L291, cpu)" in fast["measured"]
    best = _status(report.compute_targets(results), "`best`: ETA within 20%")
    assert best["status"].startswith(report.MET) and "not run: 5/2.5" in best["status"]
    assert _status(report.compute_targets(results), "`balanced`: ETA")["status"] == "not measured (not run)"
    text = report.render_markdown(results)
    assert (
        "### ETA accuracy" in text
        and "| `fast` | vhm-head 5/2.5 box, cpu | 100 s | 12% | 5% | 10% / 5% / 2% |" in text
    )


def test_levers_train_each_variant_for_exactly_the_steps_and_report_the_minimum():
    from sr4zct.demo.phantom import make_phantom

    from benchmarks.levers import lever_rows

    truth = make_phantom((40, 48, 48), voxel_mm=1.0, noise_hu=0.0)
    rows = lever_rows(
        truth, cases=["full"], variants=["baseline", "intensity"], steps=6, seeds=[0, 1], log=lambda m: None
    )
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("baseline", 0),
        ("baseline", 1),
        ("intensity", 0),
        ("intensity", 1),
    ]
    for r in rows:
        assert r["steps"] == 6 and math.isfinite(r["gain_db"])
        assert r["gain_db"] == pytest.approx(r["psnr_box"] - r["linear_psnr_box"])
    assert rows[2]["changes"] == {"intensity_scale": 0.2}
    text = report.render_markdown(report.merge_results(report.empty_results(), _run(), rows))
    assert "### Levers for the minimum (fixed steps)" in text
    mean = (rows[0]["gain_db"] + rows[1]["gain_db"]) / 2
    assert f"| `baseline` | 6 | {{}} | {mean:+.2f} (" in text
