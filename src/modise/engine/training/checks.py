"""Checks of a training config against its dataset, the machine and (for ``--resume``) the run it
continues; ``train``, ``cv`` and ``reproduce`` make them before anything is read or written, so a
mistyped command leaves the run folder as it was (see :class:`~modise.errors.UsageError`)."""

from __future__ import annotations

import json
from pathlib import Path

from modise.checks import (
    check_accelerator, check_prepared_data, check_preset, check_same_settings, check_side, check_strategy,
)
from modise.errors import UsageError

from .config import TrainConfig, run_settings


def check_folds(data: str | Path, folds: int) -> list[list[int]]:
    """Refuse a dataset that is not prepared or defines fewer than ``folds`` folds; return its folds."""
    fold_lists = check_prepared_data(data)
    if folds > len(fold_lists):
        raise UsageError("--folds", f"{Path(data) / 'folds.json'} defines {len(fold_lists)} folds, fewer than {folds}.")
    return fold_lists


def check_train_config(cfg: TrainConfig, folds: int | None = None):
    """Refuse a config that could not train: a dataset that is not prepared, a fold it lacks, an unknown
    preset or override, an image size that is no multiple of 32, a batch larger than the training set,
    hardware this machine lacks. ``folds``: check folds 0..folds-1 (cv, reproduce) instead of ``cfg.fold``.

    Returns the run's model config, resolved once: the preset with ``model_overrides`` (inference
    thresholds included), random frozen parts if asked, and ``input_size`` = the LSJ crop trained at
    (the shortest edge the saved model then predicts at)."""
    from modise.model.config import validate_config

    fold_lists = check_folds(cfg.data, folds or 0)
    path = Path(cfg.data) / "folds.json"
    if cfg.fold is not None and not 0 <= cfg.fold < len(fold_lists):
        raise UsageError("--fold", f"fold {cfg.fold} is not one of the folds 0..{len(fold_lists) - 1} of {path} "
                                   f"(-1: train on all).")
    overrides = {**(cfg.model_overrides or {}), **({"random_weights": True} if cfg.random_weights else {})}
    model_cfg = check_preset(cfg.preset, cfg.size, overrides)
    size = check_side(cfg.image_size or model_cfg.input_size, "--image-size", multiple=32)
    held = [cfg.fold] if folds is None else list(range(folds))
    images = len(json.loads((Path(cfg.data) / "panoptic.json").read_text()).get("images", []))
    fewest = min(images - (len(fold_lists[k]) if k is not None else 0) for k in held)
    if cfg.batch_size > fewest:
        raise UsageError("--batch-size", f"{cfg.batch_size} is more than the {fewest} training image(s) of {cfg.data}.")
    check_accelerator(cfg.accelerator)
    check_strategy(cfg.strategy)
    return validate_config({**model_cfg.model_dump(), "input_size": size}, source=f"preset {cfg.preset}")


def check_resume(cfg: TrainConfig, out: Path, image_size: int) -> None:
    """Refuse ``--resume`` with settings other than the run's, naming every difference in one sentence."""
    import yaml

    from modise.runs import CONFIG_YAML

    try:
        recorded = yaml.safe_load((out / CONFIG_YAML).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # a run stopped before it wrote its config: nothing to compare with
    before = {k: recorded.get(k) for k in ("preset", "size", "random_weights", "data", "fold")}
    before["model_overrides"] = recorded.get("model_overrides") or {}
    before.update(recorded.get("training") or {})
    now = json.loads(json.dumps(run_settings(cfg, image_size), default=str))  # tuples as lists, as YAML has them
    for d in (before, now):
        d["fold"] = -1 if d.get("fold") is None else d["fold"]  # as --fold says "train on all"
    check_same_settings(out, before, now, {"model_overrides": "--override"})
