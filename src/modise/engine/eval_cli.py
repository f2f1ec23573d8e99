"""``modise evaluate`` and ``modise report`` (heavy imports stay inside the commands)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import Overwrite, positive_float


BOOTSTRAP_REPLICATES = 1000  # evaluation.bootstrap.DEFAULT_REPLICATES (not imported: it pulls numpy in)


class APSource(str, Enum):
    """Where AP comes from (the names are the evaluator's ``AP_SOURCES``)."""

    instances = "instances"
    panoptic = "panoptic"


class FrocHit(str, Enum):
    """When a detection hits a lesion in FROC (froc.FROC_HITS)."""

    iou = "iou"
    centroid = "centroid"


class EnsembleChoice(str, Enum):
    """Which of a run's evaluations a report row reads (report.write_report's ``clip_ensemble``)."""

    as_run = "as-run"
    on = "on"
    off = "off"


class ThresholdRule(str, Enum):
    """Which IoU threshold a report row is read at (report.RULES)."""

    mean_best = "mean-best"
    fold_best = "fold-best"


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``report`` to the ``modise`` app."""

    @app.command("evaluate")
    def evaluate(
        gt: Path = typer.Option(..., "--gt", "--root", help="Ground-truth dataset (canonical panoptic layout)."),
        pred: Path = typer.Option(..., "--pred", "--input", help="Predictions (panoptic layout, segments with 'score')."),
        out: Path = typer.Option(..., "--out", help="Output folder: metrics.json, metrics.md, threshold_sweep.png, overlays/."),
        thresholds: Optional[str] = typer.Option(
            None, "--thresholds", show_default="0.05:0.9:0.05", help="IoU thresholds: start:stop:step or a comma list."),
        overlays: int = typer.Option(0, "--overlays", min=0, help="Write N image | GT | prediction PNGs."),
        images: Optional[Path] = typer.Option(None, "--images", show_default="GT/images", help="Image folder for overlays."),
        workers: Optional[int] = typer.Option(None, "--workers", "--num-workers", min=1, show_default="all cores",
                                              help="Worker processes scoring images."),
        ap_source: APSource = typer.Option(
            APSource.instances, "--ap-source",
            help="instances: AP on PRED/instances.json (top-100 overlapping instances per image, as detectron2 scores "
                 "Mask2Former/ODISE; falls back to panoptic when PRED has none) | panoptic: AP on the panoptic segments.",
        ),
        fold: Optional[int] = typer.Option(None, "--fold", min=0, metavar="<K>", help="Score only the GT images of fold K (0..K-1) of GT/folds.json."),
        froc_iou: float = typer.Option(0.1, "--froc-iou", parser=positive_float,
                                       help="FROC: a detection hits a lesion at mask IoU >= this, in (0, 1] (--froc-hit iou)."),
        froc_hit: FrocHit = typer.Option(FrocHit.iou, "--froc-hit",
                                         help="FROC hit rule: iou (mask IoU >= --froc-iou) | centroid (detection centroid inside the lesion)."),
        bootstrap: int = typer.Option(BOOTSTRAP_REPLICATES, "--bootstrap", min=0, help="Patient-level bootstrap replicates of the 95 % CIs; 0 = off."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap's resampling (recorded in metrics.json)."),
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print metrics.json on stdout."),
    ) -> None:
        """Score panoptic predictions: PQ/RQ/SQ over IoU thresholds, AP and Dice at the best one, FROC, CIs, breakdowns."""
        from modise.engine.evaluation import evaluate_folders, parse_thresholds
        from modise.engine.evaluation.folders import metrics_table_row

        from modise.errors import ModiseError, UsageError

        try:
            thr = parse_thresholds(thresholds)
        except ModiseError as e:
            raise UsageError("--thresholds", str(e)) from None
        if froc_iou > 1:
            raise UsageError("--froc-iou", f"must be in (0, 1], not {froc_iou}.")
        m = evaluate_folders(gt, pred, out, thresholds=thr, overlays=overlays, overwrite=overwrite,
                             images_root=images, workers=workers, progress=not as_json, ap_source=ap_source.value, fold=fold,
                             froc_iou=froc_iou, froc_hit=froc_hit.value, bootstrap=bootstrap, seed=seed)
        if as_json:
            typer.echo(json.dumps(m))
        else:
            typer.echo(metrics_table_row(m, pred.resolve().name), nl=False)
            if "froc" in m:
                f = m["froc"]["all"]
                ci = f" (95 % CI {f['ci'][0]:.3f}-{f['ci'][1]:.3f})" if f.get("ci") and f["ci"][0] is not None else ""
                typer.echo(f"FROC CPM (all lesions): {'n/a' if f['cpm'] is None else format(f['cpm'], '.3f')}{ci}")
            typer.echo(f"AP on {m['ap_source']}" + (f", fold {fold}" if fold is not None else "") + f"; written to {out}")

    @app.command("report")
    def report(
        runs: list[Path] = typer.Argument(..., help="Training runs, CV folders (fold*/) or folders with metrics.json."),
        out: Path = typer.Option(..., "--out", help="Output folder: report.md/.csv/.json, sweep.csv, pq_threshold.png, sweep.png."),
        at: ThresholdRule = typer.Option(
            ThresholdRule.mean_best, "--at",
            help="mean-best: every column at the t with the best fold-mean PQ | fold-best: each fold at its own best t.",
        ),
        clip_ensemble: EnsembleChoice = typer.Option(
            EnsembleChoice.as_run, "--clip-ensemble",
            help="as-run: each run's evaluation at its model's setting | on / off: with / without ODISE's CLIP ensemble "
                 "(training runs of models with a CLIP-style encoder record both).",
        ),
        bootstrap: int = typer.Option(BOOTSTRAP_REPLICATES, "--bootstrap", min=0,
                                      help="Patient-level bootstrap replicates of the pooled out-of-fold estimate and of each "
                                           "variant against m-odise (folds with predictions/); 0 = neither."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap's resampling (recorded in report.json)."),
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print report.json on stdout."),
    ) -> None:
        """Table 1 / Table 2: one row per variant, mean ± std over folds, best per column marked; pooled CIs, paired tests."""
        from modise.engine.evaluation import write_report
        from modise.engine.evaluation.report import table_markdown

        ensemble = {"as-run": None, "on": True, "off": False}[clip_ensemble.value]
        result = write_report(runs, out, overwrite=overwrite, rule=at.value, clip_ensemble=ensemble, bootstrap=bootstrap, seed=seed)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo(table_markdown(result["variants"]), nl=False)
            if result.get("pooled"):
                from modise.engine.evaluation.pooled import pooled_markdown

                typer.echo(pooled_markdown(result["pooled"]), nl=False)
            typer.echo(f"written to {out}")
