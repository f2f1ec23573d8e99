"""``modise compare``: paired patient-level comparison of two models on the same images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import Overwrite, positive_float
from modise.engine.eval_cli import BOOTSTRAP_REPLICATES, FrocHit


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the ``modise`` app."""

    @app.command("compare")
    def compare(
        gt: Path = typer.Option(..., "--gt", help="Ground-truth dataset (canonical panoptic layout)."),
        pred_a: Path = typer.Option(..., "--pred-a", help="Predictions of model A (panoptic layout, + instances.json)."),
        pred_b: Path = typer.Option(..., "--pred-b", help="Predictions of model B, on the same images."),
        out: Path = typer.Option(..., "--out", help="Output folder: compare.json, compare.md."),
        fold: Optional[int] = typer.Option(None, "--fold", min=0, metavar="<K>", help="Compare on the GT images of fold K (0..K-1) of GT/folds.json."),
        bootstrap: int = typer.Option(BOOTSTRAP_REPLICATES, "--bootstrap", min=1, help="Paired patient-level bootstrap replicates."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap's resampling (recorded in compare.json)."),
        froc_iou: float = typer.Option(0.1, "--froc-iou", parser=positive_float,
                                       help="FROC: a detection hits a lesion at mask IoU >= this, in (0, 1] (--froc-hit iou)."),
        froc_hit: FrocHit = typer.Option(FrocHit.iou, "--froc-hit",
                                         help="FROC hit rule: iou (mask IoU >= --froc-iou) | centroid (detection centroid inside the lesion)."),
        workers: Optional[int] = typer.Option(None, "--workers", "--num-workers", min=1, show_default="all cores",
                                              help="Worker processes scoring images."),
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print compare.json on stdout."),
    ) -> None:
        """Is A better than B on the same images? Differences, paired bootstrap CIs and p-values per metric."""
        from modise.engine.evaluation.compare import compare_folders, compare_markdown
        from modise.errors import UsageError

        if froc_iou > 1:
            raise UsageError("--froc-iou", f"must be in (0, 1], not {froc_iou}.")
        result = compare_folders(gt, pred_a, pred_b, out, fold=fold, bootstrap=bootstrap, seed=seed, froc_iou=froc_iou,
                                 froc_hit=froc_hit.value, workers=workers, overwrite=overwrite)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo(compare_markdown(result), nl=False)
            typer.echo(f"written to {out}")
