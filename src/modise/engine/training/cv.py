"""``modise cv``: every fold of ``folds.json`` as its own run, then the variant's Table-1 row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

from .train import METRICS_JSON, TrainConfig, is_global_zero, train


def fold_done(run: Path) -> bool:
    """A fold is finished when its validation metrics were written (the last thing ``train`` does)."""
    try:
        return "pq" in json.loads((run / METRICS_JSON).read_text())
    except (OSError, ValueError):
        return False


def check_folds(data: str | Path, folds: int) -> None:
    """Refuse ``folds`` beyond what ``data/folds.json`` defines."""
    from modise.data.dataset import load_folds

    if folds < 1:
        raise ModiseError(f"--folds must be at least 1, not {folds}.")
    available = len(load_folds(data))
    if folds > available:
        raise ModiseError(f"{Path(data) / 'folds.json'} defines {available} folds, fewer than --folds {folds}.")


def train_folds(
    cfg: TrainConfig, out: str | Path, folds: int = 5, *, overwrite: bool = False, progress: bool = True
) -> list[Path]:
    """Train/evaluate folds 0..folds-1 into ``out/fold{k}``, each one Lightning run (so the
    loop works under torchrun / SLURM: every rank walks it). Finished folds are kept and
    skipped, a started one resumes from its last checkpoint; ``overwrite`` trains every fold
    again. Returns the fold run folders."""
    check_folds(cfg.data, folds)
    out = Path(out)
    if is_global_zero():
        out.mkdir(parents=True, exist_ok=True)
    runs = []
    for k in range(folds):
        run = out / f"fold{k}"
        runs.append(run)
        if fold_done(run) and not overwrite:
            continue
        train(cfg.model_copy(update={"fold": k}), run, resume=not overwrite, overwrite=True, progress=progress)
    return runs


def cross_validate(
    cfg: TrainConfig, out: str | Path, folds: int = 5, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """:func:`train_folds` into ``out``, then ``write_report`` into ``out/report``."""
    from modise.engine.evaluation import write_report

    runs = train_folds(cfg, out, folds, overwrite=overwrite, progress=progress)
    if not is_global_zero():
        return {}
    return write_report(runs, Path(out) / "report", overwrite=True)
