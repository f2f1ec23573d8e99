"""The demo's time keeper inside training: measures, plans (:mod:`modise.engine.demo_plan`), guards the budget.

Without a plan it measures the recipe run's first steps and one held-out inference, then either lets the
run go on (perhaps on a smaller evaluation set) or stops it at once for a restart with the plan's smaller
settings. With a plan (the restarted run) it only applies the evaluation set. Either way it stops training
when the rest of the budget is what evaluation and the report need.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Callable

import lightning as L

from .demo_plan import PROBE_SHARE, DemoPlan, RateMeter, Rates, eval_reserve, plan_demo


class BudgetKeeper(L.Callback):
    """``clock``: seconds (``time.perf_counter``); ``t0``: the demo's first line on that clock;
    ``train_called``: when ``train()`` was called (start-up cost of a restart)."""

    def __init__(self, clock: Callable[[], float], t0: float, budget_s: float, recipe: dict[str, Any], data: Path,
                 train_called: float, plan: DemoPlan | None = None) -> None:
        self.clock, self.t0, self.budget_s, self.recipe, self.data = clock, t0, budget_s, recipe, Path(data)
        self.train_called, self.plan = train_called, plan
        self.meter = RateMeter(clock)
        self.rates: Rates | None = None
        self.stopped_at: int | None = None  # stopped by the budget (not for a restart)
        self._val: list[int] = []
        self._stopped_to_restart = False
        self._last_t: float | None = None
        self._recent: deque[float] = deque(maxlen=5)  # the last steps' seconds: the live rate

    @property
    def restart(self) -> DemoPlan | None:
        """The plan to restart with, when this (recipe) run was stopped for it."""
        return self.plan if self._stopped_to_restart else None

    def on_train_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        self._val = list(dm.val_ids)
        if self.plan is not None:  # a restarted run: its evaluation set is decided
            dm.val_ids = self._val[: self.plan.eval_images]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, now = trainer.global_step, self.clock()
        if self._last_t is not None and step > self.meter.skip:  # warm-up steps are no rate
            self._recent.append(now - self._last_t)
        self._last_t = now
        if self.plan is None and self.meter.step_end(step, now=now - self.t0 > PROBE_SHARE * self.budget_s) is not None:
            self._plan(trainer, pl_module, step)
            self._last_t = self.clock()  # the inference timed in between is no step
            return
        if self.plan is None or self.stopped_at is not None:
            return
        recent = sorted(self._recent)[len(self._recent) // 2] if len(self._recent) >= 3 else None
        if now - self.t0 > self.budget_s - eval_reserve(self.plan, recent):
            self.stopped_at = step
            trainer.should_stop = True

    def _plan(self, trainer, pl_module, step: int) -> None:
        infer_s = time_inference(pl_module.model, self.data, self._val[0], self.clock) if self._val else 0.0
        self.rates = Rates(elapsed_s=self.clock() - self.t0, step_s=self.meter.step_s, infer_s=infer_s,
                           restart_s=self.meter._t0 - self.train_called, steps_done=step)
        self.plan = plan = plan_demo(self.recipe, self.budget_s, self.rates, len(self._val))  # one evaluation pass
        if plan.restart:  # stop now, skip the held-out evaluation: the demo starts over with the plan
            trainer.datamodule.val_ids = []
            trainer.should_stop = self._stopped_to_restart = True
        else:
            trainer.datamodule.val_ids = self._val[: plan.eval_images]


def time_inference(model, data: Path, image_id: int, clock: Callable[[], float]) -> float:
    """Seconds for one held-out image through ``model`` (as the evaluation runs it), leaving training as it
    was: the modules' train/eval modes and the random generators (so the run's numbers do not change)."""
    import random

    import numpy as np
    import torch

    from modise.data.dataset import PanopticDataset
    from modise.pipeline import ModisePipeline

    px = PanopticDataset(data, image_ids=[image_id])[0]["image"][0].numpy()
    modes = [(m, m.training) for m in model.modules()]
    py_state, np_state = random.getstate(), np.random.get_state()
    device = next(model.parameters()).device
    try:
        with torch.random.fork_rng(devices=[]):
            pipe = ModisePipeline(model, device=device)
            pipe([px])  # the first call's set-up, which the evaluation pays once as well
            t = clock()
            pipe([px])
            pipe([px])
            return (clock() - t) / 2
    finally:
        for m, training in modes:
            m.train(training)
        random.setstate(py_state)
        np.random.set_state(np_state)
