"""Option types shared by the commands: choices and parsers that refuse bad values at the CLI edge
(Click's usage error: one sentence, exit 2, before anything is read or written)."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Optional

import typer


class ModelSize(str, Enum):
    """Architecture size, the same choice and default (full) in every command."""

    full = "full"
    tiny = "tiny"


def positive_float(value: str) -> float:
    """Typer parser for a number > 0 (a bad one is a usage error: one sentence, exit 2)."""
    try:
        v = float(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a number.") from None
    if not v > 0:
        raise typer.BadParameter(f"must be greater than 0, not {value}.")
    return v


def size_value(size: "ModelSize | str") -> str:
    """The plain string of a --size value."""
    return size.value if isinstance(size, ModelSize) else str(size)


class Accelerator(str, Enum):
    """Lightning's accelerators (gpu and cuda are the same on NVIDIA machines)."""

    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    cuda = "cuda"
    mps = "mps"


class Precision(str, Enum):
    """Lightning's precision names; auto: bf16-mixed on a GPU that supports it, else 32-true."""

    auto = "auto"
    fp32 = "32-true"
    bf16_mixed = "bf16-mixed"
    fp16_mixed = "16-mixed"
    bf16_true = "bf16-true"
    fp16_true = "16-true"
    fp64 = "64-true"


def devices_value(value: str) -> str:
    """Typer parser for --devices: auto, a count (-1: all) or a comma list of device indices."""
    v = value.strip()
    count = v == "-1" or (v.isdigit() and int(v) > 0)
    index_list = "," in v and all(p.strip().isdigit() for p in v.split(","))
    if v == "auto" or count or index_list:
        return v
    raise typer.BadParameter(f"expected auto, a device count (-1: all) or a list like 0,1, not '{value}'.")


def torch_device(value: str) -> str:
    """Typer parser for --device: cpu, cuda, cuda:N or mps."""
    if re.fullmatch(r"cpu|mps|cuda(:\d+)?", value.strip()):
        return value.strip()
    raise typer.BadParameter(f"expected cpu, cuda, cuda:N or mps, not '{value}'.")


# ---------------------------------------------------------------- training options
# One declaration per option for `train`, `cv` and `reproduce` (and the same names as `mame train`):
# a parameter reads ``max_steps: MaxSteps = None``.
Size = Annotated[ModelSize, typer.Option("--size", help="Architecture size: full (the paper's) or tiny (CPU tests, demo).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Random frozen parts (offline, no download).")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Optimiser steps (per fold) [10000].")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per device and step [2].")]
GradAccum = Annotated[Optional[int], typer.Option("--grad-accum", "--accumulate", min=1, help="Gradient accumulation steps [1].")]
Lr = Annotated[Optional[float], typer.Option("--lr", parser=positive_float, help="AdamW learning rate [1e-4].")]
GradClip = Annotated[Optional[float], typer.Option("--grad-clip", "--clip", min=0.0, help="Gradient-norm clip, 0 = off [0.01].")]
WarmupSteps = Annotated[Optional[int], typer.Option(
    "--warmup-steps", min=0, help="Linear warm-up steps [the preset's fraction of the run; ODISE 500/184375].")]
ImageSize = Annotated[Optional[int], typer.Option(
    "--image-size", min=32, help="LSJ crop side, a multiple of 32; also the shortest edge the model then predicts at "
                                 "[the preset's input_size: 1024 full, 128 tiny].")]
ReferenceBatch = Annotated[Optional[int], typer.Option(
    "--reference-batch", min=1, help="Total batch that --lr and --max-steps are meant for (e.g. ODISE's 64): lr scaled "
                                     "linearly, steps inversely to the effective batch (detectron2's auto_scale_workers) [off].")]
IntensityJitter = Annotated[bool, typer.Option(
    "--intensity-jitter", help="Random gamma/contrast/brightness after LSJ (in neither ODISE nor Mask2Former) [off].")]
NumWorkers = Annotated[Optional[int], typer.Option("--num-workers", min=0, help="DataLoader worker processes [0].")]
CheckpointEvery = Annotated[Optional[int], typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints [100].")]
AcceleratorOpt = Annotated[Accelerator, typer.Option("--accelerator", help="Where to train.")]
Devices = Annotated[str, typer.Option("--devices", parser=devices_value, help="Devices per node: auto, a count or a list like 0,1.")]
NumNodes = Annotated[int, typer.Option("--num-nodes", min=1, help="Machines (torchrun or SLURM).")]
Strategy = Annotated[str, typer.Option("--strategy", help="auto or ddp (multi-GPU / multi-node, torchrun or SLURM).")]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", help="auto: bf16-mixed on a GPU, else 32-true.")]
Overrides = Annotated[Optional[list[str]], typer.Option(
    "--override", help="Model config KEY=VALUE, dotted keys for nested settings (e.g. inference.overlap_threshold=0.7); repeatable.")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed of weights, augmentation and order.")]

# ---------------------------------------------------------------- archive options (predict, prepare)
Workers = Annotated[Optional[int], typer.Option(
    "--workers", min=1, help="Processes that read or write images in parallel [all cores; predict: 1, a writer thread].")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out: images already written are skipped.")]
