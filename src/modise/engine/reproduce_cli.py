"""``modise reproduce`` (heavy imports stay inside the command body)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import Accelerator, ModelSize, Precision, devices_value, positive_float, size_value


def register(app: typer.Typer) -> None:
    """Add ``reproduce`` to the ``modise`` app."""

    @app.command("reproduce")
    def reproduce_cmd(
        data: Path = typer.Option(..., "--data", help="Prepared dataset (canonical panoptic layout with folds.json)."),
        out: Path = typer.Option(..., "--out", help="Folder: <preset>/fold<k>/ runs, table1/ (Table 1, Fig. S1 sweep, CSVs)."),
        presets: Optional[list[str]] = typer.Option(
            None, "--presets", help="Comma list or repeatable (default: the six Table-1 presets, in the paper's order)."),
        folds: int = typer.Option(5, "--folds", min=1, help="Folds 0..K-1 of folds.json, each held out once."),
        size: ModelSize = typer.Option(ModelSize.full, "--size", help="Architecture size: full (the paper's) or tiny (CPU tests, demo)."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Random frozen parts (offline)."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Training steps per fold (default 10000)."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Per device."),
        lr: Optional[float] = typer.Option(None, "--lr", parser=positive_float, help="AdamW learning rate [1e-4]."),
        image_size: Optional[int] = typer.Option(None, "--image-size", min=32, help="LSJ crop (multiple of 32)."),
        num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, help="DataLoader worker processes [0]."),
        accelerator: Accelerator = typer.Option(Accelerator.auto, "--accelerator", help="Where to train."),
        devices: str = typer.Option("auto", "--devices", parser=devices_value, help="Devices per node: auto, a count or a list like 0,1."),
        num_nodes: int = typer.Option(1, "--num-nodes", min=1),
        strategy: str = typer.Option("auto", "--strategy", help="auto | ddp (multi-GPU / multi-node, torchrun or SLURM)."),
        precision: Precision = typer.Option(Precision.auto, "--precision", help="auto: bf16-mixed on a GPU, else 32-true."),
        override: Optional[list[str]] = typer.Option(None, "--override", help="Model config KEY=VALUE (repeatable), every preset."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of weights, augmentation and order."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Train every fold again (otherwise finished folds are kept)."),
        as_json: bool = typer.Option(False, "--json", help="Print the table (report.json) to stdout."),
    ) -> None:
        """Table 1: train + evaluate presets x folds (resumable), then mean ± std at the best IoU threshold."""
        from modise.engine.evaluation.report import table_markdown
        from modise.engine.reproduce import TABLE_DIR, reproduce
        from modise.engine.train_cli import train_config

        names = [p.strip() for item in (presets or []) for p in item.split(",") if p.strip()] or None
        cfg = train_config(
            preset="m-odise", size=size_value(size), data=str(data), random_weights=random_weights, max_steps=max_steps,
            batch_size=batch_size, lr=lr, image_size=image_size, num_workers=num_workers, accelerator=Accelerator(accelerator).value,
            devices=devices, num_nodes=num_nodes, strategy=strategy, precision=Precision(precision).value, override=override, seed=seed,
        )
        result = reproduce(data, out, names, folds, size=size_value(size), random_weights=random_weights, overwrite=overwrite,
                           **cfg.model_dump(exclude={"preset", "size", "data", "fold", "random_weights"}))
        if not result:
            return
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
        else:
            typer.echo(table_markdown(result["variants"]), nl=False)
            typer.echo(f"written to {out / TABLE_DIR}")
