"""Option checks every command shares, for values whose validity depends on more than their type
(the machine, a size rule, a dataset). Each raises :class:`~modise.errors.UsageError`: one sentence
naming the option, exit 2; commands call them before they read or write anything."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modise.errors import ModiseError, UsageError

# the largest image side any command accepts: a 4096-px mammogram at 4x, far below what fits in memory
MAX_SIDE = 16384


def check_side(value: int | None, option: str, multiple: int = 1, minimum: int = 32) -> int | None:
    """An image side in pixels: ``minimum`` .. :data:`MAX_SIDE` and a multiple of ``multiple`` (or not given)."""
    if value is None:
        return None
    if not minimum <= value <= MAX_SIDE:
        raise UsageError(option, f"must be {minimum} to {MAX_SIDE} pixels, not {value}.")
    if value % multiple:
        raise UsageError(option, f"must be a multiple of {multiple}, not {value}.")
    return value


def check_at_most(value: int | None, option: str, maximum: int, why: str) -> int | None:
    """A count no larger than ``maximum`` (``why`` says what bounds it)."""
    if value is not None and value > maximum:
        raise UsageError(option, f"{value} is more than {maximum:,} ({why}).")
    return value


def check_device(device: str | None, option: str = "--device") -> str | None:
    """A torch device (cpu, cuda, cuda:N, mps) that exists on this machine, or ``None`` / ``auto`` (the command's
    choice: cuda when there is one)."""
    if device is None or device == "auto":
        return device
    d = device.strip()
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", d):
        raise UsageError(option, f"expected cpu, cuda, cuda:N or mps, not '{device}'.")
    if d.startswith("cuda"):
        _need_cuda(option, d, int(d.partition(":")[2] or 0))
    if d == "mps":
        _need_mps(option, d)
    return d


def check_accelerator(accelerator: str, option: str = "--accelerator") -> str:
    """A Lightning accelerator this machine has (``auto`` and ``cpu`` always do)."""
    if accelerator in ("gpu", "cuda"):
        _need_cuda(option, accelerator, 0)
    elif accelerator == "mps":
        _need_mps(option, accelerator)
    return accelerator


def check_strategy(strategy: str, option: str = "--strategy") -> str:
    """``auto`` or a Lightning strategy name (``ddp``, ``fsdp``, ...)."""
    if strategy == "auto":
        return strategy
    from lightning.pytorch.strategies import StrategyRegistry

    if strategy not in StrategyRegistry.available_strategies():
        raise UsageError(option, f"expected auto or ddp (or another Lightning strategy name), not '{strategy}'.")
    return strategy


def check_preset(preset: str, size: str, overrides: dict[str, Any] | None = None):
    """The preset's validated model config (its YAML read once); an unknown preset or a bad override is a usage error."""
    from modise.model.config import load_preset, preset_path

    try:
        preset_path(preset)
    except ModiseError as e:
        raise UsageError("--preset", str(e)) from None
    try:
        return load_preset(preset, size, overrides or None)
    except ModiseError as e:
        raise UsageError("--override" if overrides else "--preset", str(e)) from None


def check_prepared_data(data: str | Path, option: str = "--data") -> list[list[int]]:
    """A dataset written by ``modise prepare`` (panoptic.json and folds.json); returns its folds."""
    from modise.data.dataset import load_folds

    root = Path(data)
    if not root.is_dir():
        raise UsageError(option, f"'{data}' is not a folder; convert your data with `modise prepare ...` first.")
    if not (root / "panoptic.json").is_file():
        raise UsageError(option, f"'{data}' holds no panoptic.json; convert your data with `modise prepare ...` first.")
    try:
        return load_folds(root)
    except ModiseError as e:
        raise UsageError(option, str(e)) from None


def check_same_settings(out: str | Path, before: dict[str, Any], now: dict[str, Any],
                        options: dict[str, str] | None = None) -> None:
    """Refuse ``--resume`` of run ``out`` with settings ``now`` other than those it was started with (``before``),
    naming every difference in one sentence. ``options``: option names of keys that are not ``--key-name``."""
    diff = [k for k in now if k in before and before[k] != now[k]]
    if diff:
        name = {**{k: "--" + k.replace("_", "-") for k in diff}, **(options or {})}
        said = "; ".join(f"{name[k]} {_shown(before[k])}, not {_shown(now[k])}" for k in diff)
        raise UsageError("--resume", f"'{out}' was started with other settings ({said}); resume it with the same options, "
                                     f"or start it again with --overwrite.")


def _shown(value: Any) -> str:
    if value is None:
        return "(default)"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _need_cuda(option: str, value: str, index: int) -> None:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise UsageError(option, f"{value}: PyTorch sees no CUDA GPU on this machine; use cpu.")
    if index >= n:
        raise UsageError(option, f"{value}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}.")


def _need_mps(option: str, value: str) -> None:
    import torch

    if not torch.backends.mps.is_available():
        raise UsageError(option, f"{value}: Apple MPS is not available on this machine; use cpu.")


def check_disk_room(out: str | Path, n: int, bytes_each: float, option: str = "--n") -> int:
    """``n`` outputs of about ``bytes_each`` bytes must fit in the free space of the disk that will hold ``out``."""
    import shutil

    where = Path(out).expanduser().resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if n * bytes_each > free:
        raise UsageError(option, f"{n:,} images need about {_gb(n * bytes_each)}, more than the {_gb(free)} free on the "
                                 f"disk of '{out}'.")
    return n


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.0f} TB"
