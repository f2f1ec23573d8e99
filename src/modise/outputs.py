"""Safe output folders: refuse to clobber, stage in a temporary sibling, move into place.

Every command that writes a folder goes through :func:`output_dir`, so a crash never
leaves a half-written result where a finished one is expected, and an existing
non-empty folder is only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modise.errors import ModiseError


def check_output_dir(out: str | Path, overwrite: bool) -> Path:
    """Raise unless ``out`` is absent, empty, or ``overwrite`` is set."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ModiseError(f"Output '{out}' exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ModiseError(f"Output folder '{out}' is not empty; pass --overwrite to replace it.")
    return out


@contextlib.contextmanager
def output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder that replaces ``out`` atomically when the block succeeds.

    The staging folder lives beside ``out`` (same filesystem, so the final rename is
    atomic). On an exception it is removed and ``out`` is left untouched.
    """
    out = check_output_dir(out, overwrite).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    write_bytes_atomic(path, json.dumps(obj, indent=2, default=_json_default).encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
