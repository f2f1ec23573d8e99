"""``modise compare RUN_A RUN_B --data D``: each run's out-of-fold predictions, then the paired comparison.

A run is a training run (``config.yaml``; its held-out fold), a cross-validation folder (its ``fold*/``
runs, pooled: every image predicted by the fold that held it out), or a prediction folder
(``panoptic.json``). A fold run's ``predictions/`` folder (the nnU-Net baseline writes one) is reused;
otherwise the run predicts its held-out fold into ``OUT/predictions/<A|B>/fold<k>/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

_FOLD = re.compile(r"^fold[_-]?\d+$", re.IGNORECASE)
PREDICTIONS_DIR = "predictions"


def fold_runs(run: Path) -> list[Path]:
    """The training runs a run argument stands for (itself, or a CV folder's fold*/ runs)."""
    from modise.runs import CONFIG_YAML

    if (run / CONFIG_YAML).is_file():
        return [run]
    if run.is_dir():
        folds = sorted(d for d in run.iterdir() if d.is_dir() and _FOLD.match(d.name) and (d / CONFIG_YAML).is_file())
        if folds:
            return folds
    raise ModiseError(f"'{run}' is neither a training run, a folder of fold*/ runs, nor a prediction folder (panoptic.json).")


def out_of_fold_predictions(run: Path, data: Path, stage: Path, tag: str, device: str | None = None,
                            progress: bool = False) -> list[Path]:
    """Prediction folders holding ``run``'s out-of-fold predictions on ``data`` (predicted into
    ``stage/predictions/<tag>/`` when the run has none)."""
    from modise.runs import load_run_config, require_complete_run

    run = Path(run)
    if (run / "panoptic.json").is_file():
        return [run]
    out = []
    for f in fold_runs(run):
        if (f / PREDICTIONS_DIR / "panoptic.json").is_file():
            out.append(f / PREDICTIONS_DIR)
            continue
        fold = load_run_config(f).get("fold")
        if fold is None or int(fold) < 0:
            raise ModiseError(f"'{f}' was trained on every image (no held-out fold), so it has no out-of-fold predictions.")
        require_complete_run(f)
        from modise.engine.prediction.predict import predict_files

        dest = stage / PREDICTIONS_DIR / tag / f"fold{int(fold)}"
        predict_files(f, [], dest, data=data, fold=int(fold), overlays=False, heatmaps=False, device=device, progress=progress)
        out.append(dest)
    return out


def compare_runs(run_a: Path, run_b: Path, data: Path, out: Path, *, overwrite: bool = False, device: str | None = None,
                 progress: bool = False, **kw: Any) -> dict[str, Any]:
    """Out-of-fold predictions of both runs on ``data`` (pooled over folds), then
    :func:`~modise.engine.evaluation.compare.paired_comparison`; writes ``out``/{compare.json, compare.md,
    predictions/}. ``kw``: the comparison's options (bootstrap, seed, froc_iou, ...)."""
    from modise.engine.evaluation.compare import paired_comparison, write_comparison
    from modise.outputs import output_dir

    run_a, run_b, data = Path(run_a), Path(run_b), Path(data)
    with output_dir(out, overwrite, [run_a, run_b, data]) as stage:
        pa = out_of_fold_predictions(run_a, data, stage, "A", device, progress)
        pb = out_of_fold_predictions(run_b, data, stage, "B", device, progress)
        result = paired_comparison(data, pa, pb, names=(run_a.resolve().name, run_b.resolve().name), **kw)
        result["a"], result["b"] = str(run_a), str(run_b)
        write_comparison(stage, result)
    return result
