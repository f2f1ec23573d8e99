"""``modise baseline nnunet``: nnU-Net v2 trained and scored on modise's data and folds.

Layout of ``OUT`` (resumable: finished folds are kept, a started fold continues from nnU-Net's
latest checkpoint)::

    baseline.json            the settings (checked on resume)
    nnUNet_raw/              the exported dataset (``modise export nnunet``), with splits_final.json = folds.json
    nnUNet_preprocessed/     nnU-Net's fingerprint, plans and preprocessed data
    nnUNet_results/          nnU-Net's training runs (checkpoints, logs, progress.png)
    fold<k>/predictions/     the held-out fold in the canonical panoptic layout (connected components, scored)
    fold<k>/evaluation/      ``modise evaluate``'s output on that fold
    fold<k>/metrics.json     the same metrics, marked as the external baseline ``nnunet`` (read by ``modise report``)
    report/                  the baseline's Table-1 row (``modise report``)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from modise.errors import ModiseError, TrainingInterrupted

VARIANT = "nnunet"
SETTINGS_JSON = "baseline.json"
RAW, PREPROCESSED, RESULTS = "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"
INSTALL_HINT = ("nnU-Net is not installed; install the optional extra with "
                "`pip install -e '.[nnunet]' -c constraints.txt` (it brings nnunetv2) and run the command again.")


def require_nnunet() -> None:
    """A one-sentence error when the ``nnunet`` extra is missing (the package's __init__ is empty: cheap)."""
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        raise ModiseError(INSTALL_HINT) from None


def describe(settings: dict[str, Any]) -> str:
    """What the baseline row is, for metrics.json and the report."""
    return (f"nnU-Net v2 ({settings['configuration']}, {settings['trainer']}): a semantic model; instances = connected "
            f"components of each class (min area {settings['min_area']} px), score = mean softmax probability inside")


def _check_settings(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    from modise.outputs import claim_output_dir, remove_output_dir, write_json_atomic

    path = out / SETTINGS_JSON
    if out.is_dir() and any(out.iterdir()):
        if not path.is_file():
            raise ModiseError(f"'{out}' is not empty and holds no {SETTINGS_JSON}, so `modise baseline nnunet` did not start it; choose another --out.")
        try:
            before = json.loads(path.read_text()).get("settings", {})
        except (OSError, ValueError, AttributeError) as e:
            raise ModiseError(f"{path}: cannot read ({e}).") from None
        diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if overwrite:
            remove_output_dir(out, [settings["data"]])
        elif diff:
            k = diff[0]
            raise ModiseError(f"'{out}' was started with {k}={before.get(k)!r}, not {settings.get(k)!r}; pass the same options "
                              "to resume it, or --overwrite to start again.")
    claim_output_dir(out, [settings["data"]])
    write_json_atomic(path, {"settings": settings})


def _run_worker(out: Path, spec: dict[str, Any]) -> None:
    """The nnU-Net steps in a child process whose environment names nnU-Net's folders inside ``out``."""
    from modise.baseline.nnunet_worker import ERROR_EXIT
    from modise.outputs import write_json_atomic

    spec_path, error_file = out / ".worker_spec.json", out / ".worker_error"
    error_file.unlink(missing_ok=True)
    write_json_atomic(spec_path, {**spec, "error_file": str(error_file)})
    env = {**os.environ, "nnUNet_raw": str(out / RAW), "nnUNet_preprocessed": str(out / PREPROCESSED), "nnUNet_results": str(out / RESULTS)}
    src = str(Path(__file__).resolve().parents[2])  # this modise, also when it is not the installed one
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    try:
        rc = subprocess.call([sys.executable, "-m", "modise.baseline.nnunet_worker", str(spec_path)], env=env)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"nnU-Net baseline interrupted; run the same command again to continue "
                                  f"(finished folds are kept, a started fold resumes from its latest checkpoint in {out / RESULTS}).") from None
    if rc == ERROR_EXIT and error_file.is_file():
        raise ModiseError(error_file.read_text().strip())
    if rc != 0:
        raise ModiseError(f"nnU-Net stopped with exit code {rc} (its messages are above); run the same command again to "
                          "resume once the cause is fixed.")


def score_fold(data: Path, out: Path, fold: int, settings: dict[str, Any]) -> None:
    """``evaluate`` on fold ``fold``'s predictions -> ``fold<k>/evaluation``, and ``fold<k>/metrics.json`` marked
    as the external baseline (what ``modise report`` reads)."""
    from modise.engine.evaluation import evaluate_folders
    from modise.outputs import write_json_atomic

    run = out / f"fold{fold}"
    metrics = evaluate_folders(data, run / "predictions", run / "evaluation", fold=fold, overwrite=True, ap_source="panoptic", workers=1)
    write_json_atomic(run / "metrics.json", {**metrics, "variant": VARIANT, "external_baseline": describe(settings)})


def run_nnunet_baseline(
    data: str | Path,
    out: str | Path,
    folds: int = 5,
    *,
    configuration: str = "2d",
    trainer: str = "nnUNetTrainer",
    device: str = "auto",
    min_area: int = 0,
    dataset_id: int = 1,
    processes: int = 2,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Export ``data``, run nnU-Net (plan/preprocess, train + predict folds 0..folds-1), score each held-out
    fold with ``evaluate`` and write ``out/report``; returns the report (``write_report``'s result)."""
    from modise.baseline.nnunet_export import dataset_folder_name, export_nnunet
    from modise.engine.evaluation.report import write_report
    from modise.engine.training.checks import check_folds
    from modise.engine.training.cv import fold_done

    require_nnunet()
    if device not in ("auto", "cpu", "cuda"):
        raise ModiseError(f"--device {device}: choose auto, cpu or cuda.")
    if min_area < 0:
        raise ModiseError(f"--min-area {min_area}: must be 0 or more pixels.")
    data, out = Path(data), Path(out)
    check_folds(data, folds)
    settings = {"data": str(data.resolve()), "folds": folds, "configuration": configuration, "trainer": trainer,
                "min_area": min_area, "dataset_id": dataset_id}
    dataset = dataset_folder_name(dataset_id, "Modise")
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    try:
        _check_settings(out, settings, overwrite)
        if not (out / RAW / dataset / "dataset.json").is_file():
            export_nnunet(data, out / RAW, dataset_id, "Modise", overwrite=True, progress=progress)
        todo = [k for k in range(folds) if not fold_done(out / f"fold{k}")]
        if todo:
            _run_worker(out, {"root": str(out.resolve()), "data": str(data.resolve()), "dataset": dataset, "dataset_id": dataset_id,
                              "configuration": configuration, "trainer": trainer, "device": device, "min_area": min_area,
                              "processes": processes, "folds": todo})
    except ModiseError as e:
        if fresh and out.is_dir() and not isinstance(e, TrainingInterrupted) and not (out / RESULTS).exists():
            shutil.rmtree(out)  # bad input or settings, found before nnU-Net trained anything: leave nothing behind
        raise
    for k in todo:
        score_fold(data, out, k, settings)
    return write_report([out / f"fold{k}" for k in range(folds)], out / "report", overwrite=True)
