"""The SR4ZCT model file: a trained network and the acquisition it was trained for.

A model file is ``torch.save`` of a plain dict (read back with ``weights_only=True``, so no code runs):
``format`` (``"sr4zct-model"``), ``format_version``, ``sr4zct_version``, ``torch_version``, ``network`` and
``network_config`` (what :func:`sr4zct.method.networks.build_network` needs), ``state_dict``, and what the
network was trained for: ``normalisation``, ``thickness_mm``, ``spacing_mm``, ``pixel_spacing_mm``,
``profile``, plus ``seed``, ``preset`` and ``training`` figures.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

from sr4zct._version import __version__
from sr4zct.errors import ModelError, OutputError, SR4ZCTError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_TOLERANCE",
    "MODEL_VERSION",
    "NETWORK_LIMITS",
    "check_model_geometry",
    "check_model_payload",
    "load_model",
    "network_parameters",
    "read_model_file",
    "save_model",
]

MODEL_FORMAT = "sr4zct-model"
MODEL_VERSION = 1
#: a saved model is reused when its geometry differs by less than this (relative) from the data's
MODEL_TOLERANCE = 0.02


#: Bounds of a saved network's constructor arguments: (low, high) for integers, a set for choices.
NETWORK_LIMITS: dict[str, dict[str, Any]] = {
    "default": {"layers": (2, 64), "channels": (1, 512), "unshuffle": {1, 2, 4}},
    "msd": {"depth": (1, 400), "width": (1, 16), "max_dilation": (1, 64)},
}
#: Largest network a model file may describe (float32 parameters); the shipped ones have < 1 million.
MAX_NETWORK_PARAMETERS = 20_000_000
#: Bounds of the intensity normalisation ``x = (HU + offset) / scale``.
MAX_NORMALISATION = 1.0e6
MIN_NORMALISATION_SCALE = 1.0e-6


def save_model(path: str | os.PathLike, model, *, network: str, info: dict[str, Any]) -> Path:
    """Write a model file (torch.save of a plain dict) atomically; returns the path.

    Raises
    ------
    OutputError
        The weights hold NaN/Inf (never written), or the file cannot be written (a full disk included).
    """
    import torch

    from sr4zct.io.atomic import disk_full_or, temporary_name
    from sr4zct.method.networks import network_config

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise OutputError(
            f"Refusing to save the model to {path}: its weights hold NaN or Inf ({bad[0]}); nothing was written."
        )
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_VERSION,
        "sr4zct_version": __version__,
        "torch_version": str(torch.__version__),
        "network": network,
        "network_config": network_config(model),
        "state_dict": state,
        **info,
    }
    tmp = temporary_name(path)  # unique: a file of that name that was there before is never replaced
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"The disk is full while writing {path}; nothing was written.") from exc
        raise OutputError(f"Cannot write the model file {path}: {exc.strerror or exc}.") from exc
    except RuntimeError as exc:  # torch's zip writer reports a short write (a full disk) this way
        tmp.unlink(missing_ok=True)
        size = sum(v.numel() * v.element_size() for v in state.values()) + 2**20
        raise disk_full_or(path, path.parent, size, " ".join(str(exc).split())[:200]) from exc
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _damaged(path: Path, field: str, problem: str) -> ModelError:
    return ModelError(f"The model file {path} is damaged: {field} {problem}; train a new model.")


def _positive_mm(payload: dict, path: Path, field: str, limit: float) -> None:
    value = payload.get(field)
    if not _is_number(value) or not math.isfinite(value) or not 0 < value <= limit:
        raise _damaged(
            path, field, f"must be a number of millimetres above 0 and at most {limit:g}, got {value!r}"
        )


def _check_acquisition(payload: dict, path: Path) -> None:
    from sr4zct.method.acquisition import PROFILES
    from sr4zct.volume.geometry import MAX_PIXEL_SPACING_MM, MAX_SPACING_MM, MAX_THICKNESS_MM

    _positive_mm(payload, path, "thickness_mm", MAX_THICKNESS_MM)
    _positive_mm(payload, path, "spacing_mm", MAX_SPACING_MM)
    pixel = payload.get("pixel_spacing_mm")
    if not (
        isinstance(pixel, (list, tuple))
        and len(pixel) == 2
        and all(_is_number(v) and math.isfinite(v) and 0 < v <= MAX_PIXEL_SPACING_MM for v in pixel)
    ):
        raise _damaged(
            path,
            "pixel_spacing_mm",
            f"must be two numbers of millimetres above 0 and at most {MAX_PIXEL_SPACING_MM:g}, got {pixel!r}",
        )
    if payload.get("profile") not in PROFILES:
        raise _damaged(
            path, "profile", f"must be one of {', '.join(PROFILES)}, got {payload.get('profile')!r}"
        )


def _check_normalisation(payload: dict, path: Path) -> None:
    if "normalisation" not in payload:
        return  # files from before it was saved: the default applies
    norm = payload["normalisation"]
    if not isinstance(norm, dict) or set(norm) != {"offset", "scale"}:
        raise _damaged(path, "normalisation", f"must be a dict of offset and scale, got {norm!r:.80}")
    for key in ("offset", "scale"):
        value = norm[key]
        if not _is_number(value) or not math.isfinite(value) or abs(value) > MAX_NORMALISATION:
            raise _damaged(path, f"normalisation.{key}", f"must be a finite number, got {value!r}")
    if abs(norm["scale"]) < MIN_NORMALISATION_SCALE:
        raise _damaged(path, "normalisation.scale", f"must not be zero, got {norm['scale']!r}")


def network_parameters(network: str, config: dict[str, int]) -> int:
    """Number of parameters of the network ``build_network(network, config)`` would build."""
    from sr4zct.method.networks import NETWORKS

    cfg = {**NETWORKS[network][1], **config}
    if network == "msd":
        d, w = cfg["depth"], cfg["width"]
        return sum((1 + i * w) * w * 9 + w for i in range(d)) + (1 + d * w) + 1
    io_ch, c, n = cfg["unshuffle"] ** 2, cfg["channels"], cfg["layers"]
    return (io_ch * c * 9 + c) + (n - 2) * (c * c * 9 + c) + (c * io_ch * 9 + io_ch)


def _check_network(payload: dict, path: Path) -> None:
    from sr4zct.method.networks import NETWORKS
    from sr4zct.system import check_memory

    network = payload.get("network")
    if not isinstance(network, str) or network not in NETWORKS or network not in NETWORK_LIMITS:
        raise _damaged(
            path, "network", f"must be one of {', '.join(sorted(NETWORK_LIMITS))}, got {network!r:.60}"
        )
    config = payload.get("network_config")
    limits = NETWORK_LIMITS[network]
    if not isinstance(config, dict) or not set(config) <= set(limits):
        raise _damaged(
            path,
            "network_config",
            f"must be a dict of {', '.join(limits)} for {network!r}, got {config!r:.80}",
        )
    for key, value in config.items():
        bound = limits[key]
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (value in bound if isinstance(bound, set) else bound[0] <= value <= bound[1])
        if not ok:
            allowed = (
                ", ".join(map(str, sorted(bound))) if isinstance(bound, set) else f"{bound[0]} to {bound[1]}"
            )
            raise _damaged(
                path, f"network_config.{key}", f"must be an integer of {allowed}, got {value!r:.40}"
            )
    n_params = network_parameters(network, config)
    if n_params > MAX_NETWORK_PARAMETERS:
        raise _damaged(
            path, "network_config", f"describes {n_params:,} parameters, more than {MAX_NETWORK_PARAMETERS:,}"
        )
    # the saved weights, the built network and a copy while loading
    check_memory(3 * 4 * n_params, hint="the model file describes a network larger than this machine holds")


def _check_weights(payload: dict, path: Path) -> None:
    import torch

    state = payload.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise _damaged(path, "state_dict", "must be a non-empty dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _damaged(path, "state_dict", f"holds {key!r:.40}, which is not a named tensor")
        if not value.is_floating_point():
            raise _damaged(
                path, f"state_dict[{key!r}]", f"must hold floating-point weights, not {value.dtype}"
            )
        if not bool(torch.isfinite(value).all()):
            raise _damaged(path, f"state_dict[{key!r}]", "holds NaN or Inf weights")
    _check_weight_shapes(payload, path)


def _check_weight_shapes(payload: dict, path: Path) -> None:
    """The saved weights are those of the network the file describes (built on the ``meta`` device:
    shapes only, no memory)."""
    import torch

    from sr4zct.method.networks import build_network

    with torch.device("meta"):
        expected = {
            k: tuple(v.shape)
            for k, v in build_network(payload["network"], payload["network_config"]).state_dict().items()
        }
    state = payload["state_dict"]
    if set(state) != set(expected):
        odd = sorted(set(state) ^ set(expected))
        raise _damaged(path, "state_dict", f"does not match network_config (e.g. {odd[0]!r:.40})")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise _damaged(path, f"state_dict[{key!r}]", f"has shape {tuple(state[key].shape)}, not {shape}")


def _check_optional(payload: dict, path: Path) -> None:
    for field, kinds, name in (
        ("sr4zct_version", str, "a string"),
        ("torch_version", str, "a string"),
        ("preset", str, "a string"),
        ("training", dict, "a dict"),
    ):
        if field in payload and not isinstance(payload[field], kinds):
            raise _damaged(path, field, f"must be {name}, got {payload[field]!r:.40}")
    seed = payload.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _damaged(path, "seed", f"must be an integer, got {seed!r:.40}")


def check_model_payload(payload: Any, path: str | os.PathLike) -> dict[str, Any]:
    """Check every field of a loaded model file (type and range); returns it.

    Raises
    ------
    ModelError
        Naming the field: not an SR4ZCT model, a newer format, an unknown or oversized network, a
        thickness, spacing, pixel spacing or profile that is not one, a normalisation that is not finite
        or has a zero scale, weights that are not finite tensors.
    ResourceError
        The network would not fit in the available memory.
    """
    path = Path(path)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"The file {path} is not an SR4ZCT model file.")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(path, "format_version", f"must be a positive integer, got {version!r:.40}")
    if version > MODEL_VERSION:
        raise ModelError(
            f"The model file {path} was written by a newer SR4ZCT ({str(payload.get('sr4zct_version'))[:20]}); "
            "update SR4ZCT."
        )
    _check_network(payload, path)
    _check_acquisition(payload, path)
    _check_normalisation(payload, path)
    _check_optional(payload, path)
    _check_weights(payload, path)
    return payload


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a model file's payload with ``weights_only=True`` (no code runs) and check it
    (:func:`check_model_payload`)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"The model file {path} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip failure means a corrupt or foreign file
        raise ModelError(
            f"The model file {path} is corrupt or not an SR4ZCT model ({type(exc).__name__})."
        ) from exc
    return check_model_payload(payload, path)


def load_model(path: str | os.PathLike, device=None) -> tuple[Any, dict[str, Any]]:
    """Read a model file; returns ``(model, info)``. Unreadable, foreign or damaged files raise ModelError
    naming what is wrong (see :func:`check_model_payload`)."""
    from sr4zct.method.networks import build_network

    path = Path(path)
    payload = read_model_file(path)
    try:
        model = build_network(payload["network"], dict(payload["network_config"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError, SR4ZCTError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelError(f"The model file {path} is damaged: {detail}") from exc
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
