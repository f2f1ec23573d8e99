"""``modise train | cv | predict | demo`` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import (
    RUN_HELP, Accelerator, AcceleratorOpt, BatchSize, CheckpointEvery, Device, Devices, GradAccum, GradClip, ImageSize,
    IntensityJitter, Lr, MaxSteps, ModelSize, NumNodes, NumWorkers, Overrides, Overwrite, Precision, PrecisionOpt, Preset,
    RandomWeights, ReferenceBatch, Resume, Seed, Size, Strategy, WarmupSteps, Workers, auto_device, fold_value,
    positive_float, size_value,
)
from modise.engine.demo import DEMO_STEPS


def train_config(**kw):
    import yaml

    from modise.engine.training.config import TrainConfig
    from modise.errors import UsageError

    devices = kw.pop("devices")
    kw["devices"] = int(devices) if devices.isdigit() else devices
    overrides = kw.pop("override") or []
    mo = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError("--override", f"expected KEY=VALUE, not '{item}'.")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError("--override", f"'{value}' in '{item}' is not a YAML value.") from None
        *parents, leaf = key.strip().split(".")  # dotted keys reach nested settings: inference.clip_ensemble=true
        node = mo
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError("--override", f"'{item}' sets a key inside '{part}', which another --override sets to a value.")
        node[leaf] = parsed
    fold = kw.pop("fold", 0)  # None (--fold -1) means train on all: not "not given"
    return TrainConfig(model_overrides=mo, fold=fold, **{k: v for k, v in kw.items() if v is not None})


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


def _device_count(devices: Optional[str]) -> int:
    """predict's --devices as a process count: a count, the length of an index list, or (auto, -1) every GPU."""
    if devices is None:
        return 1
    if devices in ("auto", "-1"):
        import torch

        return max(1, torch.cuda.device_count())
    return len(devices.split(",")) if "," in devices else int(devices)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``cv``, ``predict`` and ``demo`` to the ``modise`` app."""

    @app.command("train")
    def train_cmd(
        data: Path = typer.Option(..., "--data", help="Prepared dataset (canonical panoptic layout with folds.json)."),
        out: Path = typer.Option(..., "--out", help="Run folder (config.yaml, run.json, checkpoints/, model/, logs/, metrics.json)."),
        preset: Preset = "m-odise",
        size: Size = ModelSize.full,
        fold: int = typer.Option(0, "--fold", parser=fold_value, metavar="<K|all>",
                                 help="Fold K (0..K-1) of folds.json held out for validation; all: train on every image."),
        random_weights: RandomWeights = False,
        max_steps: MaxSteps = None,
        max_epochs: Optional[int] = typer.Option(None, "--max-epochs", min=1, show_default="no limit", help="Stop after this many epochs."),
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
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from RUN/checkpoints/last.ckpt."),
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print the held-out metrics as JSON on stdout."),
    ) -> None:
        """Train one preset with fold K held out; validation metrics at the end."""
        from modise.engine.training.train import train

        cfg = train_config(
            preset=preset, size=size_value(size), data=str(data), fold=None if fold < 0 else fold,
            random_weights=random_weights, max_steps=max_steps, max_epochs=max_epochs, batch_size=batch_size,
            grad_accum=grad_accum, reference_batch=reference_batch, lr=lr, grad_clip=grad_clip, warmup_steps=warmup_steps, image_size=image_size, intensity_jitter=intensity_jitter, num_workers=num_workers,
            checkpoint_every=checkpoint_every, accelerator=Accelerator(accelerator).value, devices=devices,
            num_nodes=num_nodes, strategy=strategy, precision=Precision(precision).value, override=override, seed=seed,
        )
        metrics = train(cfg, out, resume=resume, overwrite=overwrite)
        if metrics:
            _echo(metrics, as_json)

    @app.command("cv")
    def cv_cmd(
        data: Path = typer.Option(..., "--data", help="Prepared dataset (canonical panoptic layout with folds.json)."),
        out: Path = typer.Option(..., "--out", help="CV folder: fold0/ .. fold{K-1}/ and report/."),
        preset: Preset = "m-odise",
        size: Size = ModelSize.full,
        folds: int = typer.Option(5, "--folds", min=1, help="Folds to run (0..K-1 of folds.json)."),
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
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    ) -> None:
        """5-fold cross-validation (finished folds are kept unless --overwrite, an interrupted one resumes), then the variant's table."""
        from modise.engine.training.cv import cross_validate

        cfg = train_config(
            preset=preset, size=size_value(size), data=str(data), random_weights=random_weights, max_steps=max_steps,
            batch_size=batch_size, grad_accum=grad_accum, reference_batch=reference_batch, lr=lr, grad_clip=grad_clip, warmup_steps=warmup_steps,
            image_size=image_size, intensity_jitter=intensity_jitter, num_workers=num_workers, checkpoint_every=checkpoint_every,
            accelerator=Accelerator(accelerator).value, devices=devices, num_nodes=num_nodes, strategy=strategy,
            precision=Precision(precision).value, override=override, seed=seed,
        )
        report = cross_validate(cfg, out, folds, overwrite=overwrite)
        if report:
            typer.echo(json.dumps(report, indent=2, default=str) if as_json else f"report written to {out / 'report'}")

    @app.command("predict")
    def predict_cmd(
        checkpoint: Path = typer.Option(..., "--run", "--checkpoint", help=RUN_HELP),
        input: Optional[list[Path]] = typer.Option(None, "--input", help="Image files or folders (PNG, JPEG, TIFF, DICOM); repeatable."),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset; with --fold, predict that fold's images."),
        fold: Optional[int] = typer.Option(None, "--fold", min=0, metavar="<K>", help="Fold K (0..K-1) of DATA/folds.json to predict (needs --data)."),
        out: Path = typer.Option(..., "--out", help="Output folder (panoptic.json, instances.json, panoptic/, heatmaps/, overlays/, dicom_seg/)."),
        dicom_seg: bool = typer.Option(False, "--dicom-seg", help="Write a DICOM SEG per DICOM input."),
        batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per forward pass."),
        object_mask_threshold: Optional[float] = typer.Option(
            None, "--score-threshold", min=0.0, max=1.0, show_default="the run's", help="Keep segments scoring above this, 0-1."),
        no_overlays: bool = typer.Option(False, "--no-overlays", help="Skip the overlay PNGs."),
        device: Device = "auto",
        full_heatmaps: bool = typer.Option(False, "--full-heatmaps", show_default="the inference resolution",
                                           help="Heatmaps at the image's size."),
        workers: Workers = None,
        resume: Resume = False,
        devices: Devices = None,
        num_nodes: NumNodes = 1,
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    ) -> None:
        """Predict lesions; writes COCO panoptic (with scores), heatmaps, overlays and DICOM SEG.

        Exit code 3 when some inputs failed (each named on stderr and in summary.json; the rest are written)."""
        from modise.checks import check_device
        from modise.engine.prediction.writer import predict_files
        from modise.runs import require_complete_run

        device = check_device(device)
        require_complete_run(checkpoint)
        kw = dict(dicom_seg=dicom_seg, batch_size=batch_size, overwrite=overwrite, overlays=not no_overlays, device=auto_device(device),
                  object_mask_threshold=object_mask_threshold, data=data, fold=fold, workers=workers or 1, resume=resume,
                  full_heatmaps=full_heatmaps)
        if devices is not None or num_nodes > 1:
            from modise.engine.prediction.distributed import predict_distributed

            summary = predict_distributed(checkpoint, input, out, devices=_device_count(devices), num_nodes=num_nodes, **kw)
        else:
            summary = predict_files(checkpoint, input, out, **kw)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(f"{summary['images']} images, {summary['segments']} segments -> {summary['out']}"
                       + (f" ({len(summary['errors'])} problems, see summary.json)" if summary["errors"] else ""))
        _exit_on_failed_inputs(summary)

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("modise-demo"), "--out", help="Demo folder (data/, run/, report.md/.html)."),
        steps: int = typer.Option(DEMO_STEPS, "--max-steps", "--steps", min=1,
                                  help="Optimiser steps (fixed, so a seed gives the same numbers anywhere)."),
        minutes: Optional[float] = typer.Option(
            None, "--minutes", parser=positive_float, show_default="no limit",
            help="Upper bound for the whole demo; training stops early (and says so) if it would run past it."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of phantoms, weights and training."),
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print the held-out metrics as JSON on stdout."),
    ) -> None:
        """Synthetic phantoms -> tiny M-ODISE -> train -> evaluate -> OUT/report.md (offline, CPU)."""
        from modise.engine.demo import run_demo

        metrics = run_demo(out, minutes=minutes, seed=seed, overwrite=overwrite, steps=steps)
        if as_json:
            _echo(metrics, as_json)
        else:
            from modise.engine.demo import print_summary

            print_summary(metrics)


def _exit_on_failed_inputs(summary: dict) -> None:
    """Name every failed input on stderr and exit 3 (PartialFailure), so scripts notice."""
    errors = summary.get("errors") or []
    if not errors:
        return
    for e in errors:
        where, what = str(e.get("input")), str(e.get("error"))
        print(f"error: {what if where in what else f'{where}: {what}'}", file=sys.stderr)  # the file named once
    raise typer.Exit(3)
