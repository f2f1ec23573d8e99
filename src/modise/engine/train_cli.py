"""``modise train | cv | demo`` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import (
    Accelerator, AcceleratorOpt, BatchSize, CheckpointEvery, Devices, GradAccum, GradClip, ImageSize, IntensityJitter,
    Lr, MaxSteps, ModelSize, NumNodes, NumWorkers, Overrides, Overwrite, Precision, PrecisionOpt, Preset,
    RandomWeights, ReferenceBatch, Seed, Size, Strategy, WarmupSteps, fold_value, positive_float, size_value,
)
from modise.engine.demo import DEMO_MINUTES, DEMO_STEPS


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


def register(app: typer.Typer) -> None:
    """Add ``train``, ``cv`` and ``demo`` to the ``modise`` app."""

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
        """5-fold cross-validation (finished folds are kept unless --overwrite, an interrupted one resumes), then the variant's table: mean ± std over folds and the pooled out-of-fold estimate with patient-level CIs."""
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

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("modise-demo"), "--out", help="Demo folder (data/, run/, report.md/.html)."),
        steps: int = typer.Option(DEMO_STEPS, "--max-steps", "--steps", min=1,
                                  help="Optimiser steps of the recipe (with the seed they fix the numbers while the budget allows them)."),
        minutes: float = typer.Option(
            DEMO_MINUTES, "--minutes", parser=positive_float,
            help="Wall-clock budget of the whole demo. The demo measures its first steps; if the recipe would not fit, "
                 "it evaluates on fewer phantoms, then trains at batch 2, then fewer steps, and says so (under 400 steps the "
                 "result is labelled not meaningful)."),
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
