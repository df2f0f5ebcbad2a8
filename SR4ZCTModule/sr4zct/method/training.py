"""Self-supervised patch training (docs/method.md, sections 2 and 4).

The sharp axial images are degraded along one in-plane axis with the exact acquisition model
(:func:`sr4zct.method.acquisition.degrade_operator_matrix`, i.e. ``F_up(F_down(.))``) and the network learns to
undo it. Each training sample is a square patch:

* vertical pair: a full-height column strip of an axial image is degraded along the rows (pixel = row
  spacing) and the patch rows are cut out of the result;
* horizontal pair: a full-width row strip is degraded along the columns (pixel = column spacing) and the
  patch is transposed so that the degraded direction is vertical (it then matches a sagittal image,
  ``array[:, :, c]``, whose horizontal axis is the rows).

Every sample gets a random sub-spacing phase of the virtual slice grid (``n_phases`` precomputed operator
matrices per axis) and random flips; patch positions favour the body (HU > -500) and structure (gradient
magnitude). Intensities are normalised by a fixed affine map (:class:`Normalisation`). A held-out set of
axial images gives the validation loss that selects the best checkpoint; if no checkpoint beats the
identity (plain linear interpolation) the identity is kept and a warning is recorded.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings as _warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sr4zct.method import acquisition
from sr4zct.method.body import BODY_THRESHOLD_HU
from sr4zct.method.networks import build_network
from sr4zct.run.budget import InferenceTimer, TimeBudget
from sr4zct.run.devices import autocast, configure_device, grad_scaler, is_out_of_memory, single_thread
from sr4zct.run.progress import ProgressReporter

__all__ = [
    "BODY_THRESHOLD_HU",
    "Checkpoint",
    "Normalisation",
    "PatchSampler",
    "TrainingConfig",
    "TrainingResult",
    "seed_everything",
    "train_model",
]


@dataclass(frozen=True)
class Normalisation:
    """Fixed affine intensity map ``x = (HU + offset) / scale`` (air -> ~0, water -> ~1)."""

    offset: float = 1000.0
    scale: float = 1000.0

    def forward(self, hu: Any) -> Any:
        return (hu + self.offset) / self.scale

    def inverse(self, x: Any) -> Any:
        return x * self.scale - self.offset

    def to_dict(self) -> dict[str, float]:
        return {"offset": float(self.offset), "scale": float(self.scale)}


@dataclass
class TrainingConfig:
    """What and how long to train. ``max_seconds=None`` trains for ``steps`` steps exactly.

    With ``max_seconds`` (and no :class:`~sr4zct.run.budget.TimeBudget` given to :func:`train_model`),
    training stops when the time left of ``max_seconds`` is what the inference timer says inference will
    need, but never before ``min_seconds``.
    """

    steps: int = 2000
    patch_px: int = 64
    batch: int = 16
    lr: float = 1e-3
    loss: str = "l1"
    network: str = "default"
    network_config: dict[str, Any] = field(default_factory=dict)
    max_seconds: float | None = None
    min_seconds: float = 0.0
    validate_every: int = 100
    validation_patches: int = 96
    n_phases: int = 16
    seed: int = 0
    # patch sampling: weight of the flat term beside the gradient (see PatchSampler); a quality lever
    sample_flat: float = 0.25
    # intensity augmentation: both patches of a pair scaled about air by a factor in [1/(1+s), 1+s]; 0 = off
    intensity_scale: float = 0.0


@dataclass
class TrainingResult:
    model: nn.Module
    steps: int
    seconds: float
    best_step: int
    validation_loss: float
    identity_loss: float
    used_identity: bool
    history: list[dict[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    finished_early: bool = False

    @property
    def validation_gain_db(self) -> float:
        """Validation improvement over linear interpolation in dB (of the loss; L2 -> PSNR gain)."""
        return gain_db(self.identity_loss, self.validation_loss)


def gain_db(identity_loss: float, loss: float) -> float:
    """How much lower ``loss`` is than linear interpolation's, in dB (0 when either is not positive)."""
    if loss <= 0 or identity_loss <= 0:
        return 0.0
    return 10.0 * math.log10(identity_loss / loss)


