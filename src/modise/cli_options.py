"""The command line's one vocabulary: option types shared by every command, and the command classes
that give every command ``--threads``, full one-line summaries and hidden old spellings.

Conventions (docs/reference/cli/index.md): an option's first ``--long`` name is its name; further
long names are older spellings kept as hidden aliases (they parse, help does not list them).
Defaults show as Typer's ``[default: ...]`` (``show_default="..."`` when the default is derived).
Bad values are refused at the CLI edge (Click's usage error: one sentence, exit 2, before anything
is read or written), each kind with one wording.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from enum import Enum
from typing import Annotated, Any, Literal, Optional, get_args

import typer
import typer.core
import typer.main

from modise.model.presets import preset_names

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Use at most ``n`` CPU threads in torch / BLAS / OpenMP (set before torch is imported, or applied now)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n)
    os.environ["MODISE_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _apply_threads(value: Optional[int]) -> Optional[int]:
    if value is not None:
        limit_threads(value)
    return value


# Before or after the subcommand (`modise --threads 2 train ...` = `modise train ... --threads 2`); parsed before
# the command body imports torch.
Threads = Annotated[Optional[int], typer.Option(
    "--threads", min=1, envvar="MODISE_THREADS", callback=_apply_threads, expose_value=False,
    show_default="all cores", help="Use at most N CPU threads (torch, BLAS, OpenMP), e.g. on a shared machine.")]


def visible_names(opts: list[str]) -> list[str]:
    """The names help lists: short flags and the first long name (later long names are hidden aliases)."""
    longs = [o for o in opts if o.startswith("--")]
    return [o for o in opts if not o.startswith("--") or o == longs[0]]


def summary_line(help_text: Optional[str]) -> str:
    """A command's whole first paragraph on one line (Click cuts it at 45 characters or its first '. ')."""
    return " ".join((help_text or "").strip().split("\n\n")[0].split())


def _threads_param() -> Any:
    """A fresh click parameter for ``--threads``, built by Typer from the one declaration above."""
    probe = typer.Typer()

    @probe.command()
    def _probe(threads: Threads = None) -> None:  # pragma: no cover - never invoked
        pass

    return typer.main.get_command(probe).params[0]


class ModiseCommand(typer.core.TyperCommand):
    """A leaf command: accepts ``--threads``, lists only the current option names, full summary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any("--threads" in getattr(p, "opts", ()) for p in self.params):
            self.params.append(_threads_param())

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or summary_line(self.help)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        saved = [(p, p.opts) for p in self.params]
        try:
            for p, opts in saved:
                p.opts = visible_names(opts)
            super().format_options(ctx, formatter)
        finally:
            for p, opts in saved:
                p.opts = opts


class ModiseGroup(typer.core.TyperGroup):
    """A command group whose own summary is not truncated either."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or summary_line(self.help)


