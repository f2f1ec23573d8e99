"""``modise mame prepare`` and ``modise mame train``: teach Stable Diffusion a mammography domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.errors import ModiseError

mame_app = typer.Typer(help="Train your own MAM-E: prepare mammograms with prompts, fine-tune SD.", no_args_is_help=True)


def _warn(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)


@mame_app.command("prepare")
def prepare(
    root: Optional[Path] = typer.Option(None, "--root", help="VinDr-Mammo root or a folder of DICOM/PNG images."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Metadata CSV [ROOT/finding_annotations.csv|metadata.csv]."),
    data: Optional[Path] = typer.Option(None, "--data", help="Canonical panoptic dataset (inpainting masks)."),
    inpainting: bool = typer.Option(False, "--inpainting", help="Lesion images with mask PNGs (VinDr masses)."),
    vendor: Optional[str] = typer.Option(None, "--vendor", help="siemens | hologic (else from DICOM Manufacturer)."),
    side: int = typer.Option(512, "--resolution", help="Output side (MAM-E: 512)."),
    out: Path = typer.Option(..., "--out", help="Output folder (refused if not empty unless --overwrite)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary."),
) -> None:
    """Write 512x512 left-facing 8-bit PNGs + metadata.jsonl prompts for MAM-E training."""
    from modise.outputs import output_dir
    from modise.synthesis.mame_prepare import prepare_folder, prepare_panoptic
    from modise.synthesis.prompts import VENDORS

    if (root is None) == (data is None):
        raise ModiseError("Give exactly one of --root (images + CSV) or --data (panoptic dataset).")
    if vendor is not None and vendor.lower() not in VENDORS:
        raise ModiseError(f"Unknown vendor '{vendor}'; choose one of: {', '.join(VENDORS)}.")
    with output_dir(out, overwrite, [root, data, csv]) as stage:
        if data is not None:
            records = prepare_panoptic(data, stage, side, warn=_warn)
        else:
            if not root.is_dir():
                raise ModiseError(f"Folder '{root}' not found.")
            records = prepare_folder(root, csv, stage, inpainting, vendor and vendor.lower(), side, warn=_warn)
    summary = {"out": str(out), "images": len(records), "inpainting": inpainting or data is not None}
    typer.echo(json.dumps(summary) if as_json else f"prepared {len(records)} image(s) in {out}")


@mame_app.command("train")
def train(
    data: Path = typer.Option(..., "--data", help="Folder from `modise mame prepare`."),
    base: Optional[str] = typer.Option(None, "--base", help="Base pipeline hub id or folder [SD 1.5 / SD inpainting]."),
    out: Path = typer.Option(..., "--out", help="Run folder; ends as a diffusers pipeline for --model."),
    inpainting: bool = typer.Option(False, "--inpainting", help="Train the 9-channel inpainting UNet."),
    size: str = typer.Option("full", "--size", help="full | tiny (with --random-weights)."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Random-weight base, offline."),
    max_steps: int = typer.Option(1000, "--max-steps", min=1, help="Total optimizer steps (resume counts on)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr", help="Constant AdamW learning rate [1e-6 (MAM-E); LoRA 1e-4]."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1),
    clip: float = typer.Option(1.0, "--clip", help="Gradient-norm clip (0 = off)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Lightning precision [bf16-mixed on GPU, else 32]."),
    devices: str = typer.Option("auto", "--devices"),
    num_nodes: int = typer.Option(1, "--num-nodes", min=1),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Training side [the model's, 512]."),
    val_every: int = typer.Option(500, "--val-every", help="Validation strip every N steps (0 = never)."),
    val_steps: int = typer.Option(20, "--val-steps", help="Sampling steps of validation images."),
    ckpt_every: int = typer.Option(500, "--ckpt-every", help="Checkpoint every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT/checkpoints/last.ckpt."),
    freeze_text_encoder: bool = typer.Option(False, "--freeze-text-encoder", help="Train the UNet only."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters on the UNet attention, not the full model."),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA rank (alpha = rank)."),
    lora_text_encoder: bool = typer.Option(False, "--lora-text-encoder",
                                           help="With --lora: adapters on the text encoder too [frozen]."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in a non-empty OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary."),
) -> None:
    """Fine-tune Stable Diffusion on prepared mammograms (MAM-E recipe, Lightning)."""
    from modise.outputs import check_output_dir, claim_output_dir, remove_output_dir

    if lora_text_encoder and not lora:
        raise ModiseError("--lora-text-encoder needs --lora.")
    if lora_text_encoder and freeze_text_encoder:
        raise ModiseError("--lora-text-encoder and --freeze-text-encoder contradict each other; pick one.")
    train_text_encoder = lora_text_encoder if lora else not freeze_text_encoder
    if size not in ("full", "tiny"):
        raise ModiseError(f"--size must be full or tiny, not '{size}'.")
    if not resume:
        check_output_dir(out, overwrite, [data, base])
        if overwrite:
            remove_output_dir(out, [data, base])
    claim_output_dir(out, [data, base])
    from modise.synthesis.mame_train import train_mame

    summary = train_mame(
        data, out, base, size, random_weights, inpainting, max_steps, batch_size, lr, grad_accum, clip, precision,
        devices, num_nodes, resolution, val_every, val_steps, ckpt_every, resume, train_text_encoder,
        lora_rank if lora else 0, seed, workers,
    )
    summary["out"] = str(out)
    typer.echo(json.dumps(summary) if as_json else
               f"trained to step {summary['global_step']}; pipeline in {out} (loss {summary['loss_before']:.4f} -> "
               f"{summary.get('loss_after', float('nan')):.4f})")
