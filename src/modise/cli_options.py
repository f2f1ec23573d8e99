"""Option types shared by the commands: choices and parsers that refuse bad values at the CLI edge
(Click's usage error: one sentence, exit 2, before anything is read or written)."""

from __future__ import annotations

import re
from enum import Enum

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
