"""``modise demo``'s time plan: pure functions of measured rates, driven by a fake clock (no training)."""

from __future__ import annotations

import math

import pytest

from modise.engine.demo_plan import (
    MIN_EVAL_IMAGES, MIN_MEANINGFUL_STEPS, PLAN_FILL, SMALL_BATCH, Rates, RateMeter, eval_seconds, plan_demo,
)

RECIPE = {"batch_size": 4, "steps": 1350}
N_VAL, PASSES = 40, 2


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def measured(step_s: float, infer_s: float, elapsed_s: float = 20.0) -> Rates:
    return Rates(elapsed_s=elapsed_s, step_s=step_s, infer_s=infer_s, restart_s=8.0, steps_done=8)


def test_rate_meter_skips_warm_up_and_measures_once():
    clock = FakeClock()
    meter = RateMeter(clock, skip=3, window=5)
    rates = []
    for step in range(1, 12):
        clock.t += 10.0 if step <= 3 else 0.4  # slow warm-up steps are not the rate
        rates.append(meter.step_end(step))
    assert [r for r in rates if r is not None] == [pytest.approx(0.4)]
    assert rates.index(pytest.approx(0.4)) == 7  # known after step 3 + 5
    assert meter.step_s == pytest.approx(0.4)


@pytest.mark.parametrize("step_s", [0.364, 0.41])
def test_idle_machine_keeps_the_recipe(step_s):
    """The shipped demo on an idle 2-core CPU (README: 492 s for 1350 steps, 0.364 s a step; and 13 % slower):
    the default budget does not bind, so the run and its numbers are the recipe's."""
    from modise.engine.demo import DEMO_MINUTES

    plan = plan_demo(RECIPE, DEMO_MINUTES * 60, measured(step_s, 0.15, elapsed_s=25.0), N_VAL, PASSES)
    assert (plan.batch_size, plan.steps, plan.eval_images) == (4, 1350, N_VAL)
    assert not plan.restart and plan.changes == () and plan.meaningful


def test_slightly_busy_machine_evaluates_fewer_phantoms_without_restarting():
    step_s = (600 * PLAN_FILL - 20 - eval_seconds(0.5, MIN_EVAL_IMAGES, PASSES)) / (1350 - 8) - 1e-3
    plan = plan_demo(RECIPE, 600, measured(step_s, 0.5), N_VAL, PASSES)
    assert not plan.restart and plan.steps == 1350 and plan.batch_size == 4
    assert plan.eval_images == MIN_EVAL_IMAGES == N_VAL // 2
    assert plan.changes == ("evaluation on 20 of the 40 held-out phantoms",)


def test_the_order_batch_then_steps():
    plans = [plan_demo(RECIPE, 600, measured(step_s, 0.3), N_VAL, PASSES) for step_s in (0.7, 2.0)]
    assert all(p.restart and p.predicted_s <= 600 * PLAN_FILL + 1e-6 for p in plans)
    assert (plans[0].batch_size, plans[0].steps) == (SMALL_BATCH, 1350)
    assert plans[0].changes == ("evaluation on 20 of the 40 held-out phantoms", "batch 2 instead of 4")
    assert plans[1].batch_size == SMALL_BATCH and plans[1].steps < 1350
    assert plans[1].changes[-1] == f"{plans[1].steps} steps instead of 1350"


def test_issue_31_busy_machine_fits_four_minutes_and_says_it_is_not_meaningful():
    """7.5 s a step (the issue's busy 2-core machine), --minutes 4: the plan ends in time, and labels the result."""
    rates = measured(7.5, 0.8, elapsed_s=90.0)  # inference: about half a training step per image
    plan = plan_demo(RECIPE, 240, rates, N_VAL, PASSES)
    assert plan.predicted_s <= 240 * PLAN_FILL + 1e-6
    small_step = 7.5 * SMALL_BATCH / 4
    assert plan.steps == int((240 * PLAN_FILL - (plan.predicted_s - plan.steps * small_step)) / small_step)
    assert not plan.meaningful and plan.steps < MIN_MEANINGFUL_STEPS
    assert plan.full_minutes >= 1350 * 7.5 / 60  # the hint's --minutes would run the whole recipe


