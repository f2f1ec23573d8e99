"""``modise mame prepare`` and ``modise mame train``: teach Stable Diffusion a mammography domain."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import (
    MODEL_METAVAR, Accelerator, AcceleratorOpt, CheckpointEvery, Devices, GradAccum, GradClip, MaxSteps, ModelSize, ModiseTyper, NumNodes,
    NumWorkers, Overwrite, PrecisionOpt, RandomWeights, Size, choices_metavar, default_shown, multiple_of, one_of,
    positive_float, size_value,
)
from modise.cli_options import Workers as PrepareWorkers  # processes, not DataLoader workers
from modise.errors import ModiseError
from modise.synthesis.mame_rows import FINDINGS
from modise.synthesis.prompts import VENDORS

mame_app = ModiseTyper(help="Train your own MAM-E: prepare mammograms with prompts, fine-tune SD.", no_args_is_help=True)
VAE_SIDE = multiple_of(8, "the VAE's downscale")
RECIPE = "the recipe's"
RecipeMaxSteps = default_shown(MaxSteps, RECIPE)
RecipeGradAccum = default_shown(GradAccum, RECIPE)
RecipeGradClip = default_shown(GradClip, "the recipe's, 1.0")
LoaderWorkers = default_shown(NumWorkers, True)
CheckpointSteps = default_shown(CheckpointEvery, True)


class RecipeChoice(str, Enum):
    mame = "mame"
    inpaint = "inpaint"
    inpaint_mass = "inpaint-mass"
    light = "light"


def _say(msg: str) -> None:
    from modise.progress import stderr_console

    stderr_console().print(f"[dim]mame train:[/] {msg}")


def _warn(msg: str) -> None:
    from modise.progress import stderr_console

    stderr_console().print(f"[yellow]warning:[/] {msg}")


@mame_app.command("prepare")
def prepare(
    root: Optional[Path] = typer.Option(None, "--root", help="VinDr-Mammo root or a folder of DICOM/PNG images."),
    csv: Optional[Path] = typer.Option(None, "--csv", show_default="ROOT/finding_annotations.csv|metadata.csv", help="Metadata CSV."),
    data: Optional[Path] = typer.Option(None, "--data", help="Canonical panoptic dataset (inpainting masks)."),
    inpainting: bool = typer.Option(False, "--inpainting", help="Lesion images with box-mask PNGs (VinDr findings)."),
    findings: str = typer.Option("lesions", "--findings", parser=one_of(FINDINGS), metavar=choices_metavar(FINDINGS),
                                 help="With --inpainting on VinDr: lesions (every finding but 'No Finding', the data of "
                                      "the released vindr_lesion-inpainting) | mass (Mass findings only)."),
    all_vendors: bool = typer.Option(False, "--all-vendors", help="VinDr: keep every vendor's images (MAM-E: Siemens only)."),
    vendor: Optional[str] = typer.Option(None, "--vendor", parser=one_of(VENDORS), metavar=choices_metavar(VENDORS),
                                         show_default="from DICOM Manufacturer", help="Mammography unit maker in the prompts."),
    frame: int = typer.Option(512, "--image-size", "--resolution", parser=VAE_SIDE, help="Output side, a multiple of 8 (MAM-E: 512)."),
    out: Path = typer.Option(..., "--out", help="Output folder (refused if not empty unless --overwrite)."),
    overwrite: Overwrite = False,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    workers: PrepareWorkers = None,
) -> None:
    """Write 512x512 left-facing 8-bit PNGs + metadata.jsonl prompts for MAM-E training."""
    from modise.outputs import output_dir
    from modise.synthesis.mame_prepare import prepare_mame_folder, prepare_panoptic

    if (root is None) == (data is None):
        raise ModiseError("Give exactly one of --root (images + CSV) or --data (panoptic dataset).")
    skipped: list[str] = []

    def warn(msg: str) -> None:  # every skipped row or file, on stderr and in prepare_report.json
        skipped.append(msg)
        _warn(msg)

    with output_dir(out, overwrite, [root, data, csv]) as stage:
        if data is not None:
            records = prepare_panoptic(data, stage, frame, warn=warn)
        else:
            if not root.is_dir():
                raise ModiseError(f"Folder '{root}' not found.")
            records = prepare_mame_folder(root, csv, stage, inpainting, vendor, frame, warn=warn, findings=findings,
                                     all_vendors=all_vendors, workers=workers)
        summary = {"out": str(out), "images": len(records), "inpainting": inpainting or data is not None}
        if data is None:
            summary.update(findings=findings if inpainting else "No Finding", all_vendors=all_vendors)
        (stage / "prepare_report.json").write_text(json.dumps({**summary, "warnings": skipped}, indent=2))
    typer.echo(json.dumps(summary) if as_json else f"prepared {len(records)} image(s) in {out}")


@mame_app.command("train")
def train(
    data: Path = typer.Option(..., "--data", help="Folder from `modise mame prepare`."),
    base: Optional[str] = typer.Option(None, "--model", "--base", metavar=MODEL_METAVAR,
                                       show_default="SD 1.5, or SD inpainting with --inpainting",
                                       help="Pipeline to fine-tune: hub id or folder."),
    out: Path = typer.Option(..., "--out", help="Run folder (config.yaml, checkpoints/, logs/); ends as a diffusers pipeline for --model."),
    inpainting: bool = typer.Option(False, "--inpainting", help="Train the 9-channel inpainting UNet."),
    size: Size = ModelSize.full,
    random_weights: RandomWeights = False,
    recipe: Optional[RecipeChoice] = typer.Option(
        None, "--recipe", show_default="mame for --size full (inpaint with --inpainting), else light",
        help="mame: MAM-E's batch 16 x accumulation 16, 6000 steps, lr 1e-6 | inpaint: the released "
        "vindr_lesion-inpainting run, batch 8 x 1, 15000 steps | inpaint-mass: MAM-E's Mass-only run, batch 16 x 2, "
        "6000 steps | light: batch 1, 1000 steps; the options below override it."),
    max_steps: RecipeMaxSteps = None,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, show_default=RECIPE, help="Images per device and step."),
    lr: Optional[float] = typer.Option(None, "--lr", parser=positive_float, show_default="the recipe's 1e-6; LoRA 1e-4",
                                       help="Constant AdamW learning rate."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", min=0.0, show_default="1e-2", help="AdamW weight decay."),
    grad_accum: RecipeGradAccum = None,
    grad_clip: RecipeGradClip = None,
    precision: PrecisionOpt = "auto",
    accelerator: AcceleratorOpt = Accelerator.auto,
    devices: Devices = "auto",
    num_nodes: NumNodes = 1,
    resolution: Optional[int] = typer.Option(None, "--image-size", "--resolution", parser=VAE_SIDE,
                                              show_default="the model's, 512", help="Training side, a multiple of 8."),
    val_every: int = typer.Option(500, "--val-every", min=0, help="Validation strip every N steps (0 = never)."),
    val_steps: int = typer.Option(20, "--val-sampling-steps", "--val-steps", min=1, help="Denoising steps of the validation images."),
    checkpoint_every: CheckpointSteps = 500,
    resume: bool = typer.Option(False, "--resume", help="Continue OUT/checkpoints/last.ckpt."),
    freeze_text_encoder: bool = typer.Option(False, "--freeze-text-encoder", help="Train the UNet only."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters on the UNet attention, not the full model."),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA rank (alpha = rank)."),
    lora_text_encoder: bool = typer.Option(False, "--lora-text-encoder",
                                           help="With --lora: adapters on the text encoder too (else it stays frozen)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of weights, data order and noise."),
    num_workers: LoaderWorkers = 0,
    overwrite: Overwrite = False,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Fine-tune Stable Diffusion on prepared mammograms (MAM-E recipe, Lightning)."""
    from modise.synthesis.mame_config import MameTrainConfig
    from modise.synthesis.mame_train import train_mame

    if lora_text_encoder and not lora:
        raise ModiseError("--lora-text-encoder needs --lora.")
    if lora_text_encoder and freeze_text_encoder:
        raise ModiseError("--lora-text-encoder and --freeze-text-encoder contradict each other; pick one.")
    cfg = MameTrainConfig(
        data=str(data), base=base, size=size_value(size), random_weights=random_weights, inpainting=inpainting,
        resolution=resolution, recipe=recipe.value if recipe is not None else None, batch_size=batch_size,
        grad_accum=grad_accum, max_steps=max_steps, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
        train_text_encoder=lora_text_encoder if lora else not freeze_text_encoder, lora_rank=lora_rank if lora else 0,
        seed=seed, num_workers=num_workers, devices=devices, num_nodes=num_nodes, precision=precision,
        accelerator=Accelerator(accelerator).value,
        checkpoint_every=checkpoint_every, val_every=val_every, val_steps=val_steps,
    )
    summary = train_mame(cfg, out, resume=resume, overwrite=overwrite, say=_say)
    summary["out"] = str(out)
    typer.echo(json.dumps(summary) if as_json else
               f"trained to step {summary['global_step']} (effective batch {summary['effective_batch']}); "
               f"pipeline in {out} (loss {summary['loss_before']:.4f} -> {summary.get('loss_after', float('nan')):.4f})")
