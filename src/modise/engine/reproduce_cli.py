"""``modise reproduce`` (heavy imports stay inside the command body)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import (
    Accelerator, AcceleratorOpt, BatchSize, CheckpointEvery, Devices, GradAccum, GradClip, ImageSize, IntensityJitter, Lr, MaxSteps, ModelSize,
    NumNodes, NumWorkers, Overrides, Overwrite, Precision, PrecisionOpt, RandomWeights, ReferenceBatch, Seed, Size, Strategy, WarmupSteps, size_value,
)


def register(app: typer.Typer) -> None:
    """Add ``reproduce`` to the ``modise`` app."""

    @app.command("reproduce")
    def reproduce_cmd(
        data: Path = typer.Option(..., "--data", help="Prepared dataset (canonical panoptic layout with folds.json)."),
        out: Path = typer.Option(..., "--out", help="Folder: <preset>/fold<k>/ runs, table1/ (Table 1, Fig. S1 sweep, CSVs) "
                                                     "and table1-no-ensemble/ (the same without the CLIP ensemble)."),
        presets: Optional[list[str]] = typer.Option(
            None, "--presets", metavar="<preset,..>", show_default="every preset, in the paper's order",
            help="Presets to run, a comma list or repeatable; nnunet adds the external nnU-Net baseline (pip install -e '.[nnunet]')."),
        folds: int = typer.Option(5, "--folds", min=1, help="Folds 0..K-1 of folds.json, each held out once."),
        size: Size = ModelSize.full,
        random_weights: RandomWeights = False,
        max_steps: MaxSteps = None,
        batch_size: BatchSize = None,
        grad_accum: GradAccum = None,
        reference_batch: ReferenceBatch = None,
        lr: Lr = None,
        grad_clip: GradClip = None,
        warmup_steps: WarmupSteps = None,
        image_size: ImageSize = None,
        intensity_jitter: IntensityJitter = False,
        num_workers: NumWorkers = None,
        checkpoint_every: CheckpointEvery = None,
        accelerator: AcceleratorOpt = Accelerator.auto,
        devices: Devices = "auto",
        num_nodes: NumNodes = 1,
        strategy: Strategy = "auto",
        precision: PrecisionOpt = Precision.auto,
        override: Overrides = None,
        seed: Seed = 0,
        nnunet_trainer: str = typer.Option("nnUNetTrainer", "--nnunet-trainer", metavar="<class>", help="nnU-Net trainer of the nnunet row (e.g. nnUNetTrainer_100epochs)."),
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print the table (report.json) on stdout."),
    ) -> None:
        """Table 1: train + evaluate presets x folds (finished folds are kept unless --overwrite), then mean ± std at the best IoU threshold."""
        from modise.engine.evaluation.report import table_markdown
        from modise.engine.reproduce import TABLE_DIR, TABLE_NO_ENSEMBLE_DIR, reproduce
        from modise.engine.train_cli import train_config

        names = [p.strip() for item in (presets or []) for p in item.split(",") if p.strip()] or None
        cfg = train_config(
            preset="m-odise", size=size_value(size), data=str(data), random_weights=random_weights, max_steps=max_steps,
            batch_size=batch_size, grad_accum=grad_accum, reference_batch=reference_batch, lr=lr, grad_clip=grad_clip, warmup_steps=warmup_steps, image_size=image_size, intensity_jitter=intensity_jitter,
            num_workers=num_workers, checkpoint_every=checkpoint_every, accelerator=Accelerator(accelerator).value,
            devices=devices, num_nodes=num_nodes, strategy=strategy, precision=Precision(precision).value, override=override, seed=seed,
        )
        result = reproduce(cfg, out, names, folds, overwrite=overwrite, nnunet_trainer=nnunet_trainer)
        if not result:
            return
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
        else:
            typer.echo(table_markdown(result["variants"]), nl=False)  # with the CLIP ensemble where a model has one
            typer.echo("\nwithout the CLIP ensemble (the same folds):\n" + table_markdown(result["without_clip_ensemble"]["variants"]),
                       nl=False)
            typer.echo(f"written to {out / TABLE_DIR} and {out / TABLE_NO_ENSEMBLE_DIR}")