def test_a_spent_budget_still_trains_one_step():
    plan = plan_demo(RECIPE, 60, measured(30.0, 5.0, elapsed_s=70.0), N_VAL, PASSES)
    assert plan.steps == 1 and not plan.meaningful


def test_eval_cost_scales_with_images_and_passes():
    assert eval_seconds(0.5, 40, 2) > eval_seconds(0.5, 20, 2) > eval_seconds(0.5, 20, 1) > 0
    assert eval_seconds(1.0, 40, 2) == pytest.approx(2 * eval_seconds(0.5, 40, 2))  # measured cost, not a constant


def test_a_small_recipe_skips_levers_it_already_sits_at():
    """A recipe at batch 2 goes from the evaluation set straight to fewer steps."""
    plan = plan_demo({"batch_size": 2, "steps": 1000}, 120, measured(1.0, 0.1), N_VAL, 1)
    assert plan.batch_size == 2 and plan.steps < 1000
    assert not any("batch" in c for c in plan.changes)


def test_the_full_result_command_runs_the_whole_recipe():
    """The hint's --minutes covers the recipe at the measured rate; a recipe too short to mean anything
    points at the shipped one (its steps, scaled)."""
    from modise.engine.demo import DEMO_DEFAULTS, DEMO_MINUTES, DEMO_STEPS, _budget_record

    plan = plan_demo(RECIPE, 240, measured(7.5, 0.8, elapsed_s=90.0), N_VAL, PASSES)
    rec = _budget_record({**DEMO_DEFAULTS}, 4, plan, None, {"train": {"global_step": plan.steps}})
    assert rec["full_command"] == f"modise demo --minutes {plan.full_minutes:g}" and not rec["meaningful"]
    short = plan_demo({"batch_size": 4, "steps": 135}, 600, measured(0.4, 0.1), N_VAL, PASSES)
    rec = _budget_record({**DEMO_DEFAULTS, "steps": 135}, 10, short, None, {"train": {"global_step": 135}})
    assert rec["full_command"] == f"modise demo --minutes {max(math.ceil(short.full_minutes * DEMO_STEPS / 135), DEMO_MINUTES):g}"


def test_the_guard_keeps_more_for_evaluation_when_the_machine_slows_down():
    from modise.engine.demo_plan import eval_reserve

    plan = plan_demo(RECIPE, 180, measured(1.36, 0.38, elapsed_s=39.0), N_VAL, PASSES)  # bench_demo_budget's 2nd run
    assert plan.step_s == pytest.approx(1.36 * plan.batch_size / 4)
    assert eval_reserve(plan, None) == eval_reserve(plan, plan.step_s / 2) == plan.eval_s  # never less than planned
    assert eval_reserve(plan, 4 * plan.step_s) == pytest.approx(4 * plan.eval_s)  # steps 4x slower: evaluation too


def test_rate_meter_measures_early_when_told():
    clock = FakeClock()
    meter = RateMeter(clock, skip=3, window=5)
    for step in (1, 2, 3):
        clock.t += 20.0
        assert meter.step_end(step) is None
    clock.t += 18.0
    assert meter.step_end(4, now=True) == pytest.approx(18.0)  # a slow machine plans after one measured step


def test_a_far_too_busy_machine_evaluates_on_fewer_phantoms_still():
    """bench_demo_budget's 3rd run (18 s a step, 5 s an inference, 3 min): one step, a smaller evaluation."""
    from modise.engine.demo_plan import MIN_EVAL_FLOOR

    plan = plan_demo(RECIPE, 180, measured(18.5, 5.2, elapsed_s=80.0), N_VAL, PASSES)
    assert plan.steps == 1 and MIN_EVAL_FLOOR <= plan.eval_images < MIN_EVAL_IMAGES
    assert plan.changes[0] == f"evaluation on {plan.eval_images} of the 40 held-out phantoms"
