"""``modise cv``: every fold of ``folds.json`` as its own run, then the variant's Table-1 row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modise.errors import TrainingInterrupted

from modise.runs import CKPT_DIR, LAST_CKPT, METRICS_JSON, is_global_zero

from .config import TrainConfig
from .train import train


def fold_done(run: Path) -> bool:
    """A fold is finished when its validation metrics were written (the last thing ``train`` does)."""
    try:
        return "pq" in json.loads((run / METRICS_JSON).read_text())
    except (OSError, ValueError):
        return False


def train_folds(
    cfg: TrainConfig, out: str | Path, folds: int = 5, *, overwrite: bool = False, progress: bool = True
) -> list[Path]:
    """Train/evaluate folds 0..folds-1 into ``out/fold{k}``, each one Lightning run (so the
    loop works under torchrun / SLURM: every rank walks it). Finished folds are kept and
    skipped, a started one resumes from its last checkpoint; ``overwrite`` trains every fold
    again (each fold folder is replaced only if modise wrote it). Returns the fold run folders."""
    from .checks import check_train_config

    from modise.outputs import refuse_overlap

    refuse_overlap(Path(out), [cfg.data])  # --out inside --data (or the reverse) is the first thing to say
    check_train_config(cfg.model_copy(update={"fold": None}), folds)
    out = Path(out)
    if is_global_zero():
        from modise.outputs import check_output_dir, claim_output_dir

        if out.is_dir() and any(out.iterdir()):
            check_output_dir(out, True, [cfg.data])  # continuing or overwriting: only in a folder modise wrote
        claim_output_dir(out, [cfg.data])
    runs = []
    for k in range(folds):
        run = out / f"fold{k}"
        runs.append(run)
        if fold_done(run) and not overwrite:
            continue
        started = not overwrite and (run / CKPT_DIR / LAST_CKPT).is_file()
        try:
            train(cfg.model_copy(update={"fold": k}), run, resume=started, overwrite=not started, progress=progress)
        except TrainingInterrupted:
            raise TrainingInterrupted(f"Cross-validation interrupted in fold {k}; run the same `modise cv` command "
                                      f"again to continue (finished folds are kept, fold {k} resumes).") from None
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
