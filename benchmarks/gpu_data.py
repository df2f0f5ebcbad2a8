"""Carry the benchmark data to a lent GPU machine, which sees only the checkout (at most 64 MiB travel).

``python -m benchmarks.gpu_data pack [--out .gpudata] [--max-mib 32]`` (here) writes ``l291.npz``: the
L291 series as int16 HU with its geometry, compressed; when the lossless file is larger than ``--max-mib``
the HU are rounded to the smallest power-of-two step that fits (recorded in the file and in every result
row made from it: the shape, geometry and body box, which decide the run time, are unchanged). The
vhm-head NIfTI (31 MB) is copied beside it. Add the folder to ``.git/info/exclude`` and name it in
``carry``.

``python -m benchmarks.gpu_data unpack .gpudata DATA_DIR`` (there) writes ``DATA_DIR/L291_3mm_overlap1mm``
as a DICOM series with the project's writer (SliceThickness 3 mm, the original slice positions) and
copies ``DATA_DIR/vhm-head/vhm_head_1mm.nii.gz``; ``SR4ZCT_DATA=DATA_DIR`` then points the benchmark at it.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from .quality import DATA_DIR

L291_NAME = "L291_3mm_overlap1mm"
VHM_REL = Path("vhm-head") / "vhm_head_1mm.nii.gz"


def _npz_bytes(hu: np.ndarray, meta: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_LZMA) as zf:
        with zf.open("hu.npy", "w") as fh:
            np.save(fh, hu)
        zf.writestr("meta.json", json.dumps(meta))
    return buf.getvalue()


def pack(source: Path, out: Path, *, max_mib: float = 32.0, vhm: Path | None = None, log=print) -> dict:
    """Write ``out/l291.npz`` (and copy the vhm-head file); returns the metadata written."""
    from sr4zct.io import read_volume

    volume = read_volume(source)
    g = volume.geometry
    hu = np.rint(np.asarray(volume.array, dtype=np.float32)).astype(np.int16)
    meta = {
        "pixel_spacing_mm": list(g.pixel_spacing_mm),
        "slice_thickness_mm": g.slice_thickness_mm,
        "slice_spacing_mm": g.slice_spacing_mm,
        "slice_positions_mm": list(g.slice_positions_mm),
        "origin_lps": list(g.origin_lps),
        "axes_lps": [list(a) for a in g.axes_lps],
        "hu_step": 1,
        "source": str(source),
    }
    step = 1
    while True:
        meta["hu_step"] = step
        q = hu if step == 1 else (np.round(hu / step) * step).astype(np.int16)
        data = _npz_bytes(q, meta)
        log(f"gpu_data: HU step {step}: {len(data) / 2**20:.1f} MiB")
        if len(data) <= max_mib * 2**20 or step >= 64:
            break
        step *= 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "l291.npz").write_bytes(data)
    if vhm is not None and vhm.is_file():
        shutil.copyfile(vhm, out / VHM_REL.name)
    return meta


def unpack(packed: Path, data_dir: Path, *, log=print) -> Path:
    """Write the L291 DICOM series and the vhm-head file under ``data_dir``; returns the series folder."""
    from sr4zct.io import write_volume
    from sr4zct.volume import Volume, make_geometry

    with zipfile.ZipFile(packed / "l291.npz") as zf:
        meta = json.loads(zf.read("meta.json"))
        with zf.open("hu.npy") as fh:
            hu = np.load(io.BytesIO(fh.read()))
    geometry = make_geometry(
        hu.shape,
        slice_spacing_mm=float(meta["slice_spacing_mm"]),
        pixel_spacing_mm=tuple(meta["pixel_spacing_mm"]),
        slice_thickness_mm=float(meta["slice_thickness_mm"]),
        origin_lps=tuple(meta["origin_lps"]),
        axes_lps=meta["axes_lps"],
        slice_positions_mm=meta["slice_positions_mm"],
        description=f"L291 (HU step {meta['hu_step']})",
    )
    series = data_dir / L291_NAME
    write_volume(Volume(hu.astype(np.float32), geometry), series, overwrite=True)
    (series.parent / f"{L291_NAME}.json").write_text(json.dumps({"hu_step": meta["hu_step"]}))
    vhm = packed / VHM_REL.name
    if vhm.is_file():
        (data_dir / VHM_REL.parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vhm, data_dir / VHM_REL)
    log(f"gpu_data: wrote {series} ({hu.shape[0]} slices, HU step {meta['hu_step']})")
    return series


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--source", type=Path, default=DATA_DIR / L291_NAME)
    a.add_argument("--vhm", type=Path, default=DATA_DIR / VHM_REL)
    a.add_argument("--out", type=Path, default=Path(".gpudata"))
    a.add_argument("--max-mib", type=float, default=32.0)
    b = sub.add_parser("unpack")
    b.add_argument("packed", type=Path)
    b.add_argument("data_dir", type=Path)
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args.source, args.out, max_mib=args.max_mib, vhm=args.vhm)
    else:
        unpack(args.packed, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
