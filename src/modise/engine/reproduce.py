"""``modise reproduce``: the paper's Table 1 in one command.

Every preset x K folds is trained and evaluated by :func:`~modise.engine.training.cv.train_folds`
(one Lightning run per fold, so the loop works under torchrun / SLURM; finished folds are kept
and skipped, a started one resumes), each fold scored on its held-out images at every IoU
threshold; :func:`~modise.engine.evaluation.report.write_report` then writes Table 1 (mean ± std
over folds at the best threshold, the paper's rows and columns), the Fig. S1 sweep and CSVs.

Layout of ``OUT``::

    reproduce.json          the settings every fold was trained with (checked on resume)
    <preset>/fold<k>/       one training run per fold (config.yaml, model/, metrics.json, ...,
                            predictions/: its held-out images, for the pooled estimate and paired tests)
    table1/                 report.md, report.csv, report.json, sweep.csv, sweep.png, pq_threshold.png:
                            with ODISE's CLIP ensemble wherever the model has a CLIP-style encoder
    table1-no-ensemble/     the same from the same folds, without it (the ensemble is inference-only)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modise.engine.evaluation.report import SETTINGS_JSON
from modise.errors import ModiseError

if TYPE_CHECKING:
    from modise.engine.training.config import TrainConfig

TABLE_DIR = "table1"
TABLE_NO_ENSEMBLE_DIR = "table1-no-ensemble"


def variant_dir(preset: str) -> str:
    """Folder of a preset's folds: its name, or the stem of a preset YAML file."""
    return Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset


def _check_settings(out: Path, settings: dict[str, Any], presets: Sequence[str], overwrite: bool) -> None:
    """Refuse an ``out`` this command did not start, or one started with other settings
    (unless ``overwrite``: then every fold is trained again); record the settings."""
    from modise.outputs import write_json_atomic

    path = out / SETTINGS_JSON
    if out.is_dir() and any(out.iterdir()):
        if not path.is_file():
            raise ModiseError(f"'{out}' is not empty and holds no {SETTINGS_JSON}, so `modise reproduce` did not start it; choose another --out.")
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ModiseError(f"{path}: cannot read ({e}).") from None
        old = before.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff and not overwrite:
            k = diff[0]
            raise ModiseError(f"'{out}' was started with {k}={old.get(k)!r}, not {settings.get(k)!r}; pass the same options "
                              "to resume it, or --overwrite to train every fold again.")
        presets = list(dict.fromkeys([*before.get("presets", []), *presets])) if not diff else list(presets)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"settings": settings, "presets": list(presets)})


def reproduce(
    base: "TrainConfig",
    out: str | Path,
    presets: Sequence[str] | None = None,
    folds: int = 5,
    *,
    overwrite: bool = False,
    progress: bool = True,
    nnunet_trainer: str = "nnUNetTrainer",
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train and evaluate ``presets`` (default: every preset, in their order: the six of Table 1) x ``folds`` folds of ``base.data``
    into ``out``, every fold with ``base``'s settings; return the table with the CLIP ensemble
    (``write_report``'s result, the one without it under ``without_clip_ensemble``; empty on ranks other than 0).

    ``base``: the :class:`~modise.engine.training.config.TrainConfig` every run shares (its ``preset``
    and ``fold`` are set per run). ``overwrite``: train every fold again (only folders this command made
    are replaced). A preset named ``nnunet`` is the external nnU-Net baseline
    (:mod:`modise.baseline.nnunet_run`), trained with nnU-Net's ``nnunet_trainer`` on the same folds.
    Each fold run also predicts its held-out images into ``fold<k>/predictions/``, so that the table gains
    the pooled out-of-fold estimate with ``bootstrap`` patient-level replicates (``seed``) and every preset
    against m-odise (:mod:`modise.engine.evaluation.pooled`); ``bootstrap=0``: neither."""
    from modise.engine.evaluation.report import write_report
    from modise.engine.training.checks import check_train_config
    from modise.engine.training.config import HARDWARE
    from modise.engine.training.cv import held_out_predictions, train_folds
    from modise.model.presets import preset_names
    from modise.runs import is_global_zero

    from modise.baseline.nnunet_run import VARIANT as NNUNET, require_nnunet

    data = base.data
    presets = list(dict.fromkeys(presets or preset_names()))
    dirs = [variant_dir(p) for p in presets]
    if len(set(dirs)) != len(dirs) or {TABLE_DIR, TABLE_NO_ENSEMBLE_DIR} & set(dirs):
        raise ModiseError(f"--presets {', '.join(presets)}: two presets would share a folder (or one is named "
                          f"'{TABLE_DIR}' or '{TABLE_NO_ENSEMBLE_DIR}').")
    models = [p for p in presets if p != NNUNET]
    base = base.model_copy(update={"preset": (models or preset_names())[0]})
    if NNUNET in presets:
        require_nnunet()
    for p in models or [base.preset]:  # a bad value (data, folds, options) fails now, before reproduce.json records it, not after hours of training
        check_train_config(base.model_copy(update={"preset": p, "fold": None}), folds)
    out = Path(out)
    settings = {"data": str(Path(data).resolve()), "folds": folds,
                **json.loads(base.model_dump_json(exclude={"preset", "fold", "data", *HARDWARE}))}
    if is_global_zero():
        _check_settings(out, settings, presets, overwrite)
    say = _say(progress and is_global_zero())
    for i, (p, d) in enumerate(zip(presets, dirs)):
        say(f"[{i + 1}/{len(presets)}] {p}: {folds} fold(s) in {out / d}")
        if p == NNUNET:
            _nnunet_row(data, out / d, folds, base.accelerator, nnunet_trainer, overwrite, progress)
            continue
        fold_runs = train_folds(base.model_copy(update={"preset": p}), out / d, folds, overwrite=overwrite, progress=progress)
        if is_global_zero():
            held_out_predictions(fold_runs, data, base.accelerator, progress)
    if not is_global_zero():
        return {}
    runs = [out / d for d in dirs]
    result = write_report(runs, out / TABLE_DIR, overwrite=True, clip_ensemble=True, bootstrap=bootstrap, seed=seed)
    result["without_clip_ensemble"] = write_report(runs, out / TABLE_NO_ENSEMBLE_DIR, overwrite=True, clip_ensemble=False)
    return result


def _nnunet_row(data: str | Path, out: Path, folds: int, accelerator: str, trainer: str, overwrite: bool, progress: bool) -> None:
    """The nnU-Net baseline's folds, on rank 0 only (nnU-Net trains on one device of its own)."""
    from modise.baseline.nnunet_run import run_nnunet_baseline
    from modise.runs import is_global_zero

    if is_global_zero():
        device = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}.get(accelerator, "auto")
        run_nnunet_baseline(data, out, folds, trainer=trainer, device=device, overwrite=overwrite, progress=progress)


def _say(enabled: bool):
    from rich.console import Console

    con = Console(stderr=True)
    return (lambda msg: con.print(msg, highlight=False)) if enabled else (lambda msg: None)
