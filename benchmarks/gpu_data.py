"""Carry the benchmark data to a lent GPU machine, which sees only the checkout (at most 64 MiB travel).

``python -m benchmarks.gpu_data pack [--out .gpudata]`` (here) writes ``.gpudata/data.npz`` (LZMA, about
28 MiB):

* vhm-head, the ground truth, exact (int16 HU, its geometry);
* the L291 series at a quarter of its in-plane resolution (4 x 4 block means, int16 HU, its geometry).
  Its time on a GPU depends on the shape, the slice positions, the body box and the steps, not on fine
  detail, and the exact series is 88 MiB compressed. Every result row made from it says so.

``python -m benchmarks.gpu_data unpack .gpudata DATA_DIR`` (there) writes DICOM series with the project's
writer (pydicom only; SimpleITK is 50 MB and not needed): ``DATA_DIR/L291_3mm_overlap1mm`` (bilinear back
to 512 x 512, SliceThickness 3 mm, the original positions) and ``DATA_DIR/vhm-head/vhm_head_1mm``.
``SR4ZCT_DATA=DATA_DIR`` and ``--ground-truth DATA_DIR/vhm-head/vhm_head_1mm`` point the benchmark at them.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from .quality import DATA_DIR

L291_NAME = "L291_3mm_overlap1mm"
VHM_FILE = Path("vhm-head") / "vhm_head_1mm.nii.gz"
VHM_DICOM = Path("vhm-head") / "vhm_head_1mm"  # a DICOM folder; the benchmark names cases by it
L291_FACTOR = 4
L291_NOTE = (
    "L291 geometry (343 slices, 3 mm every 2 mm, 512 x 512 at 0.742 mm) with its content at a quarter of "
    "the in-plane resolution (carried to the GPU machine, benchmarks/gpu_data.py)"
)


def _geometry_record(geometry) -> dict:
    return {
        "pixel_spacing_mm": list(geometry.pixel_spacing_mm),
        "slice_thickness_mm": geometry.slice_thickness_mm,
        "slice_spacing_mm": geometry.slice_spacing_mm,
        "slice_positions_mm": list(geometry.slice_positions_mm),
        "origin_lps": list(geometry.origin_lps),
        "axes_lps": [list(a) for a in geometry.axes_lps],
    }


def _volume(hu: np.ndarray, record: dict, description: str):
    from sr4zct.volume import Volume, make_geometry

    geometry = make_geometry(
        hu.shape,
        slice_spacing_mm=float(record["slice_spacing_mm"]),
        pixel_spacing_mm=tuple(record["pixel_spacing_mm"]),
        slice_thickness_mm=record["slice_thickness_mm"],
        origin_lps=tuple(record["origin_lps"]),
        axes_lps=record["axes_lps"],
        slice_positions_mm=record["slice_positions_mm"],
        description=description,
    )
    return Volume(np.asarray(hu, dtype=np.float32), geometry)


def shrink(array: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor x factor`` in-plane blocks (rows and columns must be multiples of ``factor``)."""
    n, rows, cols = array.shape
    blocks = array.reshape(n, rows // factor, factor, cols // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float64)


def enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear back to ``factor`` times the in-plane size (pixel centres aligned), slice by slice."""
    import torch

    x = torch.from_numpy(np.asarray(array, dtype=np.float32))[:, None]
    out = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return out[:, 0].numpy()


def pack(l291: Path, vhm: Path, out: Path, *, log=print) -> Path:
    """Write ``out/data.npz``; returns its path."""
    from sr4zct.io import read_volume

    series = read_volume(l291)
    truth = read_volume(vhm, slice_axis=0)
    small = np.rint(shrink(np.asarray(series.array, dtype=np.float32), L291_FACTOR)).astype(np.int16)
    meta = {
        "l291": {
            **_geometry_record(series.geometry),
            "factor": L291_FACTOR,
            "shape": list(series.array.shape),
        },
        "vhm": _geometry_record(truth.geometry),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "data.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, array in (("l291", small), ("vhm", np.rint(np.asarray(truth.array)).astype(np.int16))):
            with zf.open(f"{name}.npy", "w") as fh:
                np.save(fh, array)
        zf.writestr("meta.json", json.dumps(meta))
    log(f"gpu_data: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path


def unpack(packed: Path, data_dir: Path, *, log=print) -> tuple[Path, Path]:
    """Write the two DICOM series under ``data_dir``; returns (L291 folder, vhm-head folder)."""
    from sr4zct.io import write_volume

    with zipfile.ZipFile(packed / "data.npz") as zf:
        meta = json.loads(zf.read("meta.json"))
        arrays = {name: np.load(io.BytesIO(zf.read(f"{name}.npy"))) for name in ("l291", "vhm")}
    l291_meta = meta["l291"]
    l291 = np.rint(enlarge(arrays["l291"], int(l291_meta["factor"])))
    if list(l291.shape) != list(l291_meta["shape"]):
        raise ValueError(f"unpacked L291 has shape {l291.shape}, expected {l291_meta['shape']}")
    series = data_dir / L291_NAME
    write_volume(_volume(l291, l291_meta, "L291 (GPU check copy)"), series, overwrite=True)
    (data_dir / f"{L291_NAME}.json").write_text(json.dumps({"note": L291_NOTE}))
    truth = data_dir / VHM_DICOM
    truth.parent.mkdir(parents=True, exist_ok=True)
    write_volume(_volume(arrays["vhm"], meta["vhm"], "vhm-head 1 mm"), truth, overwrite=True)
    log(f"gpu_data: wrote {series} and {truth}")
    return series, truth


def series_note(series: Path) -> str | None:
    """The note :func:`unpack` left beside a series it wrote (``None`` for the original data)."""
    path = series.parent / f"{series.name}.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("note") or "") or None
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--l291", type=Path, default=DATA_DIR / L291_NAME)
    a.add_argument("--vhm", type=Path, default=DATA_DIR / VHM_FILE)
    a.add_argument("--out", type=Path, default=Path(".gpudata"))
    b = sub.add_parser("unpack")
    b.add_argument("packed", type=Path)
    b.add_argument("data_dir", type=Path)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.l291, args.vhm, args.out)
    else:
        unpack(args.packed, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
