"""The optimiser recipe: per-parameter weight-decay / lr groups and the warm-up + step-decay schedule.

ODISE (configs/common/optim.py:23-29): detectron2's ``get_default_optimizer_params`` with
``weight_decay_norm=0`` and ``weight_decay_bias=0`` (norm layers and every ``bias`` undecayed;
embeddings decayed). Mask2Former (train_net.py ``build_optimizer``): backbone lr x 0.1, no decay on
norm layers, ``nn.Embedding`` and Swin's ``relative_position_bias_table`` / ``absolute_pos_embed``;
biases decayed. Which recipe a model gets is its preset's ``optimizer:`` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
              nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)
SWIN_TABLES = ("relative_position_bias_table", "absolute_pos_embed")
ODISE_MILESTONES = (163889 / 184375, 177546 / 184375)  # odise_label_coco_50e.py:37-38; runs use (0.889, 0.963)


def param_groups(model: nn.Module, lr: float, weight_decay: float, weight_decay_norm: float | None = 0.0,
                 weight_decay_bias: float | None = 0.0, weight_decay_embed: float | None = None,
                 backbone_lr_multiplier: float = 1.0) -> list[dict[str, Any]]:
    """Trainable parameters grouped by (lr, weight decay); ``None`` = the run's ``weight_decay``.

    Rules in detectron2 / Mask2Former order (later wins): backbone lr, norm layers, ``bias``,
    ``nn.Embedding`` and Swin position tables (only when ``weight_decay_embed`` is set).
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            p_lr, wd = lr, weight_decay
            if module_name == "backbone" or module_name.startswith("backbone."):
                p_lr = lr * backbone_lr_multiplier
            if isinstance(module, NORM_TYPES) and weight_decay_norm is not None:
                wd = weight_decay_norm
            if name == "bias" and weight_decay_bias is not None:
                wd = weight_decay_bias
            if weight_decay_embed is not None and (isinstance(module, nn.Embedding) or name in SWIN_TABLES):
                wd = weight_decay_embed
            groups.setdefault((p_lr, wd), []).append(p)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]


def groups_from_config(model: nn.Module, lr: float, weight_decay: float, optimizer_config: Any | None) -> list[dict[str, Any]]:
    """:func:`param_groups` with a ``modise.model.config.OptimizerConfig`` (None: ODISE's rules)."""
    keys = ("weight_decay_norm", "weight_decay_bias", "weight_decay_embed", "backbone_lr_multiplier")
    kw = {k: getattr(optimizer_config, k) for k in keys} if optimizer_config is not None else {}
    return param_groups(model, lr, weight_decay, **kw)


def warmup_step_decay(
    step: int, max_steps: int, warmup_steps: float = 250, milestones: Sequence[float] = (0.889, 0.963), gamma: float = 0.1,
    warmup_factor: float = 0.067,
) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up from ``warmup_factor``, x``gamma`` at each milestone.

    ODISE: warm-up over 500/184375 of the run from 0.067, decay at 163889/184375 (~89%) and
    177546/184375 (~96%) of it (configs/Panoptic/odise_label_coco_50e.py:31-43). ``warmup_steps``
    may be fractional and is capped at a tenth of the run so that short runs still train.
    """
    warmup = min(float(warmup_steps), max_steps / 10)
    factor = 1.0
    if step < warmup:
        alpha = step / warmup
        factor = warmup_factor * (1 - alpha) + alpha
    for m in milestones:
        if step >= int(m * max_steps):
            factor *= gamma
    return factor