class ModiseTyper(typer.Typer):
    """``typer.Typer`` whose commands are :class:`ModiseCommand` and groups :class:`ModiseGroup`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", ModiseGroup)
        kwargs.setdefault("rich_markup_mode", None)  # "[default 512]." must not be eaten as rich markup
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        kwargs.setdefault("cls", ModiseCommand)
        return super().command(*args, **kwargs)


class ModelSize(str, Enum):
    """Architecture size, the same choice and default (full) in every command."""

    full = "full"
    tiny = "tiny"


def size_value(size: "ModelSize | str") -> str:
    """The plain string of a --size value."""
    return size.value if isinstance(size, ModelSize) else str(size)


# ---------------------------------------------------------------- value parsers
# One wording per kind of error, Typer's own: a number out of range reads as its `min=` check
# ("Input should be greater than ..."), a wrong choice as its Enum/Literal check ("'x' is not one of 'a', 'b'.").
def positive_float(value: Any) -> float:
    """Typer parser for a number > 0."""
    try:
        v = float(value)
    except ValueError:
        raise typer.BadParameter("Input should be a valid number, unable to parse string as a number") from None
    if not v > 0:
        raise typer.BadParameter("Input should be greater than 0")
    return v


def multiple_of(step: int, why: str):
    """Typer parser factory: a positive whole number that is a multiple of ``step`` (``why``: the reason)."""

    def parse(value: Any) -> int:
        try:
            v = int(value)
        except ValueError:
            raise typer.BadParameter("Input should be a valid integer, unable to parse string as an integer") from None
        if v < step or v % step:
            raise typer.BadParameter(f"Input should be a positive multiple of {step} ({why})")
        return v

    return parse


def one_of(choices: tuple[str, ...], aliases: Optional[dict[str, str]] = None):
    """Typer parser factory: one of ``choices`` (case-insensitive; ``aliases`` maps other spellings), as spelled there."""

    def parse(value: Any) -> str:
        v = str(getattr(value, "value", value)).strip()  # a default may be an Enum member
        v = (aliases or {}).get(v.lower(), v)
        for c in choices:
            if v.lower() == c.lower():
                return c
        raise ValueError(f"'{value}' is not one of {', '.join(repr(c) for c in choices)}.")  # Typer: "Value error, ..."

    return parse


def choices_metavar(choices: tuple[str, ...]) -> str:
    """The metavar Typer writes for a choice, for options whose values are parsed by :func:`one_of`."""
    return "<" + "|".join(choices) + ">"


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


PRECISIONS = tuple(p.value for p in Precision)
# Short names people type (and `benchmark` took): the Lightning name they stand for.
PRECISION_ALIASES = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed", "16": "16-mixed",
                     "fp64": "64-true", "64": "64-true"}
PRECISION_HELP = "Lightning precision; auto: bf16-mixed on a GPU that supports it, else 32-true (fp32, bf16 also accepted)."


def devices_value(value: str) -> str:
    """Typer parser for --devices: auto, a count (-1: all) or a comma list of device indices."""
    v = str(value).strip()
    count = v == "-1" or (v.isdigit() and int(v) > 0)
    index_list = "," in v and all(p.strip().isdigit() for p in v.split(","))
    if v == "auto" or count or index_list:
        return v
    raise ValueError(f"'{value}' is not auto, a device count (-1: all) or a list like 0,1.")


DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def torch_device(value: str) -> str:
    """Typer parser for a one-device --device: auto, cpu, cuda, cuda:N or mps (gpu: cuda)."""
    v = str(value).strip().lower()
    v = "cuda" if v == "gpu" else v
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
        return v
    raise ValueError(f"'{value}' is not one of {', '.join(repr(c) for c in DEVICE_CHOICES)}.")


def auto_device(device: Optional[str]) -> Optional[str]:
    """``None`` for ``auto`` (the pipeline's choice: cuda when available, else cpu), else ``device``."""
    return None if device in (None, "auto") else device


def fold_value(value: str) -> int:
    """Typer parser for train's --fold: K >= 0, or all (also -1) to hold no fold out (returned as -1)."""
    v = str(value).strip().lower()  # the default arrives as an int
    if v in ("all", "-1"):
        return -1
    if v.isdigit():
        return int(v)
    raise ValueError(f"'{value}' is not a fold number (0, 1, ...) or all.")


def default_shown(option_type: Any, show_default: "bool | str") -> Any:
    """The shared ``option_type`` with another default shown (True: the parameter's own; a text: ``[default: (text)]``),
    for a command whose default differs (e.g. `mame train`'s recipe)."""
    base, info = get_args(option_type)
    info = copy.copy(info)
    info.show_default = show_default
    return Annotated[base, info]


# ---------------------------------------------------------------- options shared by several commands
# One declaration per concept; a parameter reads ``max_steps: MaxSteps = None``.
Size = Annotated[ModelSize, typer.Option(
    "--size", help="Architecture size: full (the paper's; pretrained weights, or --random-weights offline) or tiny (CPU tests, demo).")]
RandomWeights = Annotated[bool, typer.Option(
    "--random-weights", help="Seeded random weights instead of pretrained ones (offline, no download).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace the contents of a non-empty --out that modise wrote (else it is refused).")]
Preset = Annotated[str, typer.Option("--preset", metavar="<name|yaml>",
                                     help=f"A preset ({', '.join(preset_names())}) or a preset YAML.")]
# A modise training run (train's --out) to segment with; a diffusers pipeline (hub id or folder) to sample with.
RUN_HELP = "Training run folder (train's --out, or its model/ folder)."
MODEL_METAVAR = "<hub-id|folder>"
# One device for inference; Lightning's accelerator (with --devices) for training.
Device = Annotated[str, typer.Option(
    "--device", parser=torch_device, metavar=choices_metavar(DEVICE_CHOICES), show_default=True,
    help="Where to run: auto picks cuda when PyTorch sees a GPU, else cpu.")]
AcceleratorOpt = Annotated[Accelerator, typer.Option(
    "--device", "--accelerator", help="Where to train (Lightning's accelerator); auto picks a GPU when there is one.")]
Devices = Annotated[str, typer.Option(
    "--devices", parser=devices_value, metavar="<auto|N|0,1,..>", help="Devices per node: auto, a count or a list like 0,1.")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", parser=one_of(PRECISIONS, PRECISION_ALIASES), metavar=choices_metavar(PRECISIONS), help=PRECISION_HELP)]
NumNodes = Annotated[int, typer.Option("--num-nodes", min=1, help="Machines taking part (torchrun or SLURM).")]
Strategy = Annotated[Literal["auto", "ddp"], typer.Option(
    "--strategy", help="auto, or ddp for several GPUs or machines (torchrun or SLURM).")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed of weights, augmentation and order.")]

# ---------------------------------------------------------------- training options
# `train`, `cv`, `reproduce` and (the same names) `mame train`.
MaxSteps = Annotated[Optional[int], typer.Option(
    "--max-steps", min=1, show_default="10000", help="Optimiser steps (cv, reproduce: per fold).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, show_default="2", help="Images per device and step.")]
GradAccum = Annotated[Optional[int], typer.Option(
    "--grad-accum", "--accumulate", min=1, show_default="1", help="Gradient accumulation steps.")]
Lr = Annotated[Optional[float], typer.Option("--lr", parser=positive_float, show_default="1e-4", help="AdamW learning rate.")]
GradClip = Annotated[Optional[float], typer.Option(
    "--grad-clip", "--clip", min=0.0, show_default="0.01", help="Gradient-norm clip, 0 = off.")]
WarmupSteps = Annotated[Optional[int], typer.Option(
    "--warmup-steps", min=0, show_default="the preset's fraction of the run; ODISE 500/184375",
    help="Linear warm-up steps.")]
ImageSize = Annotated[Optional[int], typer.Option(
    "--image-size", min=32, show_default="the preset's input_size: 1024 full, 128 tiny",
    help="LSJ crop side, a multiple of 32; also the shortest edge the model then predicts at.")]
ReferenceBatch = Annotated[Optional[int], typer.Option(
    "--reference-batch", min=1, show_default="off",
    help="Total batch that --lr and --max-steps are meant for (e.g. ODISE's 64): lr scaled linearly, steps inversely "
         "to the effective batch (detectron2's auto_scale_workers).")]
IntensityJitter = Annotated[bool, typer.Option(
    "--intensity-jitter", help="Random gamma/contrast/brightness after LSJ (in neither ODISE nor Mask2Former).")]
NumWorkers = Annotated[Optional[int], typer.Option(
    "--workers", "--num-workers", min=0, show_default="auto: 0 on a CPU, up to 8 per GPU",
    help="DataLoader worker processes (0: load in the main process).")]
CheckpointEvery = Annotated[Optional[int], typer.Option(
    "--checkpoint-every", "--ckpt-every", min=1, show_default="100", help="Steps between checkpoints.")]
Overrides = Annotated[Optional[list[str]], typer.Option(
    "--override", metavar="<KEY=VALUE>", help="Model config KEY=VALUE, dotted keys for nested settings (e.g. inference.overlap_threshold=0.7); repeatable.")]

# ---------------------------------------------------------------- data and sampling options
MaxImageSize = Annotated[Optional[int], typer.Option(
    "--max-image-size", "--max-size", min=32, help="Downscale so the longer side is at most this many pixels.")]
SamplingSteps = Annotated[int, typer.Option("--sampling-steps", "--steps", min=1, help="DPM-Solver denoising steps.")]

# ---------------------------------------------------------------- archive options (predict, prepare)
Workers = Annotated[Optional[int], typer.Option(
    "--workers", min=1, show_default="all cores; predict: 1, a writer thread",
    help="Worker processes that read or write images in parallel.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out: images already written are skipped.")]
