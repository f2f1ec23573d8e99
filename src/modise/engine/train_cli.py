"""``modise train | cv | predict | demo`` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

PRESET_HELP = "Table-1 variant: m2f-swinl, m2f-sd, odise, odise-biomedclip, odise-mame, m-odise."


def _train_config(**kw):
    from modise.engine.training.train import TrainConfig

    devices = kw.pop("devices")
    kw["devices"] = int(devices) if devices.isdigit() else devices
    overrides = kw.pop("override") or []
    mo = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            from modise.errors import ModiseError

            raise ModiseError(f"--override expects KEY=VALUE, got '{item}'.")
        import yaml

        mo[key.strip()] = yaml.safe_load(value)
    return TrainConfig(model_overrides=mo, **{k: v for k, v in kw.items() if v is not None})


def _echo(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    best = result.get("best") or {}
    if best:
        typer.echo(
            f"best IoU threshold {best['threshold']:.2f}: PQ {best['pq']:.1f}  RQ {best['rq']:.1f}  "
            f"SQ {best['sq']:.1f}  AP {best.get('ap', float('nan')):.1f}  Dice {result.get('dice', float('nan')):.1f}"
        )
    else:
        typer.echo(json.dumps(result, default=str))


def register(app: typer.Typer) -> None:
    """Add ``train``, ``cv``, ``predict`` and ``demo`` to the ``modise`` app."""

    @app.command("train")
    def train_cmd(
        data: Path = typer.Option(..., "--data", help="Prepared dataset (canonical panoptic layout with folds.json)."),
        out: Path = typer.Option(..., "--out", help="Run folder (config.yaml, checkpoints/, model/, logs/, metrics.json)."),
        preset: str = typer.Option("m-odise", "--preset", help=PRESET_HELP),
        size: str = typer.Option("full", "--size", help="full | tiny"),
        fold: Optional[int] = typer.Option(0, "--fold", help="Fold of folds.json held out for validation (-1: train on all)."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Random frozen parts (offline)."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps"),
        max_epochs: Optional[int] = typer.Option(None, "--max-epochs"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per device."),
        accumulate: Optional[int] = typer.Option(None, "--accumulate", help="Gradient accumulation steps."),
        lr: Optional[float] = typer.Option(None, "--lr"),
        warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps"),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="LSJ crop (multiple of 32)."),
        num_workers: Optional[int] = typer.Option(None, "--num-workers"),
        checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
        accelerator: str = typer.Option("auto", "--accelerator", help="auto | cpu | gpu"),
        devices: str = typer.Option("auto", "--devices"),
        num_nodes: int = typer.Option(1, "--num-nodes"),
        strategy: str = typer.Option("auto", "--strategy", help="auto | ddp (multi-GPU / multi-node, torchrun or SLURM)."),
        precision: str = typer.Option("auto", "--precision", help="auto (bf16-mixed on GPU) | 32-true | bf16-mixed | 16-mixed"),
        override: Optional[list[str]] = typer.Option(None, "--override", help="Model config KEY=VALUE (repeatable)."),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(False, "--resume", help="Continue from RUN/checkpoints/last.ckpt."),
        overwrite: bool = typer.Option(False, "--overwrite"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Train one preset with fold K held out; validation metrics at the end."""
        from modise.engine.training.train import train

        cfg = _train_config(
            preset=preset, size=size, data=str(data), fold=None if fold is not None and fold < 0 else fold,
            random_weights=random_weights, max_steps=max_steps, max_epochs=max_epochs, batch_size=batch_size,
            accumulate=accumulate, lr=lr, warmup_steps=warmup_steps, image_size=image_size, num_workers=num_workers,
            checkpoint_every=checkpoint_every, accelerator=accelerator, devices=devices, num_nodes=num_nodes,
            strategy=strategy, precision=precision, override=override, seed=seed,
        )
        metrics = train(cfg, out, resume=resume, overwrite=overwrite)
        if metrics:
            _echo(metrics, as_json)

    @app.command("cv")
    def cv_cmd(
        data: Path = typer.Option(..., "--data"),
        out: Path = typer.Option(..., "--out", help="CV folder: fold0/ .. fold{K-1}/ and report/."),
        preset: str = typer.Option("m-odise", "--preset", help=PRESET_HELP),
        size: str = typer.Option("full", "--size"),
        folds: int = typer.Option(5, "--folds"),
        random_weights: bool = typer.Option(False, "--random-weights"),
        max_steps: Optional[int] = typer.Option(None, "--max-steps"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size"),
        lr: Optional[float] = typer.Option(None, "--lr"),
        image_size: Optional[int] = typer.Option(None, "--image-size"),
        accelerator: str = typer.Option("auto", "--accelerator"),
        devices: str = typer.Option("auto", "--devices"),
        num_nodes: int = typer.Option(1, "--num-nodes"),
        strategy: str = typer.Option("auto", "--strategy"),
        override: Optional[list[str]] = typer.Option(None, "--override"),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite", help="Start all folds again."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """5-fold cross-validation (finished folds are kept), then the variant's table."""
        from modise.engine.training.cv import cross_validate

        cfg = _train_config(
            preset=preset, size=size, data=str(data), random_weights=random_weights, max_steps=max_steps,
            batch_size=batch_size, lr=lr, image_size=image_size, accelerator=accelerator, devices=devices,
            num_nodes=num_nodes, strategy=strategy, override=override, seed=seed,
        )
        report = cross_validate(cfg, out, folds, overwrite=overwrite)
        if report:
            typer.echo(json.dumps(report, indent=2, default=str) if as_json else f"report written to {out / 'report'}")

    @app.command("predict")
    def predict_cmd(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="Training run folder (or its model/ folder)."),
        input: Optional[list[Path]] = typer.Option(None, "--input", help="Image files or folders (PNG, JPEG, TIFF, DICOM); repeatable."),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset; with --fold, predict that fold's images."),
        fold: Optional[int] = typer.Option(None, "--fold", min=0, help="Fold K of DATA/folds.json to predict (needs --data)."),
        out: Path = typer.Option(..., "--out"),
        dicom_seg: bool = typer.Option(False, "--dicom-seg", help="Write a DICOM SEG per DICOM input."),
        batch_size: int = typer.Option(1, "--batch-size"),
        object_mask_threshold: Optional[float] = typer.Option(None, "--score-threshold", help="Keep segments scoring above this."),
        no_overlays: bool = typer.Option(False, "--no-overlays"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: cuda if available)."),
        overwrite: bool = typer.Option(False, "--overwrite"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Predict lesions; writes COCO panoptic (with scores), heatmaps, overlays and DICOM SEG."""
        from modise.engine.prediction.writer import predict_files

        summary = predict_files(
            checkpoint, input, out, dicom_seg=dicom_seg, batch_size=batch_size, overwrite=overwrite,
            overlays=not no_overlays, device=device, object_mask_threshold=object_mask_threshold,
            data=data, fold=fold,
        )
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(f"{summary['images']} images, {summary['segments']} segments -> {summary['out']}"
                       + (f" ({len(summary['errors'])} problems, see summary.json)" if summary["errors"] else ""))

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("modise-demo"), "--out"),
        minutes: float = typer.Option(8.0, "--minutes", help="Time budget for the whole demo."),
        seed: int = typer.Option(0, "--seed"),
        overwrite: bool = typer.Option(False, "--overwrite"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Synthetic phantoms -> tiny M-ODISE -> train -> evaluate -> OUT/report.md (offline, CPU)."""
        from modise.engine.demo import run_demo

        metrics = run_demo(out, minutes=minutes, seed=seed, overwrite=overwrite)
        if as_json:
            _echo(metrics, as_json)
        else:
            from modise.engine.demo import print_summary

            print_summary(metrics)
