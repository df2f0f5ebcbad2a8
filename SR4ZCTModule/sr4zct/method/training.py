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
from sr4zct.method.budget import InferenceTimer, TimeBudget
from sr4zct.method.networks import build_network
from sr4zct.system.devices import autocast, configure_device, grad_scaler, is_out_of_memory, single_thread
from sr4zct.system.progress import ProgressReporter

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

    With ``max_seconds`` (and no :class:`~sr4zct.method.budget.TimeBudget` given to :func:`train_model`),
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
    # thick-slice noise added to the degraded inputs (sr4zct.method.noise.TrainingNoise); 0 = off
    noise_sigma_hu: float = 0.0
    noise_correlation: float = 0.0


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


def _operator_band(operators: np.ndarray, rtol: float = 1e-9) -> int:
    """Largest ``|i - j|`` at which any of ``operators`` (P, n, n) has an entry above ``rtol`` of its largest
    (a Gaussian profile's tails never reach exactly zero; what is left out is below float32's resolution)."""
    mags = np.abs(operators).max(axis=0)
    i, j = np.nonzero(mags > rtol * mags.max())
    return int(np.abs(i - j).max()) if i.size else 0


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
        noise: Any = None,
    ):
        if images.ndim != 3:
            raise ValueError("images must be (n, rows, columns)")
        self.images = images.contiguous()
        n, rows, cols = images.shape
        self.patch = int(min(patch_px, rows, cols))
        phases = [spacing_mm * k / n_phases for k in range(n_phases)]
        self.ops = []  # [vertical (P, rows, rows), horizontal (P, cols, cols)]
        self.windows = []  # rows of the strip a patch needs: the patch plus the operator's band each side
        for n_px, px in ((rows, pixel_spacing_mm[0]), (cols, pixel_spacing_mm[1])):
            mats = np.stack(
                [
                    acquisition.degrade_operator_matrix(n_px, px, thickness_mm, spacing_mm, ph, profile)
                    for ph in phases
                ]
            )
            self.ops.append(torch.tensor(mats, dtype=torch.float32, device=images.device))
            self.windows.append(min(n_px, self.patch + 2 * _operator_band(mats)))
        flat = self.images.reshape(n, -1)
        self.lo = flat.amin(dim=1)
        self.hi = flat.amax(dim=1)
        self.flat_weight = float(flat_weight)
        self.intensity_scale = float(intensity_scale)
        self.noise = noise  # a TrainingNoise for the inputs, or None
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

    def _start(self, first: int, axis: int) -> int:
        """First row of the strip that a patch beginning at ``first`` needs along ``axis``."""
        n_px, width = self.images.shape[1 + axis], self.windows[axis]
        return min(max(first - (width - self.patch) // 2, 0), n_px - width)

    def sample(
        self, count: int, rng: np.random.Generator, *, augment: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` pairs as ``(inputs, targets)`` of shape ``(count, 1, P, P)``, half of each orientation."""
        p = self.patch
        dev = self.images.device
        pos = np.asarray(self.positions(count, rng), dtype=np.int64).reshape(count, 3)
        phases = rng.integers(self.ops[0].shape[0], size=count)
        phase = torch.from_numpy(phases).to(dev)
        k, r, c = (torch.from_numpy(pos[:, i]).to(dev) for i in range(3))
        # Plain slices, not advanced indexing (several times slower on the CPU). Even samples: vertical
        # pairs (degraded along rows); odd: horizontal pairs, transposed. A strip spans the patch plus the
        # operator's band, outside which the operator is zero.
        ops, strips, targets = [], [], []
        for i, ((kk, rr, cc), f) in enumerate(zip(pos.tolist(), phases.tolist(), strict=True)):
            image = self.images[kk]
            if i % 2 == 0:
                s, w = self._start(rr, 0), self.windows[0]
                ops.append(self.ops[0][f, rr : rr + p, s : s + w])
                strips.append(image[s : s + w, cc : cc + p])
                targets.append(image[rr : rr + p, cc : cc + p])
            else:
                s, w = self._start(cc, 1), self.windows[1]
                ops.append(self.ops[1][f, cc : cc + p, s : s + w])
                strips.append(image[rr : rr + p, s : s + w].T)
                targets.append(image[rr : rr + p, cc : cc + p].T)
        inputs = torch.empty((count, p, p), device=dev)
        for j in (0, 1):
            if ops[j::2]:
                inputs[j::2] = torch.bmm(torch.stack(ops[j::2]), torch.stack(strips[j::2]))
        targets = torch.stack(targets)
        inputs = torch.maximum(torch.minimum(inputs, self.hi[k][:, None, None]), self.lo[k][:, None, None])
        if self.noise is not None:
            inputs = self.noise.add(inputs, phase, r, c, rng)
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


def _evaluate(
    model: nn.Module,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    loss_fn,
    device,
    precision: str | None = None,
) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), autocast(device, precision):
        for inp, tgt in data:
            out = model(inp.to(device)).float()
            total += float(loss_fn(out, tgt.to(device), reduction="sum"))
            count += tgt.numel()
    model.train()
    return total / max(count, 1)


def _training_data(
    images_hu, pixel_spacing_mm, thickness_mm, spacing_mm, profile, cfg: TrainingConfig, norm, device, rng
) -> tuple[PatchSampler, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The training patch sampler and the fixed validation patches (from held-out images)."""
    images = norm.forward(torch.as_tensor(np.asarray(images_hu, dtype=np.float32)))
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
    common["noise"] = _training_noise(
        cfg, images.shape, pixel_spacing_mm, thickness_mm, spacing_mm, profile, norm, images.device
    )
    sampler = PatchSampler(images[train_idx], **common, intensity_scale=cfg.intensity_scale)
    val_sampler = PatchSampler(images[val_idx], **common)
    val_rng = np.random.default_rng(cfg.seed + 7919)
    val_data = []
    remaining = cfg.validation_patches
    while remaining > 0:
        chunk = min(32, remaining)
        val_data.append(val_sampler.sample(chunk, val_rng, augment=False))
        remaining -= chunk
    return sampler, val_data


def _training_noise(
    cfg: TrainingConfig, shape, pixel_spacing_mm, thickness_mm, spacing_mm, profile, norm, device
):
    """The thick-slice noise both samplers add to their inputs (None when ``cfg.noise_sigma_hu`` is 0)."""
    if cfg.noise_sigma_hu <= 0:
        return None
    from sr4zct.method.noise import TrainingNoise

    return TrainingNoise(
        cfg.noise_sigma_hu / norm.scale, cfg.noise_correlation, sizes=(shape[1], shape[2]),
        pixel_spacing_mm=pixel_spacing_mm, thickness_mm=thickness_mm, spacing_mm=spacing_mm, profile=profile,
        phases_mm=[spacing_mm * k / cfg.n_phases for k in range(cfg.n_phases)], patch_px=cfg.patch_px,
        device=device,
    )  # fmt: skip


class _CosineSchedule:
    """Learning rate: linear warm-up, then cosine decay to 2 % over the planned steps. The plan is the step
    budget, shortened (only) when a time limit binds; the schedule never goes back up when it grows again."""

    def __init__(self, cfg: TrainingConfig):
        self.base_lr = cfg.lr
        self.steps = cfg.steps
        self.planned = cfg.steps
        self.warmup = max(1, min(100, cfg.steps // 20))
        self.progress = 0.0

    def replan(self, step: int, budget: TimeBudget, now: float) -> None:
        # steps that fit in the time left at the current rate; the schedule depends on time only when this is
        # below the step budget, so runs that are not time-bound stay reproducible. Re-estimated every time
        # (a slow start, e.g. a busy machine, must not end training early).
        if step >= 20 and step % 50 == 20:
            fit = step + int(0.97 * (budget.steps_that_fit(step, now) - step))
            self.planned = max(step + 1, min(self.steps, fit))

    def lr(self, step: int) -> float:
        # past 1.0 training goes on at the final learning rate until the time limit
        self.progress = max(self.progress, min(1.0, step / self.planned))
        cosine = 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * self.progress))
        return self.base_lr * min(1.0, (step + 1) / self.warmup) * cosine


class _BestCheckpoint:
    """Validates the model, keeps the best weights and the validation history, and hands each result to
    ``on_validation``."""

    def __init__(
        self, model, val_data, loss_fn, device, on_validation, t0: float, precision: str | None = None
    ):
        self.model, self.val_data, self.loss_fn, self.device = model, val_data, loss_fn, device
        self.on_validation, self.t0, self.precision = on_validation, t0, precision
        self.identity_loss = _evaluate(model, val_data, loss_fn, device, precision)
        self.loss, self.state, self.step = self.identity_loss, copy.deepcopy(model.state_dict()), 0
        self.history: list[dict[str, float]] = []

    def publish(self, step: int) -> None:
        if self.on_validation is not None:
            elapsed = time.monotonic() - self.t0
            self.on_validation(
                Checkpoint(step, self.step, self.loss, self.identity_loss, self.state, elapsed)
            )

    def finish(self, step: int, train_loss: float | None, lr: float) -> None:
        """Validate the last step unless it was just validated (or nothing was trained)."""
        if step > 0 and (not self.history or self.history[-1]["step"] != step):
            self.validate(step, train_loss or 0.0, lr)

    def validate(self, step: int, train_loss: float, lr: float, timer: InferenceTimer | None = None) -> None:
        val = _evaluate(self.model, self.val_data, self.loss_fn, self.device, self.precision)
        if timer is not None:
            timer.maybe_measure(self.model)
        self.history.append({"step": step, "train_loss": train_loss, "val_loss": val, "lr": lr})
        if val < self.loss:
            self.loss, self.step = val, step
            self.state = copy.deepcopy(self.model.state_dict())
        self.publish(step)


class _Optimiser:
    """Adam steps on random training patches, the forward pass in ``precision`` (weights, optimiser state and
    loss in fp32); halves the batch on an out-of-memory error."""

    def __init__(
        self,
        model,
        cfg: TrainingConfig,
        sampler: PatchSampler,
        loss_fn,
        device,
        rng,
        messages,
        precision=None,
    ):
        self.model, self.sampler, self.loss_fn, self.device, self.rng = model, sampler, loss_fn, device, rng
        self.optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
        self.precision = precision
        self.scaler = grad_scaler(device, precision)
        self.batch = int(cfg.batch)
        self.messages = messages

    def step(self, lr: float) -> float | None:
        """One step at learning rate ``lr``; its loss, or None when the batch was reduced instead."""
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        with single_thread():
            inp, tgt = self.sampler.sample(self.batch, self.rng)
        try:
            return float(self._step(inp, tgt).detach())
        except RuntimeError as exc:
            if not is_out_of_memory(exc) or self.batch <= 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.batch = max(1, self.batch // 2)
            self.messages.append(f"Out of memory on {self.device}; training batch reduced to {self.batch}.")
            return None

    def _step(self, inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        inp, tgt = inp.to(self.device, non_blocking=True), tgt.to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            out = self.model(inp)
        loss = self.loss_fn(out.float(), tgt)
        self.optimiser.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
        else:
            loss.backward()
            self.optimiser.step()
        return loss


def _stop_reason(
    step: int, cfg: TrainingConfig, should_finish, budget, schedule: _CosineSchedule
) -> str | None:
    """Why training ends before ``step``: ``"finish"`` (a request) or ``"time"`` (the limit); None to go on."""
    if should_finish is not None and should_finish():
        return "finish"
    if budget is not None:
        now = budget.clock()
        if budget.training_over(now):
            return "time"
        schedule.replan(step, budget, now)
    return None


_STOP_MESSAGES = {
    "finish": "Training was finished early on request after {step} of {steps} steps.",
    "time": "Training stopped by the time limit after {step} of {steps} steps.",
}


def _report_step(
    reporter: ProgressReporter | None, step: int, cfg: TrainingConfig, planned: int, loss
) -> None:
    if reporter is None:
        return
    if step % 5 == 0 or step == cfg.steps:
        reporter.report("train", step, planned, loss=loss)
    else:
        reporter.check_cancel()


def _time_budget(cfg: TrainingConfig, budget, inference_timer, t0: float, model) -> TimeBudget | None:
    """The given budget, or one from ``cfg.max_seconds`` (None without a time limit), its inference timer
    timed on ``model`` unless the caller timed it already."""
    if budget is None and cfg.max_seconds is not None:
        budget = TimeBudget(
            cfg.max_seconds, start=t0, timer=inference_timer, write_s=0.0,
            min_train_fraction=cfg.min_seconds / cfg.max_seconds if cfg.max_seconds > 0 else 0.0,
        )  # fmt: skip
    if budget is not None and budget.timer is not None and budget.timer.timings == 0:
        budget.timer.measure(model)
    return budget


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
    precision: str | None = None,
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
        timer estimates for inference, re-timing the network as it validates (:mod:`sr4zct.method.budget`).
    budget : the run's time budget: training stops at its deadline (:meth:`TimeBudget.training_over`) and
        re-times its inference timer; ``config.max_seconds`` and ``inference_timer`` are then not used.
    on_validation : called with a :class:`Checkpoint` after every validation (the live preview).
    should_finish : polled every step; True ends training at once with the best checkpoint so far (the
        one the last :class:`Checkpoint` carried), without a further validation.
    precision : ``"fp32"``, ``"bf16"`` or ``"fp16"``: the forward passes' autocast type (weights and loss stay
        fp32); None: the device's default (:func:`sr4zct.system.devices.amp_dtype`).

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
    sampler, val_data = _training_data(
        images_hu, pixel_spacing_mm, thickness_mm, spacing_mm, profile, cfg, norm, device, rng
    )
    # channels_last: oneDNN (CPU) and cuDNN pick their fastest convolution kernels for it
    model = build_network(cfg.network, cfg.network_config).to(device, memory_format=torch.channels_last)
    messages: list[str] = []
    optimiser = _Optimiser(model, cfg, sampler, loss_fn, device, rng, messages, precision)
    best = _BestCheckpoint(model, val_data, loss_fn, device, on_validation, t0, precision)
    budget = _time_budget(cfg, budget, inference_timer, t0, model)
    timer = getattr(budget, "timer", None)
    best.publish(0)  # the starting point: linear interpolation

    schedule = _CosineSchedule(cfg)
    step, running, lr, stop = 0, None, cfg.lr, None
    if budget is not None:
        budget.begin_training(cfg.steps)
    model.train()
    while step < cfg.steps:
        stop = _stop_reason(step, cfg, should_finish, budget, schedule)
        if stop is not None:
            messages.append(_STOP_MESSAGES[stop].format(step=step, steps=cfg.steps))
            break
        lr = schedule.lr(step)
        value = optimiser.step(lr)
        if value is None:
            continue
        step += 1
        if budget is not None:
            budget.train_step(step, budget.clock())
        running = value if running is None else 0.95 * running + 0.05 * value
        if step % cfg.validate_every == 0 or step == cfg.steps:
            best.validate(step, running, lr, timer)
        _report_step(reporter, step, cfg, schedule.planned, running)
    finished_early = stop == "finish"
    if not finished_early:  # a finish request ends with the best checkpoint so far, without a validation
        best.finish(step, running, lr)
    return _result(model, best, step, messages, finished_early, t0)


def _result(model, best: _BestCheckpoint, steps: int, messages, finished_early: bool, t0: float):
    """The best checkpoint loaded into ``model`` (evaluation mode) and the run's figures."""
    used_identity = best.step == 0
    if used_identity:
        text = (
            f"Training did not improve on linear interpolation after {steps} steps "
            "(validation loss not lower); the result equals linear interpolation."
        )
        messages.append(text)
        _warnings.warn(text, RuntimeWarning, stacklevel=3)
    model.load_state_dict(best.state)
    model.eval()
    return TrainingResult(
        model=model,
        steps=steps,
        seconds=time.monotonic() - t0,
        best_step=best.step,
        validation_loss=best.loss,
        identity_loss=best.identity_loss,
        used_identity=used_identity,
        history=best.history,
        warnings=messages,
        finished_early=finished_early,
    )
