"""SR4ZCT: self-supervised through-plane resolution enhancement for CT.

Importing this package is cheap and does not import torch; the heavy parts load on first use.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
    Cancelled,
    GeometryError,
    InputError,
    ModelError,
    OutputError,
    ParameterError,
    ResourceError,
    SR4ZCTError,
)
from .volume import SeriesGeometry, Volume, make_geometry

_LAZY = {
    "read_volume": "sr4zct.io",
    "read_geometry": "sr4zct.io",
    "write_volume": "sr4zct.io",
    "enhance": "sr4zct.pipeline",
    "enhance_file": "sr4zct.pipeline",
    "EnhanceResult": "sr4zct.pipeline",
    "make_phantom": "sr4zct.phantom",
    "BackgroundJob": "sr4zct.jobs",
    "JobSpec": "sr4zct.jobs",
    "run_blocking": "sr4zct.jobs",
    "enhance_in_background": "sr4zct.jobs",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sr4zct' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Cancelled",
    "GeometryError",
    "InputError",
    "ModelError",
    "OutputError",
    "ParameterError",
    "ResourceError",
    "SR4ZCTError",
    "SeriesGeometry",
    "Volume",
    "make_geometry",
    *_LAZY,
]
