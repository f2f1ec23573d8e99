"""The ODISE learning-rate schedule: linear warm-up, then x0.1 steps near the end of the run."""

from __future__ import annotations

from collections.abc import Sequence


def warmup_step_decay(
    step: int, max_steps: int, warmup_steps: int = 250, milestones: Sequence[float] = (0.889, 0.963), gamma: float = 0.1, warmup_factor: float = 0.001
) -> float:
    """Multiplier of the base lr at ``step`` (ODISE: 250 warm-up iters, decay at ~89% and ~96%).

    ``warmup_steps`` is capped at a tenth of the run so that short runs still train.
    """
    warmup = min(warmup_steps, max(1, max_steps // 10))
    factor = 1.0
    if step < warmup:
        alpha = step / warmup
        factor = warmup_factor * (1 - alpha) + alpha
    for m in milestones:
        if step >= int(m * max_steps):
            factor *= gamma
    return factor


def build_scheduler(optimizer, max_steps: int, warmup_steps: int = 250, milestones: Sequence[float] = (0.889, 0.963)):
    """A ``LambdaLR`` stepping once per optimiser step."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lambda s: warmup_step_decay(s, max_steps, warmup_steps, milestones))
