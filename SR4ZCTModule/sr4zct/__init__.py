"""SR4ZCT: self-supervised through-plane resolution enhancement for CT.

Importing this package is cheap and does not import torch; the heavy parts load on first use.
"""

from __future__ import annotations

from sr4zct._version import __version__
from sr4zct.errors import (
    Cancelled,
    GeometryError,
    InputError,
    ModelError,
    OutputError,
    ParameterError,
    ResourceError,
    SR4ZCTError,
)
from sr4zct.volume import SeriesGeometry, Volume, make_geometry

_LAZY = {
    "read_volume": "sr4zct.io",
    "read_geometry": "sr4zct.io",
    "write_volume": "sr4zct.io",
    "enhance": "sr4zct.run.pipeline",
    "enhance_file": "sr4zct.run.pipeline",
    "EnhanceResult": "sr4zct.run.pipeline",
    "make_phantom": "sr4zct.demo.phantom",
    "EnhanceOptions": "sr4zct.run.options",
    "BackgroundJob": "sr4zct.run.background",
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
