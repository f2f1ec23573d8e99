"""How ``modise demo`` fits its wall-clock budget: pure functions of measured rates (no clock, no torch).

The demo trains its recipe's first steps, measures the step rate (after warm-up) and the cost of one
held-out image, and asks :func:`plan_demo` what to run. Levers, cheapest in quality first:

1. the held-out evaluation set: half of it, at least :data:`MIN_EVAL_IMAGES` (a noisier estimate of
   the same model; the run goes on without restarting);
2. the phantoms per step: batch :data:`SMALL_BATCH` instead of the recipe's (restarts training);
3. the steps: as many as fit (restarts training: the lr schedule depends on them). Fewer than
   :data:`MIN_MEANINGFUL_STEPS` give no meaningful result (on the phantoms PQ stays near 0 that
   early); the demo labels such a run so.

The image size is no lever: the diffusion backbone resizes every window to its model's native size
(128 px for the tiny model), so a smaller crop saves little of a step (the frozen UNet's share stays)
and costs quality.
A step's cost is taken proportional to the phantoms per step; anything the plan gets wrong, the
demo's guard catches by stopping training when only evaluation's share of the budget is left
(:func:`eval_reserve`: scaled up by how much slower the recent steps are than the plan expected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_EVAL_IMAGES = 20
MIN_EVAL_FLOOR = 5  # only when not even one step fits with MIN_EVAL_IMAGES (a machine far too busy)
SMALL_BATCH = 2
MIN_MEANINGFUL_STEPS = 400
PROBE_SHARE = 0.25  # plan early (fewer steps measured) once the probe has used this share of the budget
PLAN_FILL = 0.9  # the plan aims at 90 % of the budget: a busy machine's load changes as it runs
REPORT_IMAGES = 4  # overlays drawn in the report (one inference each)
REPORT_FIXED_IMAGES = 30  # model save + reload, FROC, figures: charged as inferences so it scales with the load (measured: ~45)


@dataclass(frozen=True)
class Rates:
    """What the demo measured when it planned (seconds of wall clock, on this machine now).

    ``elapsed_s``: since the demo's first line; ``step_s``: one training step at the recipe's settings;
    ``infer_s``: one held-out image through the model at the recipe's size; ``restart_s``: starting a
    training run up to its first measured step (model build, Lightning, warm-up steps);
    ``steps_done``: the recipe run's steps so far."""

    elapsed_s: float
    step_s: float
    infer_s: float
    restart_s: float
    steps_done: int


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: the recipe's settings or smaller ones, and whether training restarts."""

    batch_size: int
    steps: int
    eval_images: int
    restart: bool
    changes: tuple[str, ...] = field(default_factory=tuple)  # what differs from the recipe, in words
    predicted_s: float = 0.0  # end to end, from the demo's first line
    full_minutes: float = 0.0  # what the whole recipe would need on this machine now (for the hint)
    eval_s: float = 0.0  # the evaluation and report this plan expects
    step_s: float = 0.0  # the seconds a step of this plan should take (the guard compares the live rate)

    @property
    def meaningful(self) -> bool:
        return self.steps >= MIN_MEANINGFUL_STEPS


def eval_seconds(infer_s: float, eval_images: int, passes: int) -> float:
    """Held-out evaluation (``passes`` per image; the demo scores once) and the report."""
    return infer_s * (eval_images * passes + REPORT_IMAGES + REPORT_FIXED_IMAGES)


def plan_demo(recipe: dict, budget_s: float, rates: Rates, n_val: int, passes: int = 1) -> DemoPlan:
    """The plan that ends within ``budget_s`` (aiming at :data:`PLAN_FILL` of it) losing least quality.

    ``recipe``: ``batch_size``, ``steps``; ``n_val``: held-out images of the fold."""
    batch0, steps0 = recipe["batch_size"], recipe["steps"]
    target = budget_s * PLAN_FILL
    r = rates

    def step_s(batch: int) -> float:
        return r.step_s * batch / batch0

    def end(batch: int, steps: int, n_eval: int, restart: bool) -> float:
        left = steps if restart else steps - r.steps_done
        return (r.elapsed_s + (r.restart_s if restart else 0.0) + left * step_s(batch)
                + eval_seconds(r.infer_s, n_eval, passes))

    full = r.elapsed_s + (steps0 - r.steps_done) * r.step_s + eval_seconds(r.infer_s, n_val, passes)
    full_min = math.ceil(full / 60 / PLAN_FILL)
    small_eval = min(n_val, max(MIN_EVAL_IMAGES, n_val // 2))
    batch1 = min(batch0, SMALL_BATCH)
    ev = (f"evaluation on {small_eval} of the {n_val} held-out phantoms",) if small_eval < n_val else ()
    bt = (f"batch {batch1} instead of {batch0}",) if batch1 < batch0 else ()
    levels = [  # (batch, eval images, restart, changes): cheapest loss of quality first
        (batch0, n_val, False, ()),
        (batch0, small_eval, False, ev),
        (batch1, small_eval, True, ev + bt),
    ]
    seen = set()
    for batch, n_eval, restart, changes in levels:
        if (batch, n_eval) in seen:  # a lever the recipe already sits at (tiny test runs)
            continue
        seen.add((batch, n_eval))
        t = end(batch, steps0, n_eval, restart)
        if t <= target:
            return DemoPlan(batch, steps0, n_eval, restart, changes, t, full_min, eval_seconds(r.infer_s, n_eval, passes),
                            step_s(batch))
    # the last lever: as many steps as fit at the smallest settings (at least one)
    batch, n_eval, _, changes = levels[-1]
    steps = max(1, min(steps0, int((target - end(batch, 0, n_eval, True)) / step_s(batch))))
    if end(batch, steps, n_eval, True) > target:  # not even one step fits: evaluate on fewer still
        n_eval = max(min(n_val, MIN_EVAL_FLOOR), min(n_eval, int((target - end(batch, 1, 0, True)) / (r.infer_s * passes))))
        ev = (f"evaluation on {n_eval} of the {n_val} held-out phantoms",) if n_eval < n_val else ()
        changes = ev + bt
    changes = (*changes, f"{steps} step{'s' if steps != 1 else ''} instead of {steps0}")
    return DemoPlan(batch, steps, n_eval, True, changes, end(batch, steps, n_eval, True), full_min,
                    eval_seconds(r.infer_s, n_eval, passes), step_s(batch))


def eval_reserve(plan: DemoPlan, recent_step_s: float | None) -> float:
    """Seconds to keep for evaluation and the report: the plan's, scaled up when the steps now take longer
    than the plan expected (the machine got busier since it measured; evaluation will slow down alike)."""
    if not recent_step_s or not plan.step_s:
        return plan.eval_s
    return plan.eval_s * max(1.0, recent_step_s / plan.step_s)


class RateMeter:
    """Seconds per step over ``window`` steps after ``skip`` warm-up steps, from ``clock`` (a fake in tests).

    Call :meth:`step_end` after each step with the global step; it returns the rate once, when the
    window is complete (or, with ``now``, over the steps measured so far: a very slow machine must not
    spend its budget measuring), else ``None``."""

    def __init__(self, clock, skip: int = 3, window: int = 5) -> None:
        self.clock, self.skip, self.window = clock, skip, window
        self._t0: float | None = None
        self.step_s: float | None = None

    def step_end(self, step: int, now: bool = False) -> float | None:
        if step == self.skip:
            self._t0 = self.clock()
        elif self._t0 is not None and self.step_s is None and (step == self.skip + self.window or now):
            self.step_s = (self.clock() - self._t0) / (step - self.skip)
            return self.step_s
        return None