@dataclass(frozen=True)
class Checkpoint:
    """Where training stands after a validation: the best weights so far and how good they are.

    ``best_state`` is the state dict of the best checkpoint (the identity's at step 0); it is not copied,
    so use it before training goes on.
    """

    step: int
    best_step: int
    best_loss: float
    identity_loss: float
    best_state: dict[str, Any]
    elapsed_s: float

    @property
    def gain_db(self) -> float:
        """Held-out validation gain of the best checkpoint over linear interpolation, in dB."""
        return gain_db(self.identity_loss, self.best_loss)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python and torch; return a NumPy generator for the caller's own draws."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class PatchSampler:
    """Draws degraded/sharp patch pairs from normalised axial images.

    Parameters
    ----------
    images : (n_images, rows, columns) float32 tensor, normalised (see :class:`Normalisation`). Patches are
        cut and degraded on its device (on a GPU the CPU only draws the random numbers).
    pixel_spacing_mm : (row spacing, column spacing).
    thickness_mm, spacing_mm, profile : the acquisition to simulate.
    patch_px : patch side (reduced to fit small images).
    body_threshold : normalised intensity above which a pixel counts as body.
    n_phases : number of precomputed sub-spacing phases in ``[0, d)``.
    flat_weight : patch positions are drawn with weight ``gradient + flat_weight * mean gradient`` inside the
        body (0: structure only; large: uniform over the body).
    intensity_scale : augmentation: both patches of a pair scaled about air (normalised 0) by a random
        factor in ``[1 / (1 + s), 1 + s]`` (the degradation is linear, so the pair stays exact); 0 = off.
    """

    def __init__(
        self,
        images: torch.Tensor,
        *,
        pixel_spacing_mm: tuple[float, float],
        thickness_mm: float,
        spacing_mm: float,
        profile: str = "box",
        patch_px: int = 64,
        body_threshold: float = 0.5,
        n_phases: int = 16,
        flat_weight: float = 0.25,
        intensity_scale: float = 0.0,
    ):
        if images.ndim != 3:
            raise ValueError("images must be (n, rows, columns)")
        self.images = images.contiguous()
        n, rows, cols = images.shape
        self.patch = int(min(patch_px, rows, cols))
        phases = [spacing_mm * k / n_phases for k in range(n_phases)]
        self.ops = []  # [vertical (P, rows, rows), horizontal (P, cols, cols)]
        for n_px, px in ((rows, pixel_spacing_mm[0]), (cols, pixel_spacing_mm[1])):
            mats = [
                acquisition.degrade_operator_matrix(n_px, px, thickness_mm, spacing_mm, ph, profile)
                for ph in phases
            ]
            self.ops.append(torch.tensor(np.stack(mats), dtype=torch.float32, device=images.device))
        flat = self.images.reshape(n, -1)
        self.lo = flat.amin(dim=1)
        self.hi = flat.amax(dim=1)
        self.flat_weight = float(flat_weight)
        self.intensity_scale = float(intensity_scale)
        self._weights(body_threshold)

    def _weights(self, body_threshold: float, stride: int = 8) -> None:
        p = self.patch
        stride = max(1, min(stride, p))
        x = self.images[:, None]
        gy = torch.zeros_like(x)
        gx = torch.zeros_like(x)
        gy[..., 1:, :] = (x[..., 1:, :] - x[..., :-1, :]).abs()
        gx[..., :, 1:] = (x[..., :, 1:] - x[..., :, :-1]).abs()
        # patch means on a stride-8 grid: pool 8x8 blocks first, then average p/8 x p/8 blocks (cheap)
        k = max(1, p // stride)
        body = nn.functional.avg_pool2d((x > body_threshold).float(), stride, stride)
        body = nn.functional.avg_pool2d(body, k, stride=1)
        grad = nn.functional.avg_pool2d(nn.functional.avg_pool2d(gy + gx, stride, stride), k, stride=1)
        w = grad + self.flat_weight * grad.mean()
        w = torch.where(body > 0.1, w, torch.zeros_like(w))
        if float(w.sum()) <= 0:
            w = torch.ones_like(w)
        self.stride = stride
        self.grid_shape = w.shape[-2:]
        self.cdf = torch.cumsum(w.flatten().double(), 0).cpu()
        self.cdf /= self.cdf[-1].clone()

    def positions(self, count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
        """``count`` (image, row, column) top-left corners drawn from the body/structure weights."""
        gh, gw = self.grid_shape
        idx = np.searchsorted(self.cdf.numpy(), rng.random(count), side="left")
        idx = np.minimum(idx, self.cdf.numel() - 1)
        k, rem = np.divmod(idx, gh * gw)
        gi, gj = np.divmod(rem, gw)
        _, rows, cols = self.images.shape
        r = np.minimum(gi * self.stride + rng.integers(0, self.stride, count), rows - self.patch)
        c = np.minimum(gj * self.stride + rng.integers(0, self.stride, count), cols - self.patch)
        return [(int(a), int(b), int(d)) for a, b, d in zip(k, r, c, strict=True)]

    def sample(
        self, count: int, rng: np.random.Generator, *, augment: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` pairs as ``(inputs, targets)`` of shape ``(count, 1, P, P)``, half of each orientation."""
        p = self.patch
        dev = self.images.device
        pos = np.asarray(self.positions(count, rng), dtype=np.int64).reshape(count, 3)
        phase = torch.from_numpy(rng.integers(self.ops[0].shape[0], size=count)).to(dev)
        k, r, c = (torch.from_numpy(pos[:, i]).to(dev) for i in range(3))
        span = torch.arange(p, device=dev)
        _, rows, cols = self.images.shape
        inputs = torch.empty((count, p, p), device=dev)
        targets = torch.empty((count, p, p), device=dev)
        # even samples: vertical pairs (degrade along rows); odd: horizontal pairs, transposed
        v, h = slice(0, count, 2), slice(1, count, 2)
        kv, rv, cv = k[v], r[v], c[v]
        strips = self.images[
            kv[:, None, None], torch.arange(rows, device=dev)[None, :, None], (cv[:, None] + span)[:, None, :]
        ]
        ops = self.ops[0][phase[v][:, None], rv[:, None] + span]  # (b, P, rows)
        inputs[v] = torch.bmm(ops, strips)
        targets[v] = strips[torch.arange(kv.numel(), device=dev)[:, None], rv[:, None] + span]
        kh, rh, ch = k[h], r[h], c[h]
        strips = self.images[
            kh[:, None, None], (rh[:, None] + span)[:, :, None], torch.arange(cols, device=dev)[None, None, :]
        ]
        ops = self.ops[1][phase[h][:, None], ch[:, None] + span]  # (b, P, cols)
        inputs[h] = torch.bmm(ops, strips.transpose(1, 2))
        targets[h] = strips[torch.arange(kh.numel(), device=dev)[:, None], :, ch[:, None] + span]
        inputs = torch.maximum(torch.minimum(inputs, self.hi[k][:, None, None]), self.lo[k][:, None, None])
        if augment:
            flips = torch.from_numpy(rng.random((count, 2)) < 0.5).to(dev)
            fv = flips[:, 0][:, None, None]
            inputs = torch.where(fv, inputs.flip(1), inputs)
            targets = torch.where(fv, targets.flip(1), targets)
            fh = flips[:, 1][:, None, None]
            inputs = torch.where(fh, inputs.flip(2), inputs)
            targets = torch.where(fh, targets.flip(2), targets)
            if self.intensity_scale > 0:
                span_log = math.log1p(self.intensity_scale)
                factor = torch.from_numpy(np.exp(rng.uniform(-span_log, span_log, count))).to(
                    dev, inputs.dtype
                )
                inputs = inputs * factor[:, None, None]
                targets = targets * factor[:, None, None]
        return inputs[:, None].contiguous(), targets[:, None].contiguous()


def _loss_fn(name: str):
    if name == "l1":
        return nn.functional.l1_loss
    if name == "l2":
        return nn.functional.mse_loss
    from sr4zct.errors import ParameterError

    raise ParameterError(f"Unknown loss {name!r}; use 'l1' or 'l2'.")


def _split(n_images: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation image indices: about 1 in 8 images held out (at least 1, when possible)."""
    idx = np.arange(n_images)
    if n_images < 4:
        return idx, idx
    n_val = max(1, min(32, n_images // 8))
    val = np.sort(rng.choice(idx, size=n_val, replace=False))
    train = np.setdiff1d(idx, val)
    return train, val


def _evaluate(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]], loss_fn, device) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), autocast(device):
        for inp, tgt in data:
            out = model(inp.to(device)).float()
            total += float(loss_fn(out, tgt.to(device), reduction="sum"))
            count += tgt.numel()
    model.train()
    return total / max(count, 1)


def train_model(
    images_hu: np.ndarray | torch.Tensor,
    *,
    pixel_spacing_mm: tuple[float, float],
    thickness_mm: float,
    spacing_mm: float,
    profile: str = "box",
    config: TrainingConfig | None = None,
    normalisation: Normalisation | None = None,
    device: torch.device | str = "cpu",
    reporter: ProgressReporter | None = None,
    inference_timer: InferenceTimer | None = None,
    budget: TimeBudget | None = None,
    on_validation: Callable[[Checkpoint], None] | None = None,
    should_finish: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train a network to undo the simulated through-plane degradation of the axial images.

    Parameters
    ----------
    images_hu : (n_images, rows, columns) sharp axial images in HU (the input volume's slices).
    pixel_spacing_mm : (row spacing, column spacing) in mm.
    thickness_mm, spacing_mm, profile : slice thickness T, spacing d and profile of the real series.
    config : budgets and hyper-parameters (:class:`TrainingConfig`).
    normalisation : intensity map (default ``(HU + 1000) / 1000``).
    device : torch device to train on.
    reporter : receives ``train`` progress (step, total, loss) and is polled for cancellation.
    inference_timer : when given (and ``config.max_seconds`` is set), training keeps back the time this
        timer estimates for inference, re-timing the network as it validates (:mod:`sr4zct.run.budget`).
    budget : the run's time budget: training stops at its deadline (:meth:`TimeBudget.training_over`) and
        re-times its inference timer; ``config.max_seconds`` and ``inference_timer`` are then not used.
    on_validation : called with a :class:`Checkpoint` after every validation (the live preview).
    should_finish : polled every step; True ends training at once with the best checkpoint so far (the
        one the last :class:`Checkpoint` carried), without a further validation.

    Returns
    -------
    TrainingResult with the best model (evaluation mode, on ``device``) and its figures.
    """
    cfg = config or TrainingConfig()
    norm = normalisation or Normalisation()
    device = torch.device(device)
    loss_fn = _loss_fn(cfg.loss)
    rng = seed_everything(cfg.seed)
    t0 = time.monotonic()

    configure_device(device)
    images = torch.as_tensor(np.asarray(images_hu, dtype=np.float32))
    images = norm.forward(images)
    if device.type == "cuda":
        images = images.to(device)  # patches are cut on the GPU: no per-step host work but the random draws
    train_idx, val_idx = _split(images.shape[0], rng)
    common = {
        "pixel_spacing_mm": pixel_spacing_mm,
        "thickness_mm": thickness_mm,
        "spacing_mm": spacing_mm,
        "profile": profile,
        "patch_px": cfg.patch_px,
        "body_threshold": float(norm.forward(BODY_THRESHOLD_HU)),
        "n_phases": cfg.n_phases,
        "flat_weight": cfg.sample_flat,
    }
    sampler = PatchSampler(images[train_idx], **common, intensity_scale=cfg.intensity_scale)
    val_sampler = PatchSampler(images[val_idx], **common)
    val_rng = np.random.default_rng(cfg.seed + 7919)
    val_data = []
    remaining = cfg.validation_patches
    while remaining > 0:
        chunk = min(32, remaining)
        val_data.append(val_sampler.sample(chunk, val_rng, augment=False))
        remaining -= chunk

    # channels_last: oneDNN (CPU) and cuDNN pick their fastest convolution kernels for it
    model = build_network(cfg.network, cfg.network_config).to(device, memory_format=torch.channels_last)
    identity_state = copy.deepcopy(model.state_dict())
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    scaler = grad_scaler(device)
    identity_loss = _evaluate(model, val_data, loss_fn, device)
    if budget is None and cfg.max_seconds is not None:
        budget = TimeBudget(
            cfg.max_seconds, start=t0, timer=inference_timer, write_s=0.0,
            min_train_fraction=cfg.min_seconds / cfg.max_seconds if cfg.max_seconds > 0 else 0.0,
        )  # fmt: skip
    timer = budget.timer if budget is not None else None
    if timer is not None and timer.timings == 0:  # the caller may have timed it already
        timer.measure(model)

    best_loss, best_state, best_step = identity_loss, identity_state, 0
    if on_validation is not None:  # the starting point: linear interpolation
        on_validation(Checkpoint(0, 0, identity_loss, identity_loss, identity_state, time.monotonic() - t0))
    history: list[dict[str, float]] = []
    messages: list[str] = []
    batch = int(cfg.batch)
    warmup = max(1, min(100, cfg.steps // 20))
    running = None
    step = 0
    planned = cfg.steps  # the cosine schedule's length; shortened (only) when the time limit binds
    schedule = 0.0
    if budget is not None:
        budget.begin_training(cfg.steps)
    model.train()
    finished_early = False
    while step < cfg.steps:
        if should_finish is not None and should_finish():
            messages.append(f"Training was finished early on request after {step} of {cfg.steps} steps.")
            finished_early = True
            break
        if budget is not None:
            now = budget.clock()
            if budget.training_over(now):
                messages.append(f"Training stopped by the time limit after {step} of {cfg.steps} steps.")
                break
            if step >= 20 and step % 50 == 20:
                # steps that fit in the time left at the current rate; the schedule depends on time only when
                # this is below the step budget, so runs that are not time-bound stay reproducible. Re-estimated
                # every time (a slow start, e.g. a busy machine, must not end training early).
                fit = step + int(0.97 * (budget.steps_that_fit(step, now) - step))
                planned = max(step + 1, min(cfg.steps, fit))
        # monotone, so a longer re-estimate never raises the learning rate again; past 1.0 training goes on
        # at the final learning rate until the time limit
        schedule = max(schedule, min(1.0, step / planned))
        progress = schedule
        lr = (
            cfg.lr
            * min(1.0, (step + 1) / warmup)
            * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))
        )
        for group in optimiser.param_groups:
            group["lr"] = lr
        with single_thread():
            inp, tgt = sampler.sample(batch, rng)
        try:
            inp, tgt = inp.to(device, non_blocking=True), tgt.to(device, non_blocking=True)
            with autocast(device):
                out = model(inp)
            loss = loss_fn(out.float(), tgt)
            optimiser.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()
                optimiser.step()
        except RuntimeError as exc:
            if not is_out_of_memory(exc) or batch <= 1:
                raise
            batch = max(1, batch // 2)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            messages.append(f"Out of memory on {device}; training batch reduced to {batch}.")
            continue
        step += 1
        if budget is not None:
            budget.train_step(step, budget.clock())
        value = float(loss.detach())
        running = value if running is None else 0.95 * running + 0.05 * value
        if step % cfg.validate_every == 0 or step == cfg.steps:
            val = _evaluate(model, val_data, loss_fn, device)
            if timer is not None:
                timer.maybe_measure(model)
            history.append({"step": step, "train_loss": running, "val_loss": val, "lr": lr})
            if val < best_loss:
                best_loss, best_step = val, step
                best_state = copy.deepcopy(model.state_dict())
            if on_validation is not None:
                on_validation(
                    Checkpoint(step, best_step, best_loss, identity_loss, best_state, time.monotonic() - t0)
                )
        if reporter is not None:
            if step % 5 == 0 or step == cfg.steps:
                reporter.report("train", step, planned, loss=running)
            else:
                reporter.check_cancel()
    if step > 0 and not finished_early and (not history or history[-1]["step"] != step):
        val = _evaluate(model, val_data, loss_fn, device)
        history.append({"step": step, "train_loss": running or 0.0, "val_loss": val, "lr": lr})
        if val < best_loss:
            best_loss, best_step = val, step
            best_state = copy.deepcopy(model.state_dict())
        if on_validation is not None:
            on_validation(
                Checkpoint(step, best_step, best_loss, identity_loss, best_state, time.monotonic() - t0)
            )

    used_identity = best_step == 0
    if used_identity:
        text = (
            f"Training did not improve on linear interpolation after {step} steps "
            "(validation loss not lower); the result equals linear interpolation."
        )
        messages.append(text)
        _warnings.warn(text, RuntimeWarning, stacklevel=2)
    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(
        model=model,
        steps=step,
        seconds=time.monotonic() - t0,
        best_step=best_step,
        validation_loss=best_loss,
        identity_loss=identity_loss,
        used_identity=used_identity,
        history=history,
        warnings=messages,
        finished_early=finished_early,
    )
