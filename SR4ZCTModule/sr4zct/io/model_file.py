"""The SR4ZCT model file: a trained network and the acquisition it was trained for.

A model file is ``torch.save`` of a plain dict (read back with ``weights_only=True``, so no code runs):
``format`` (``"sr4zct-model"``), ``format_version``, ``sr4zct_version``, ``torch_version``, ``network`` and
``network_config`` (what :func:`sr4zct.method.networks.build_network` needs), ``state_dict``, and what the
network was trained for: ``normalisation``, ``thickness_mm``, ``spacing_mm``, ``pixel_spacing_mm``,
``profile``, plus ``seed``, ``preset`` and ``training`` figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sr4zct._version import __version__
from sr4zct.errors import ModelError, OutputError, SR4ZCTError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_TOLERANCE",
    "MODEL_VERSION",
    "check_model_geometry",
    "load_model",
    "save_model",
]

MODEL_FORMAT = "sr4zct-model"
MODEL_VERSION = 1
#: a saved model is reused when its geometry differs by less than this (relative) from the data's
MODEL_TOLERANCE = 0.02


def save_model(path: str | os.PathLike, model, *, network: str, info: dict[str, Any]) -> Path:
    """Write a model file (torch.save of a plain dict) atomically; returns the path."""
    import torch

    from sr4zct.method.networks import network_config

    path = Path(path)
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_VERSION,
        "sr4zct_version": __version__,
        "torch_version": str(torch.__version__),
        "network": network,
        "network_config": network_config(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **info,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write the model file {path}: {exc.strerror or exc}.") from exc
    return path


def load_model(path: str | os.PathLike, device=None) -> tuple[Any, dict[str, Any]]:
    """Read a model file; returns ``(model, info)``. Unreadable or foreign files raise ModelError."""
    import torch

    from sr4zct.method.networks import build_network

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"The model file {path} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip failure means a corrupt or foreign file
        raise ModelError(
            f"The model file {path} is corrupt or not an SR4ZCT model ({type(exc).__name__})."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"The file {path} is not an SR4ZCT model file.")
    if int(payload.get("format_version", 0)) > MODEL_VERSION:
        raise ModelError(
            f"The model file {path} was written by a newer SR4ZCT ({payload.get('sr4zct_version')}); update SR4ZCT."
        )
    try:
        model = build_network(payload["network"], dict(payload["network_config"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError, SR4ZCTError) as exc:
        raise ModelError(f"The model file {path} is damaged: {exc}") from exc
    if device is not None:
        model = model.to(device)
    model.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, info


def check_model_geometry(
    info: dict[str, Any], *, thickness: float, spacing: float, pixel, profile: str, path
) -> None:
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= MODEL_TOLERANCE * max(abs(a), abs(b)) + 1e-6

    problems = []
    if not close(float(info.get("thickness_mm", -1)), thickness):
        problems.append(f"thickness {info.get('thickness_mm')} mm vs {thickness:g} mm")
    if not close(float(info.get("spacing_mm", -1)), spacing):
        problems.append(f"spacing {info.get('spacing_mm')} mm vs {spacing:g} mm")
    saved_pixel = info.get("pixel_spacing_mm", (-1, -1))
    if not all(close(float(a), float(b)) for a, b in zip(saved_pixel, pixel, strict=False)):
        problems.append(f"pixel spacing {tuple(saved_pixel)} mm vs {tuple(pixel)} mm")
    if info.get("profile") != profile:
        problems.append(f"profile {info.get('profile')} vs {profile}")
    if problems:
        raise ModelError(
            f"The model {path} was trained for a different acquisition ({'; '.join(problems)}); "
            "train a new one (leave model_path out)."
        )
