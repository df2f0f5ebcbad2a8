"""Time budget: the inference timer, the workload it is given, and training that leaves inference its time."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from sr4zct.method.body import body_box
from sr4zct.method.budget import InferenceTimer, TimeBudget
from sr4zct.method.inference import _tile_plan, enhance_array, inference_workload
from sr4zct.method.training import TrainingConfig, train_model
from sr4zct.system.progress import ProgressReporter
from test_training import SMALL_NET, synthetic_ct
from torch import nn


class SlowIdentity(nn.Module):
    """Identity network whose forward pass sleeps ``delay_s``: a network of known speed."""

    halo_px = 4
    multiple_px = 1

    def __init__(self, delay_s: float):
        super().__init__()
        self.delay_s = delay_s
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay_s)
        return x * self.scale


class CountingIdentity(nn.Module):
    """Identity network that counts the pixels it is given (halo and grid as a real network's)."""

    def __init__(self, halo_px: int = 6, multiple_px: int = 2):
        super().__init__()
        self.halo_px = halo_px
        self.multiple_px = multiple_px
        self.pixels = 0
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.pixels += x.numel()
        self.shapes.append(tuple(x.shape))
        return x


def test_timer_estimate_follows_the_measured_rate():
    timer = InferenceTimer(pixels=10 * 64 * 64, pass_shape=(1, 64, 64), device="cpu", margin=1.0)
    assert timer.seconds == math.inf  # nothing measured yet
    model = SlowIdentity(0.02)
    seconds = timer.measure(model)
    assert timer.timings == 3  # a warm-up pass and two timed ones
    # 10 passes' worth of pixels at >= 0.02 s a pass (sleep never returns early; scheduling only adds)
    assert 0.2 <= seconds < 0.6
    assert model.training  # mode restored


def test_timer_counts_every_pass_per_image():
    one = InferenceTimer(64 * 64, (1, 64, 64), "cpu", margin=1.0)
    four = InferenceTimer(64 * 64, (1, 64, 64), "cpu", margin=1.0, passes=4)
    one.best_rate_px_s = four.best_rate_px_s = 1e5  # as if measured
    assert four.seconds == pytest.approx(4 * one.seconds)


def test_timer_keeps_the_fastest_rate():
    timer = InferenceTimer(pixels=64 * 64, pass_shape=(1, 64, 64), device="cpu", margin=1.0)
    fast = timer.measure(SlowIdentity(0.01))
    slow = timer.measure(SlowIdentity(0.05))  # a busy moment must not make the estimate worse
    assert slow == fast
    timer = InferenceTimer(pixels=64 * 64, pass_shape=(1, 64, 64), device="cpu", margin=1.0)
    first = timer.measure(SlowIdentity(0.05))
    assert timer.measure(SlowIdentity(0.01)) < 0.5 * first  # a calmer moment makes it better


def test_maybe_measure_waits_for_the_interval():
    timer = InferenceTimer(pixels=64 * 64, pass_shape=(1, 64, 64), device="cpu", remeasure_s=60.0)
    model = SlowIdentity(0.0)
    timer.measure(model)
    n = timer.timings
    timer.maybe_measure(model)
    assert timer.timings == n  # too soon
    timer.remeasure_s = 0.0
    time.sleep(0.05)  # > 20 passes of this network
    timer.maybe_measure(model)
    assert timer.timings == n + 1


def test_nothing_to_process_needs_no_time():
    assert InferenceTimer(0, (1, 8, 8), "cpu").seconds == 0.0
    with pytest.raises(ValueError):
        InferenceTimer(10, (0, 8, 8), "cpu")


@pytest.mark.parametrize("max_pixels", [10**7, 20 * 30, 900])
def test_workload_counts_exactly_the_pixels_inference_passes(max_pixels):
    rng = np.random.default_rng(3)
    vol = np.full((7, 40, 50), -1000.0, dtype=np.float32)
    vol[:, 5:33, 9:44] = rng.normal(0, 100, size=(7, 28, 35))
    positions = 2.5 * np.arange(7)
    model = CountingIdentity()
    n_out = len(np.arange(0.0, positions[-1] + 1e-9, 0.75))
    pixels, pass_shape = inference_workload(model, vol.shape, n_out, body_box(vol), max_pixels=max_pixels)
    enhance_array(
        model, vol, slice_positions_mm=positions, pixel_spacing_mm=(0.75, 0.75), max_pixels=max_pixels
    )
    assert pixels == model.pixels
    assert tuple(pass_shape) in {(s[0], s[2], s[3]) for s in model.shapes}


@pytest.mark.parametrize(
    ("height", "width", "max_pixels", "halo", "multiple"),
    [(922, 512, 262_144, 18, 2), (922, 548, 262_144, 18, 2), (30, 101, 1800, 16, 2), (101, 30, 1800, 7, 1),
     (300, 300, 10_000, 12, 4), (40, 7, 100, 4, 2)],
)  # fmt: skip
def test_tiles_partition_the_image_and_keep_the_halo(height, width, max_pixels, halo, multiple):
    tiles = _tile_plan(height, width, max_pixels=max_pixels, halo=halo, multiple=multiple)
    assert tiles
    covered = np.zeros((height, width), dtype=int)
    h = -(-halo // multiple) * multiple
    for t in tiles:
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert 0 <= t.ya <= t.y0 < t.y1 <= t.yb <= height and 0 <= t.xa <= t.x0 < t.x1 <= t.xb <= width
        assert t.ya % multiple == 0 and t.xa % multiple == 0  # the unshuffle phase is kept
        for inner, outer, edge in ((t.y0 - t.ya, t.ya, 0), (t.yb - t.y1, t.yb, height),
                                   (t.x0 - t.xa, t.xa, 0), (t.xb - t.x1, t.xb, width)):  # fmt: skip
            assert inner >= h or outer == edge  # a full halo, or the image's own border
    assert (covered == 1).all()
    if height * width > 4 * max_pixels:  # (tiny cases may not fit at all)
        assert max(t.pixels for t in tiles) <= max_pixels


def test_tiles_split_both_axes_when_that_passes_fewer_pixels():
    tiles = _tile_plan(922, 512, max_pixels=262_144, halo=18, multiple=2)
    assert sum(t.pixels for t in tiles) <= 1.05 * 922 * 512  # vertical strips: 14 % more
    assert max(t.pixels for t in tiles) <= 262_144
    assert _tile_plan(100, 100, max_pixels=10_000, halo=8, multiple=2) is None  # fits in one pass


class FakeClock:
    """Seconds that pass only when the test says so: each training step polls ``should_stop`` once, which
    advances this clock by ``step_s`` (a network of known speed on a machine of known load)."""

    def __init__(self, step_s: float = 1.0):
        self.t = 1000.0
        self.step_s = step_s

    def __call__(self) -> float:
        return self.t

    def tick(self) -> bool:
        self.t += self.step_s
        return False  # never cancel


def _train(budget: TimeBudget, clock: FakeClock, events=None):
    vol = synthetic_ct((12, 48, 48))
    config = TrainingConfig(steps=100_000, patch_px=32, batch=4, network_config=SMALL_NET, validate_every=20)
    reporter = ProgressReporter(events.append if events is not None else None, clock.tick, clock=clock)
    reporter.plan = budget
    return train_model(
        vol, pixel_spacing_mm=(0.7, 0.7), thickness_mm=3.0, spacing_mm=2.0, config=config, reporter=reporter,
        budget=budget,
    )  # fmt: skip


class FixedTimer(InferenceTimer):
    """An inference timer whose estimate is fixed (training's use of it is what is tested, not timing)."""

    def __init__(self, seconds: float):
        super().__init__(1, (1, 8, 8), "cpu")
        self.fixed_s = seconds
        self.calls = 0

    @property
    def seconds(self) -> float:
        return self.fixed_s

    def measure(self, model, repeats=2):
        self.calls += 1
        return self.fixed_s


def test_training_leaves_inference_and_writing_their_time():
    clock = FakeClock()
    timer = FixedTimer(30.0)
    budget = TimeBudget(100.0, start=clock(), timer=timer, write_s=5.0, clock=clock)
    assert budget.training_deadline() == clock() + 65.0  # 100 - 30 for inference - 5 for writing
    result = _train(budget, clock)
    assert timer.calls >= 1  # timed before training starts
    assert result.steps == 65  # one fake second per step until the deadline
    assert any("time limit" in w for w in result.warnings)
    assert not budget.over_limit()


def test_training_keeps_its_minimum_when_inference_would_eat_the_budget():
    clock = FakeClock()
    budget = TimeBudget(100.0, start=clock(), timer=FixedTimer(3600.0), clock=clock)
    result = _train(budget, clock)
    assert result.steps == 25  # a quarter of the limit
    assert budget.over_limit()


def test_a_faster_inference_estimate_moves_the_deadline_later():
    clock = FakeClock()
    timer = FixedTimer(50.0)
    budget = TimeBudget(100.0, start=clock(), timer=timer, write_s=0.0, clock=clock)
    budget.begin_training(1000)
    assert budget.training_deadline() == clock() + 50.0
    timer.fixed_s = 20.0  # re-timed on a calmer machine
    assert budget.training_deadline() == clock() + 80.0
    assert budget.steps_that_fit(0) == 1000  # no step rate yet: the step budget
    for step in range(5, 16):
        clock.t += 0.5
        budget.train_step(step, clock())
    assert budget.steps_that_fit(15) == 15 + int(2.0 * budget.training_left_s())  # 2 steps per second


def test_the_budget_keeps_back_one_percent_for_writing():
    assert TimeBudget(2700.0, start=0.0).write_s == 27.0
    assert TimeBudget(60.0, start=0.0).write_s == 5.0
    with pytest.raises(ValueError):
        TimeBudget(0.0)


def test_without_a_time_limit_the_timer_is_not_used():
    vol = synthetic_ct((8, 40, 40))
    timer = FixedTimer(3600.0)
    config = TrainingConfig(steps=3, patch_px=32, batch=2, network_config=SMALL_NET, validate_every=1)
    result = train_model(
        vol, pixel_spacing_mm=(0.7, 0.7), thickness_mm=3.0, spacing_mm=2.0, config=config,
        inference_timer=timer,
    )  # fmt: skip
    assert result.steps == 3 and timer.calls == 0


def test_training_does_not_time_again_what_the_caller_timed():
    from sr4zct.method.networks import build_network

    timer = InferenceTimer(48 * 48, (1, 48, 48), "cpu", remeasure_s=3600.0)
    timer.measure(build_network("default", SMALL_NET))
    n = timer.timings
    clock = FakeClock()
    result = _train(TimeBudget(40.0, start=clock(), timer=timer, write_s=0.0, clock=clock), clock)
    assert result.steps > 0
    assert timer.timings == n  # no second start-up timing; no re-timing within remeasure_s


def test_the_config_time_limit_still_works_without_a_budget():
    vol = synthetic_ct((8, 40, 40))
    config = TrainingConfig(
        steps=100_000, patch_px=32, batch=2, network_config=SMALL_NET, validate_every=10, max_seconds=1e-6
    )
    result = train_model(vol, pixel_spacing_mm=(0.7, 0.7), thickness_mm=3.0, spacing_mm=2.0, config=config)
    assert result.steps == 0 and any("time limit" in w for w in result.warnings)
