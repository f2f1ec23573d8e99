"""``modise compare``: paired patient-level comparison of two models on the same images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import Device, Overwrite, positive_float
from modise.engine.eval_cli import BOOTSTRAP_REPLICATES, FrocHit


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the ``modise`` app."""

    @app.command("compare")
    def compare(
        runs: Optional[list[Path]] = typer.Argument(
            None, metavar="[RUN_A RUN_B]", help="Two training runs, CV folders (fold*/) or prediction folders; with --data."),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset the runs were trained on (with RUN_A RUN_B)."),
        gt: Optional[Path] = typer.Option(None, "--gt", help="Ground-truth dataset (canonical panoptic layout), with --pred-a/--pred-b."),
        pred_a: Optional[Path] = typer.Option(None, "--pred-a", help="Predictions of model A (panoptic layout, + instances.json)."),
        pred_b: Optional[Path] = typer.Option(None, "--pred-b", help="Predictions of model B, on the same images."),
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
        device: Device = "auto",
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print compare.json on stdout."),
    ) -> None:
        """Is A better than B on the same images? Differences, paired bootstrap CIs and p-values per metric."""
        from modise.engine.evaluation.compare import compare_folders, compare_markdown
        from modise.errors import UsageError

        if froc_iou > 1:
            raise UsageError("--froc-iou", f"must be in (0, 1], not {froc_iou}.")
        kw = dict(fold=fold, bootstrap=bootstrap, seed=seed, froc_iou=froc_iou, froc_hit=froc_hit.value, workers=workers)
        if runs:
            if len(runs) != 2:
                raise UsageError("RUN_A RUN_B", f"give two runs, not {len(runs)}.")
            if data is None:
                raise UsageError("--data", "RUN_A RUN_B need the prepared dataset they were trained on (--data).")
            if gt or pred_a or pred_b:
                raise UsageError("--pred-a", "give either RUN_A RUN_B --data D or --gt D --pred-a P --pred-b Q, not both.")
            from modise.checks import check_device
            from modise.cli_options import auto_device
            from modise.engine.compare_runs import compare_runs

            result = compare_runs(runs[0], runs[1], data, out, overwrite=overwrite, device=auto_device(check_device(device)),
                                  progress=not as_json, **kw)
        else:
            missing = [n for n, v in (("--gt", gt), ("--pred-a", pred_a), ("--pred-b", pred_b)) if v is None]
            if missing:
                raise UsageError(missing[0], "is needed (or give RUN_A RUN_B --data D).")
            result = compare_folders(gt, pred_a, pred_b, out, overwrite=overwrite, **kw)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo(compare_markdown(result), nl=False)
            typer.echo(f"written to {out}")
