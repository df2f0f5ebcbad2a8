"""Every option of an enhancement, defined once: :class:`EnhanceOptions`.

The Python API (:func:`sr4zct.enhance`, :func:`sr4zct.enhance_file`), the command line
(``sr4zct enhance``), the background process and the Slicer module all take their options, defaults,
allowed values, units and help texts from here; so do the vocabularies :data:`PROFILES`, :data:`NETWORKS`,
:data:`DEVICES`, :data:`PRECISIONS` and the preset names (:data:`sr4zct.run.presets.PRESETS`).

Importing this module is cheap (no torch): the Slicer GUI uses it.

Examples
--------
>>> options = EnhanceOptions(thickness_mm=3.0, preset="fast")
>>> options.to_dict()["preset"]
'fast'
>>> EnhanceOptions.from_dict({"thickness_mm": 3, "seed": 1}).seed
1
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Any

from sr4zct.errors import ParameterError
from sr4zct.method import PROFILES
from sr4zct.run.presets import PRESETS, Preset
from sr4zct.volume.scan_mode import SCAN_MODES

__all__ = [
    "DEVICES",
    "DEVICE_FORMS",
    "NETWORKS",
    "NETWORK_DESCRIPTIONS",
    "OUTPUT_DTYPES",
    "PRECISIONS",
    "PROFILES",
    "SCAN_MODE_CHOICES",
    "EnhanceOptions",
    "flag_of",
    "resolved_scan_mode",
    "words",
]

#: the profile option's choices: ``auto`` estimates the family from the scan (sr4zct.method.profile)
PROFILE_CHOICES = ("auto", *PROFILES)
#: how the series was acquired (sr4zct.volume.scan_mode): ``auto`` reads it from the DICOM header
SCAN_MODE_CHOICES = ("auto", *SCAN_MODES)
#: noise-aware training: ``auto`` adds the slice noise measured in the scan to the training inputs
NOISE_CHOICES = ("auto", "off")
#: network architectures and what each is; the keys are exactly the registry's,
#: :data:`sr4zct.method.networks.NETWORKS` (kept apart because that module loads torch; a test ties them)
NETWORK_DESCRIPTIONS = {"default": "fast residual CNN", "msd": "the paper's MS-D"}
NETWORKS = tuple(NETWORK_DESCRIPTIONS)
#: device choices; besides them, ``cuda:N`` picks one GPU (:data:`DEVICE_FORMS` lists every form)
DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_FORMS = tuple(form for name in DEVICES for form in ((name, "cuda:N") if name == "cuda" else (name,)))
#: numeric precision of the network's passes (sr4zct.run.precision); ``auto``: bf16 on a CPU that has it natively
PRECISIONS = ("auto", "fp32", "bf16")
#: data type of the enhanced volume; ``auto`` keeps integer HU as int16
OUTPUT_DTYPES = ("auto", "int16", "float32")

_DEVICE_PATTERN = re.compile(
    "^(" + "|".join(re.escape(name) for name in DEVICES if name != "cuda") + r"|cuda(:\d+)?)$"
)
#: the largest seed: NumPy's generators take seeds below 2**32
SEED_MAX = 2**32 - 1


def words(items: Any, conjunction: str = "or") -> str:
    """``a, b or c`` (for help texts and messages)."""
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _network_help() -> str:
    return "network: " + words(f"{name} ({text})" for name, text in NETWORK_DESCRIPTIONS.items())


def _preset_help() -> str:
    minutes = " / ".join(f"{preset.max_minutes:g}" for preset in PRESETS.values())
    return f"training budget: {words(PRESETS)} (about {minutes} min at most on a 2-core CPU)"


def _option(
    default: Any,
    help: str,  # noqa: A002 - argparse's name
    *,
    kind: type,
    flag: str | None = None,
    unit: str | None = None,
    choices: tuple[Any, ...] | None = None,
    metavar: str | None = None,
    label: str | None = None,
    group: str,
    minimum: int | None = None,
    maximum: int | None = None,
) -> Any:
    return field(
        default=default,
        metadata={
            "help": help,
            "kind": kind,
            "flag": flag,
            "unit": unit,
            "choices": choices,
            "metavar": metavar,
            "label": label,
            "group": group,
            "minimum": minimum,  # integer options: the smallest and largest value allowed (None: no limit)
            "maximum": maximum,
        },
    )


@dataclass(frozen=True)
class EnhanceOptions:
    """The options of one enhancement; validated on construction.

    Attributes
    ----------
    thickness_mm : float or None
        Slice thickness T in mm; default the input's (DICOM SliceThickness, or the value an SR4ZCT output
        records). Required when the input has none.
    spacing_mm : float or None
        Slice spacing d (centre to centre) in mm; default measured from the slice positions (irregular
        positions are then honoured). When given, the slices are taken as regularly spaced by d.
    target_spacing_mm : float or None
        Output slice spacing in mm; default the in-plane row pixel size (isotropic). Must be < d.
    profile : str
        Slice sensitivity profile, one of :data:`PROFILE_CHOICES`: ``auto`` (the family, box or Gaussian,
        estimated from the scan itself, :mod:`sr4zct.method.profile`; width T), ``box`` (as in the paper) or
        ``gaussian`` (FWHM = T, closer to helical CT).
    scan_mode : str
        How the scanner acquired the series, one of :data:`SCAN_MODE_CHOICES`; it decides the family that
        ``profile="auto"`` uses: ``helical`` (Gaussian), ``sequential`` (box), or ``auto``: the scan mode the
        input's DICOM attributes state (:mod:`sr4zct.volume.scan_mode`), else the family estimated from the
        images. A ``profile`` other than ``auto`` wins.
    noise : str
        Noise-aware training, one of :data:`NOISE_CHOICES`: ``auto`` measures the slice noise of the scan and
        adds it to the simulated thick slices of the training inputs (the network learns not to sharpen it);
        ``off`` trains on the axial images' own noise only.
    preset : str or Preset
        Training budget, one of :data:`sr4zct.run.presets.PRESETS`, or (Python API only) a custom
        :class:`~sr4zct.run.presets.Preset`.
    network : str
        Architecture, one of :data:`NETWORKS`: ``default`` (fast residual CNN) or ``msd`` (the paper's).
    seed : int
        Seeds every random draw: same seed, device, threads and precision give the same output (unless the
        time limit cuts training short).
    max_minutes : float or None
        Wall-time cap of the whole run in minutes; default the preset's.
    model_path : str or None
        Apply this saved model instead of training.
    save_model_path : str or None
        Also save the trained model there.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    allow_cpu_fallback : bool
        When the GPU runs out of memory even with smaller batches and tiles, run again on the CPU.
    precision : str
        One of :data:`PRECISIONS`: ``auto`` (bf16 on a CPU with native bf16 where a short probe finds it
        faster, mixed precision on a CUDA GPU, else fp32), ``fp32`` or ``bf16`` (weights and loss stay fp32).
    series_uid : str or None
        SeriesInstanceUID to read when a DICOM folder holds several series.
    slice_axis : int or None
        Image files: the NumPy axis (``z, y, x`` as read) that is through-plane; default the axis the file
        records, else the coarsest.
    allow_non_ct : bool
        Enhance a DICOM series whose modality is not CT (with a warning) instead of refusing it.
    allow_detached_data : bool
        Image files: read a detached data file (``.mhd`` ElementDataFile, NRRD ``data file``) that lies
        outside the header's folder (refused by default: a header must not make SR4ZCT read other files).
    uncertainty_path : str or None
        Also write ``|coronal - sagittal|`` in HU there (:func:`sr4zct.enhance_file`).
    preview_path : str or None
        Show the result forming while it trains: at validations (about every 30 s or less, at most 5 % of
        training time), the best network so far is applied to one coronal image, written to this ``.png``
        (linear interpolation | current, with the step and the held-out validation gain) or ``.nrrd`` (that
        coronal image of the result, placed in 3-D, for Slicer).
    preview_row : int or None
        The row (coronal image) of the preview; default the middle of the body.
    output_dtype : str
        ``auto`` (int16 HU, rounded and clipped, when the input is integer; else float32), ``int16`` or
        ``float32``.
    overwrite : bool
        Replace an earlier SR4ZCT output of the same kind at an output path (an enhanced volume by an enhanced
        volume, an uncertainty map or a model file by its own kind; anything else is refused before any work).
    """

    thickness_mm: float | None = _option(
        None, "slice thickness T (default: from the input's header)", kind=float, flag="--thickness",
        unit="mm", metavar="MM", label="the slice thickness", group="acquisition",
    )  # fmt: skip
    spacing_mm: float | None = _option(
        None, "slice spacing d, centre to centre (default: measured from the slice positions)", kind=float,
        flag="--spacing", unit="mm", metavar="MM", label="the slice spacing", group="acquisition",
    )  # fmt: skip
    target_spacing_mm: float | None = _option(
        None, "output slice spacing (default: the in-plane pixel size, isotropic)", kind=float,
        flag="--target-spacing", unit="mm", metavar="MM", label="the output slice spacing", group="acquisition",
    )  # fmt: skip
    profile: str = _option(
        "auto", "slice sensitivity profile: auto (box or gaussian, estimated from the scan), box (as in the "
        "paper) or gaussian (FWHM = thickness)", kind=str, choices=PROFILE_CHOICES, group="acquisition",
    )  # fmt: skip
    scan_mode: str = _option(
        "auto", "how the scanner acquired the series, for --profile auto: auto (from the DICOM header, else "
        "estimated from the images), helical (gaussian profile) or sequential (box)", kind=str,
        choices=SCAN_MODE_CHOICES, group="acquisition",
    )  # fmt: skip
    noise: str = _option(
        "auto", "noise-aware training: auto (add the scan's measured slice noise to the training inputs) or off",
        kind=str, choices=NOISE_CHOICES, group="training",
    )  # fmt: skip
    preset: str | Preset = _option(
        "balanced", _preset_help(), kind=str, choices=tuple(PRESETS), group="training",
    )  # fmt: skip
    network: str = _option(
        "default", _network_help(), kind=str, choices=NETWORKS, group="training",
    )  # fmt: skip
    seed: int = _option(
        0, "random seed (same seed, same result)", kind=int, label="the random seed", group="training",
        minimum=0, maximum=SEED_MAX,
    )  # fmt: skip
    max_minutes: float | None = _option(
        None, "wall-time cap of the whole run (default: the preset's)", kind=float, unit="min",
        metavar="MIN", label="the time limit", group="training",
    )  # fmt: skip
    model_path: str | None = _option(
        None, "apply a saved model instead of training", kind=str, flag="--model", metavar="PATH",
        group="training",
    )  # fmt: skip
    save_model_path: str | None = _option(
        None, "also save the trained model to PATH", kind=str, flag="--save-model", metavar="PATH",
        group="training",
    )  # fmt: skip
    device: str = _option(
        "auto", words(DEVICE_FORMS), kind=str, metavar="DEVICE", group="device",
    )  # fmt: skip
    allow_cpu_fallback: bool = _option(
        False, "when the GPU runs out of memory, run again on the CPU", kind=bool, flag="--cpu-fallback",
        group="device",
    )  # fmt: skip
    precision: str = _option(
        "auto", "numeric precision of the network: auto (bf16 on a CPU that runs it natively and faster, "
        "mixed precision on a CUDA GPU, else fp32), fp32 or bf16", kind=str, choices=PRECISIONS, group="device",
    )  # fmt: skip
    series_uid: str | None = _option(
        None, "SeriesInstanceUID when the folder holds several series", kind=str, flag="--series",
        metavar="UID", group="input",
    )  # fmt: skip
    slice_axis: int | None = _option(
        None, "image files: the through-plane NumPy axis (z, y, x order as read; default: the one the file "
        "records, else the coarsest)", kind=int, choices=(0, 1, 2), label="the through-plane axis", group="input",
    )  # fmt: skip
    allow_non_ct: bool = _option(
        False, "enhance a series whose DICOM modality is not CT (warns)", kind=bool, group="input",
    )  # fmt: skip
    allow_detached_data: bool = _option(
        False, "image files: read a detached data file (.mhd, .nhdr) that lies outside the header's folder",
        kind=bool, group="input",
    )  # fmt: skip
    uncertainty_path: str | None = _option(
        None, "also write |coronal - sagittal| (HU) to PATH", kind=str, flag="--uncertainty",
        metavar="PATH", group="output",
    )  # fmt: skip
    preview_path: str | None = _option(
        None, "live preview while training: a side-by-side PNG (linear | current), or an NRRD of that coronal "
        "image, replaced at each update", kind=str, flag="--preview", metavar="PATH", group="output",
    )  # fmt: skip
    preview_row: int | None = _option(
        None, "which coronal image the preview shows (row index; default the middle of the body)", kind=int,
        metavar="ROW", label="the preview's coronal row", group="output", minimum=0,
    )  # fmt: skip
    output_dtype: str = _option(
        "auto", "auto: int16 HU when the input is integer, else float32", kind=str, choices=OUTPUT_DTYPES,
        group="output",
    )  # fmt: skip
    overwrite: bool = _option(
        False, "replace an earlier SR4ZCT output of the same kind (volume, uncertainty map, model) at an output path",
        kind=bool, group="output",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _checked(f.name, getattr(self, f.name), f.metadata)
            object.__setattr__(self, f.name, value)

    # -- conversions ------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> EnhanceOptions:
        """A copy with ``changes`` (option names); unknown names raise :class:`ParameterError`."""
        _reject_unknown(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every option as a JSON-ready dict (a custom preset as a dict of its fields)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.preset, Preset):
            data["preset"] = dataclasses.asdict(self.preset)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> EnhanceOptions:
        """Options from a dict such as :meth:`to_dict` returns; missing names take their defaults."""
        if not isinstance(data, dict):
            raise ParameterError(f"Options must be a dict of option names, got {type(data).__name__}.")
        _reject_unknown(data)
        if isinstance(data.get("preset"), dict):
            try:
                data = {**data, "preset": Preset(**data["preset"])}
            except TypeError as exc:
                raise ParameterError(f"preset is not a valid custom preset: {exc}.") from None
        return cls(**data)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    # -- command line -----------------------------------------------------------------------------------
    @classmethod
    def add_arguments(
        cls,
        parser: argparse.ArgumentParser,
        *,
        only: tuple[str, ...] | None = None,
        defaults: dict[str, Any] | None = None,
        changes: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Add one command-line argument per option to ``parser``, grouped as in the class.

        Parameters
        ----------
        parser : argparse.ArgumentParser
            Where to add them.
        only : tuple of str, optional
            Add just these options (e.g. the demo's).
        defaults : dict, optional
            Other defaults for some options (the demo's preset is ``fast``).
        changes : dict, optional
            Other ``help`` or ``choices`` (a subset of the option's) for some options: the demo's
            ``--thickness`` is the thickness it simulates, its ``--profile`` one of :data:`PROFILES`.
        """
        defaults, changes = defaults or {}, changes or {}
        groups: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if only is not None and f.name not in only:
                continue
            meta = f.metadata
            default = defaults.get(f.name, f.default)
            group = groups.get(meta["group"])
            if group is None:
                group = groups[meta["group"]] = parser.add_argument_group(f"{meta['group']} options")
            kwargs: dict[str, Any] = {"dest": f.name, "help": _help_text(meta["help"], default)}
            if meta["kind"] is bool:
                kwargs.update(action="store_true", default=False)
            else:
                kwargs.update(type=meta["kind"], default=default, metavar=meta["metavar"])
                if meta["choices"] is not None:
                    kwargs["choices"] = meta["choices"]
                    kwargs.pop("metavar")
            kwargs.update(_changed(f.name, meta, changes.get(f.name, {}), default))
            group.add_argument(flag_of(f.name), **kwargs)

    @classmethod
    def from_args(cls, namespace: argparse.Namespace) -> EnhanceOptions:
        """Options from parsed command-line arguments (see :meth:`add_arguments`); absent ones default."""
        return cls(**{name: getattr(namespace, name) for name in cls.names() if hasattr(namespace, name)})

    def to_args(self) -> list[str]:
        """Command-line arguments that reproduce these options (defaults left out).

        Every valued option is one argument ``--flag=value``, so that a value that looks like an option
        (``series_uid="-o"``, ``preview_path="--overwrite"``) stays the option's value: argparse takes what
        follows the first ``=`` as it is.
        """
        args: list[str] = []
        if isinstance(self.preset, Preset):
            raise ParameterError("A custom Preset cannot be passed on the command line; use a preset name.")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.metadata["kind"] is bool:
                args.append(flag_of(f.name))
            else:
                text = format(value, ".17g") if isinstance(value, float) else str(value)
                args.append(f"{flag_of(f.name)}={text}")
        return args


def resolved_scan_mode(options: EnhanceOptions, geometry: Any) -> tuple[str | None, str]:
    """The scan mode a run on ``geometry`` (a :class:`~sr4zct.volume.SeriesGeometry`) takes and where it came
    from: the option when given, else the one the input's DICOM header states, else ``(None, "")``."""
    if options.scan_mode != "auto":
        return options.scan_mode, "the scan_mode option"
    if geometry.scan_mode is not None:
        return geometry.scan_mode, f"DICOM {geometry.scan_mode_source}".strip()
    return None, ""


def flag_of(name: str) -> str:
    """The command-line flag of option ``name`` (``thickness_mm`` -> ``--thickness``)."""
    for f in dataclasses.fields(EnhanceOptions):
        if f.name == name:
            return f.metadata["flag"] or "--" + name.replace("_", "-")
    raise KeyError(name)


def _changed(name: str, meta: Any, change: dict[str, Any], default: Any) -> dict[str, Any]:
    """The argparse keywords ``change`` gives option ``name``: only its help, or fewer of its choices."""
    unknown = set(change) - {"help", "choices"}
    if unknown:
        raise ValueError(f"{name}: only help and choices can change, not {', '.join(sorted(unknown))}")
    out = dict(change)
    if "choices" in change and not set(change["choices"]) <= set(meta["choices"] or ()):
        raise ValueError(f"{name}: the choices {change['choices']} are not among the option's")
    if "help" in change:
        out["help"] = _help_text(change["help"], default)
    return out


def _help_text(text: str, default: Any) -> str:
    if default not in (None, False) and "default" not in text:
        text += f" (default {default})"
    return text


def _reject_unknown(names: Any) -> None:
    unknown = sorted(set(names) - set(EnhanceOptions.names()))
    if unknown:
        raise ParameterError(
            f"Unknown option(s): {', '.join(map(str, unknown))}; the options are {', '.join(EnhanceOptions.names())}."
        )


def _checked(name: str, value: Any, meta: Any) -> Any:
    """``value`` converted to the option's type, or a :class:`ParameterError` naming ``name``."""
    kind = meta["kind"]
    shown = f"{name} ({meta['label']})" if meta["label"] else name
    if value is None:
        if kind is bool or name in _REQUIRED_VALUES:
            raise ParameterError(f"{shown} must be {_kind_words(kind)}, got None.")
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ParameterError(f"{shown} must be True or False, got {value!r}.")
        return value
    if kind is float:
        return _checked_float(shown, value, meta)
    if kind is int:
        return _checked_int(shown, value, meta)
    return _checked_text(name, value, meta)


def _checked_text(name: str, value: Any, meta: Any) -> Any:
    if name == "preset" and isinstance(value, Preset):
        return value
    if isinstance(value, os.PathLike) and meta["metavar"] == "PATH":
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{name} must be a non-empty text, got {value!r}.")
    if "\0" in value:  # no file name or command line can hold it
        raise ParameterError(f"{name} must not contain a NUL character, got {value!r}.")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ParameterError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}.")
    if name == "device" and not _DEVICE_PATTERN.match(value):
        raise ParameterError(f"device must be {words(DEVICE_FORMS)}, got {value!r}.")
    return value


_REQUIRED_VALUES = (
    "profile", "scan_mode", "noise", "preset", "network", "seed", "device", "precision", "output_dtype"
)  # fmt: skip


def _kind_words(kind: type) -> str:
    return {bool: "True or False", float: "a number", int: "an integer", str: "text"}[kind]


_UNIT_WORDS = {"mm": "millimetres", "min": "minutes"}


def _checked_float(name: str, value: Any, meta: Any) -> float:
    unit = _UNIT_WORDS.get(meta["unit"], meta["unit"])
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a number of {unit}, got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ParameterError(f"{name} must be a positive number of {unit}, got {value!r}.")
    return number


def _checked_int(name: str, value: Any, meta: Any) -> int:
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise ParameterError(f"{name} must be an integer, got {value!r}.")
    number = int(value)
    if meta["choices"] is not None and number not in meta["choices"]:
        raise ParameterError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}.")
    low, high = meta["minimum"], meta["maximum"]
    if (low is not None and number < low) or (high is not None and number > high):
        limits = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ParameterError(f"{name} must be an integer {limits}, got {value!r}.")
    return number
