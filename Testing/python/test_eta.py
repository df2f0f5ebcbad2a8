"""The ETA and the whole-job fraction follow the run's time budget (injected clocks, no wall-clock windows)."""

from __future__ import annotations

import math

import pytest
from sr4zct.method.budget import InferenceTimer, TimeBudget
from sr4zct.system.progress import ProgressReporter


class Clock:
    def __init__(self, t: float = 500.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FixedTimer(InferenceTimer):
    def __init__(self, seconds: float):
        super().__init__(1, (1, 8, 8), "cpu")
        self.fixed_s = seconds

    @property
    def seconds(self) -> float:
        return self.fixed_s


def _run(clock, budget, reporter, *, prepare_s, steps, step_s, infer_s, infer_reports=50, write_s=3.0):
    """Drive ``reporter`` as the pipeline does and return (time, eta) of every report and the end time."""
    samples = []

    def report(stage, step, total):
        reporter.report(stage, step, total)
        samples.append((clock.t, reporter_events[-1].eta_s, reporter_events[-1].fraction))

    reporter_events = reporter.events
    report("prepare", 0, 1)
    clock.t += prepare_s
    report("prepare", 1, 1)
    budget.begin_training(steps)
    step = 0
    while step < steps and not budget.training_over():
        clock.t += step_s
        step += 1
        budget.train_step(step, clock.t)
        if step % 5 == 0:
            report("train", step, steps)
    report("infer", 0, infer_reports)
    for k in range(1, infer_reports + 1):
        clock.t += infer_s / infer_reports
        report("infer", k, infer_reports)
    report("write", 0, 1)
    clock.t += write_s
    report("write", 1, 1)
    return samples, clock.t


class Recorder(ProgressReporter):
    def __init__(self, clock):
        self.events = []
        super().__init__(self.events.append, clock=clock)


def _errors(samples, t_start, t_end, *, skip=0.1):
    """Relative ETA errors of the samples between ``skip`` and ``1 - skip`` of the run."""
    total = t_end - t_start
    out = []
    for t, eta, _ in samples:
        if eta is None or not (t_start + skip * total <= t <= t_end - skip * total):
            continue
        out.append(abs(eta - (t_end - t)) / (t_end - t))
    return out


def test_time_bound_training_eta_is_deadline_plus_inference_plus_write():
    clock = Clock()
    budget = TimeBudget(600.0, start=clock(), timer=FixedTimer(120.0), write_s=6.0, clock=clock)
    budget.begin_training(100_000)
    for step in range(1, 201):
        clock.t += 0.5
        budget.train_step(step, clock.t)
    deadline = budget.training_deadline()
    assert deadline == 500.0 + 600.0 - 120.0 - 6.0
    assert budget.eta_s("train", 200, 100_000) == pytest.approx((deadline - clock.t) + 120.0 + 6.0)


def test_step_bound_training_eta_counts_the_remaining_steps():
    clock = Clock()
    budget = TimeBudget(3600.0, start=clock(), timer=FixedTimer(20.0), write_s=5.0, clock=clock)
    budget.begin_training(1000)
    for step in range(1, 401):
        clock.t += 0.25  # 4 steps/s: 1000 steps end long before the deadline
        budget.train_step(step, clock.t)
    assert budget.eta_s("train", 400, 1000) == pytest.approx(600 * 0.25 + 20.0 + 5.0, rel=1e-3)


def test_inference_eta_moves_from_the_plan_to_the_measured_progress():
    clock = Clock()
    budget = TimeBudget(600.0, start=clock(), timer=FixedTimer(100.0), write_s=5.0, clock=clock)
    assert budget.eta_s("infer", 0, 100) == pytest.approx(105.0)  # the plan
    clock.t += 30.0  # inference runs slower than planned: 30 s for the first 20 %
    mixed = budget.eta_s("infer", 20, 100)
    assert 80.0 + 5.0 < mixed < 120.0 + 5.0  # half plan, half measurement
    clock.t += 30.0  # 40 % after 60 s
    assert budget.eta_s("infer", 40, 100) == pytest.approx(90.0 + 5.0)  # measured only
    assert budget.eta_s("write", 0, 1) == pytest.approx(5.0)
    clock.t += 2.0
    assert budget.eta_s("write", 0, 1) == pytest.approx(3.0)
    assert budget.eta_s("write", 1, 1) == 0.0
    # with the output's size, writing counts at its rate (within the reserve)
    small = TimeBudget(600.0, start=0.0, write_s=6.0, output_voxels=60_000_000, clock=clock)
    assert small.write_s == 6.0 and small.write_eta_s == pytest.approx(1.0)
    assert TimeBudget(600.0, start=0.0, write_s=6.0, output_voxels=10**10, clock=clock).write_eta_s == 6.0


def test_no_eta_before_training_starts():
    clock = Clock()
    budget = TimeBudget(600.0, start=clock(), timer=FixedTimer(100.0), clock=clock)
    assert budget.eta_s("prepare", 0, 1) is None
    assert budget.eta_s("train", 5, 100) is None  # training has not begun
    assert TimeBudget(60.0, start=0.0, timer=InferenceTimer(10, (1, 4, 4), "cpu")).inference_s == 0.0


L291_VOXELS = 922 * 512 * 512
VHM_VOXELS = 245 * 512 * 512


@pytest.mark.parametrize(
    ("limit_s", "infer_planned_s", "infer_actual_s", "steps", "step_s", "voxels", "write_s"),
    [
        (300.0, 117.0, 117.0, 3000, 0.06, L291_VOXELS, 4.0),  # L291 fast, time-bound
        (300.0, 117.0, 140.0, 3000, 0.06, L291_VOXELS, 4.0),  # inference slower than planned
        (300.0, 17.0, 15.0, 3000, 0.058, VHM_VOXELS, 1.5),  # 5/2.5 fast, step-bound (3000 steps in 174 s)
        (2700.0, 138.0, 150.0, 40000, 0.12, VHM_VOXELS, 1.5),  # 5/2.5 best, time-bound
    ],
)
def test_eta_holds_within_20_percent_after_the_first_tenth(
    limit_s, infer_planned_s, infer_actual_s, steps, step_s, voxels, write_s
):
    clock = Clock()
    reporter = Recorder(clock)
    budget = TimeBudget(
        limit_s, start=clock(), timer=FixedTimer(infer_planned_s), output_voxels=voxels, clock=clock
    )
    reporter.plan = budget
    t_start = clock.t
    samples, t_end = _run(
        clock, budget, reporter, prepare_s=8.0, steps=steps, step_s=step_s, infer_s=infer_actual_s,
        write_s=write_s,
    )  # fmt: skip
    errors = _errors(samples, t_start, t_end)
    assert errors and max(errors) <= 0.20
    fractions = [f for _, _, f in samples]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the bar never goes back
    assert t_end - t_start <= limit_s + max(0.0, infer_actual_s - infer_planned_s) + 1e-6


def test_the_fraction_follows_elapsed_over_elapsed_plus_eta():
    clock = Clock()
    reporter = Recorder(clock)
    budget = TimeBudget(100.0, start=clock(), timer=FixedTimer(20.0), write_s=5.0, clock=clock)
    reporter.plan = budget
    budget.begin_training(10**6)
    clock.t += 25.0
    reporter.report("train", 100, 10**6)
    event = reporter.events[-1]
    assert event.eta_s == pytest.approx(75.0)  # (75 - 25) to the deadline + 20 + 5
    assert event.fraction == pytest.approx(25.0 / 100.0)
    assert math.isclose(event.elapsed_s, 25.0)
