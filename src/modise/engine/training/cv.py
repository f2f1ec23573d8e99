"""``modise cv``: every fold of ``folds.json`` as its own run, then the variant's Table-1 row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modise.errors import ModiseError, TrainingInterrupted

from .train import CKPT_DIR, LAST_CKPT, METRICS_JSON, TrainConfig, is_global_zero, train


def fold_done(run: Path) -> bool:
    """A fold is finished when its validation metrics were written (the last thing ``train`` does)."""
    try:
        return "pq" in json.loads((run / METRICS_JSON).read_text())
    except (OSError, ValueError):
        return False


def cross_validate(
    cfg: TrainConfig, out: str | Path, folds: int = 5, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train/evaluate folds 0..folds-1 into ``out/fold{k}`` (finished folds are kept, a
    started one resumes from its last checkpoint), then ``write_report`` into ``out/report``."""
    from modise.data.dataset import load_folds
    from modise.engine.evaluation import write_report

    out = Path(out)
    available = len(load_folds(cfg.data))
    if folds > available:
        raise ModiseError(f"{Path(cfg.data) / 'folds.json'} defines {available} folds, fewer than --folds {folds}.")
    if is_global_zero():
        from modise.outputs import check_output_dir, claim_output_dir, remove_output_dir

        if overwrite:
            remove_output_dir(out, [cfg.data])
        elif out.is_dir() and any(out.iterdir()):
            check_output_dir(out, True, [cfg.data])  # continuing: only in a folder modise wrote
        claim_output_dir(out, [cfg.data])
    runs = []
    for k in range(folds):
        run = out / f"fold{k}"
        runs.append(run)
        if fold_done(run):
            continue
        started = (run / CKPT_DIR / LAST_CKPT).is_file()
        try:
            train(cfg.model_copy(update={"fold": k}), run, resume=started, overwrite=not started, progress=progress)
        except TrainingInterrupted:
            raise TrainingInterrupted(f"Cross-validation interrupted in fold {k}; run the same `modise cv` command "
                                      f"again to continue (finished folds are kept, fold {k} resumes).") from None
    if not is_global_zero():
        return {}
    return write_report(runs, out / "report", overwrite=True)
