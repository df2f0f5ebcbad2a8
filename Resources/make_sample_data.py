"""Make the module's sample data: ``SR4ZCTModule/Resources/Data/SR4ZCTPhantom.mha``.

Usage (from the repository root, with torch installed)::

    python Resources/make_sample_data.py

The synthetic CT-like phantom of ``sr4zct demo`` (``sr4zct.demo.phantom.make_demo_case``: 120 x 160 x 160
voxels of 0.75 mm, seed 0) acquired with 3 mm slices every 2 mm, in int16 HU, as a compressed MetaImage
whose header records the thickness (``sr4zct_slice_thickness_mm``). It is made once and shipped, so that
*Sample Data > SR4ZCT* and ``SampleData.downloadSample("SR4ZCTPhantom")`` load it in a 3D Slicer without
PyTorch (the acquisition model needs torch) and without a download: Sample Data copies it from the module's
folder (a ``file://`` address). ``Testing/python/test_slicer_packaging.py`` checks the file is what this
script makes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PATH = ROOT / "SR4ZCTModule" / "Resources" / "Data" / "SR4ZCTPhantom.mha"
THICKNESS_MM, SPACING_MM = 3.0, 2.0


def sample_volume():
    """The thick-slice phantom as a core :class:`~sr4zct.volume.Volume` with int16-valued HU."""
    from sr4zct.demo.phantom import make_demo_case
    from sr4zct.volume import Volume

    _truth, thick = make_demo_case(thickness_mm=THICKNESS_MM, spacing_mm=SPACING_MM, shape=(120, 160, 160),
                                   voxel_mm=0.75)  # fmt: skip
    return Volume(np.round(thick.array).astype(np.int16), thick.geometry)


def write_sample(path: Path = SAMPLE_PATH) -> Path:
    import SimpleITK as sitk

    volume = sample_volume()
    g = volume.geometry
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing([float(v) for v in reversed(g.spacing_mm)])  # (x, y, z)
    image.SetOrigin([float(v) for v in g.origin_lps])
    image.SetDirection([float(v) for v in np.asarray(g.axes_lps)[::-1].T.reshape(-1)])
    image.SetMetaData("sr4zct_slice_thickness_mm", f"{THICKNESS_MM:g}")
    image.SetMetaData("source", "sr4zct.demo.phantom (Resources/make_sample_data.py)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


if __name__ == "__main__":
    print(f"wrote {write_sample()}")
