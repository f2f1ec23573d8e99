"""``modise cv``: every fold of ``folds.json`` as its own run, then the variant's Table-1 row and, from
each fold's held-out predictions (``fold<k>/predictions/``), the pooled out-of-fold estimate with
patient-level bootstrap CIs (:mod:`modise.engine.evaluation.pooled`)."""

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


def held_out_predictions(fold_runs: list[Path], data: str | Path, accelerator: str, progress: bool) -> None:
    """Each fold run's held-out images predicted into ``<run>/predictions/`` (kept when already there; an
    interrupted one continues): what the pooled estimate and the paired tests score."""
    from modise.engine.prediction.predict import predict_files
    from modise.runs import load_run_config

    device = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(accelerator)
    for run in fold_runs:
        dest = run / "predictions"
        if (dest / "panoptic.json").is_file():
            continue
        fold = load_run_config(run).get("fold")
        if fold is None or int(fold) < 0:
            continue
        predict_files(run, [], dest, data=data, fold=int(fold), overlays=False, heatmaps=False, device=device,
                      progress=progress, resume=dest.exists())


def cross_validate(
    cfg: TrainConfig, out: str | Path, folds: int = 5, *, overwrite: bool = False, progress: bool = True,
    bootstrap: int = 1000, seed: int = 0,
) -> dict[str, Any]:
    """:func:`train_folds` into ``out``, then ``write_report`` into ``out/report``: mean ± std over folds and,
    with ``bootstrap`` > 0, each fold's held-out predictions pooled with ``bootstrap`` patient-level
    replicates (``seed``); ``bootstrap=0`` predicts nothing more."""
    from modise.engine.evaluation import write_report

    runs = train_folds(cfg, out, folds, overwrite=overwrite, progress=progress)
    if not is_global_zero():
        return {}
    if bootstrap:
        held_out_predictions(runs, cfg.data, cfg.accelerator, progress)
    return write_report(runs, Path(out) / "report", overwrite=True, bootstrap=bootstrap, seed=seed)
