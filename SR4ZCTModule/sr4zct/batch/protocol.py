"""One model per acquisition protocol: which jobs can share a trained network.

The network learns how the slice thickness T, the slice spacing d, the in-plane pixel size and the slice
profile blur the image, so series that agree on all four (within the tolerance a saved model is accepted
with, :data:`sr4zct.run.model_file.MODEL_TOLERANCE`) can share one model: the first trains and saves it,
the others apply it. The model file's name holds the protocol and a hash of the training options
(preset, network, seed, time limit), so a later run with other training options trains anew.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sr4zct.batch.jobs import BatchJob
from sr4zct.errors import SR4ZCTError
from sr4zct.run.model_file import MODEL_TOLERANCE
from sr4zct.run.options import EnhanceOptions, resolved_scan_mode
from sr4zct.volume.scan_mode import SCAN_MODES

__all__ = ["MODELS_FOLDER", "Protocol", "assign_protocols", "job_protocol", "model_file"]

MODELS_FOLDER = "models"
#: options that change what a trained model is (the protocol itself aside)
TRAINING_OPTIONS = ("preset", "network", "seed", "max_minutes")


@dataclass(frozen=True)
class Protocol:
    """What a trained model depends on. Units: millimetres."""

    thickness_mm: float
    spacing_mm: float
    pixel_spacing_mm: tuple[float, float]
    profile: str

    def matches(self, other: Protocol) -> bool:
        """True when a model trained for ``self`` is accepted for ``other`` (as
        :func:`~sr4zct.run.model_file.check_model_geometry` decides)."""
        pairs = [
            (self.thickness_mm, other.thickness_mm),
            (self.spacing_mm, other.spacing_mm),
            *zip(self.pixel_spacing_mm, other.pixel_spacing_mm, strict=True),
        ]
        return self.profile == other.profile and all(_close(a, b) for a, b in pairs)

    @property
    def key(self) -> str:
        """A file-name-safe name, e.g. ``T3_d2_px0.7422x0.7422_box``."""
        row, col = self.pixel_spacing_mm
        return f"T{self.thickness_mm:.4g}_d{self.spacing_mm:.4g}_px{row:.4g}x{col:.4g}_{self.profile}"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= MODEL_TOLERANCE * max(abs(a), abs(b)) + 1e-6


def job_protocol(job: BatchJob, options: EnhanceOptions) -> Protocol | None:
    """The protocol of ``job`` under the batch ``options``, or None when its geometry cannot be read or its
    thickness is unknown (the job then runs on its own and fails with the reader's message)."""
    merged = job.enhance_options(options)
    geometry = job.geometry
    if geometry is None:
        if job.problem is not None:
            return None
        from sr4zct.io import read_geometry

        try:
            geometry = read_geometry(
                job.input_path, series_uid=merged.series_uid, thickness_mm=merged.thickness_mm,
                slice_axis=merged.slice_axis,
            )  # fmt: skip
        except SR4ZCTError:
            return None
    thickness = merged.thickness_mm or geometry.slice_thickness_mm
    spacing = merged.spacing_mm or geometry.slice_spacing_mm
    if thickness is None or spacing is None or not spacing > 0:
        return None
    pixel = tuple(float(v) for v in geometry.pixel_spacing_mm)
    return Protocol(float(thickness), float(spacing), (pixel[0], pixel[1]), _profile(merged, geometry))


def _profile(options: EnhanceOptions, geometry) -> str:
    """The profile a job's model is trained for, as far as it is known before training: the option's, or for
    ``auto`` the family a known scan mode fixes (so that helical and sequential series never share a model)."""
    mode, _ = resolved_scan_mode(options, geometry)
    if options.profile == "auto" and mode is not None:
        return SCAN_MODES[mode]
    return options.profile


def assign_protocols(protocols: dict[str, Protocol | None]) -> dict[str, Protocol | None]:
    """``job_id`` -> the protocol whose model the job uses, from each job's own protocol (in the order
    given): the first earlier protocol it matches, so that every job of a group is within tolerance of the
    group's first job."""
    groups: list[Protocol] = []
    out: dict[str, Protocol | None] = {}
    for job_id, protocol in protocols.items():
        if protocol is not None:
            protocol = next((p for p in groups if p.matches(protocol)), None) or protocol
            if protocol not in groups:
                groups.append(protocol)
        out[job_id] = protocol
    return out


def training_hash(options: EnhanceOptions) -> str:
    """8 hex digits of the options that change what a trained model is."""
    data = {name: options.to_dict()[name] for name in TRAINING_OPTIONS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:8]


def model_file(
    outdir: str | os.PathLike, protocol: Protocol, options: EnhanceOptions, shard: str = ""
) -> Path:
    """``outdir/models/<protocol key>-<training hash>[-<shard>].pt``."""
    suffix = f"-{shard}" if shard else ""
    return Path(outdir) / MODELS_FOLDER / f"{protocol.key}-{training_hash(options)}{suffix}.pt"
