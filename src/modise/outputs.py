"""Safe output folders: refuse to clobber, stage in a temporary sibling, move into place.

Every command that writes a folder goes through :func:`output_dir` (or, for a folder written
in place such as a training run, :func:`claim_output_dir`), so that

- a crash never leaves a half-written result where a finished one is expected;
- nothing modise did not write is ever deleted: ``--out`` may not be the working folder or
  one of its parents, nor equal or contain an input, and a non-empty folder is only
  replaced with ``overwrite=True`` when it carries the :data:`MARKER` file that modise
  leaves in every folder it writes;
- results get the modes the user's umask asks for (``tempfile`` makes 0700 folders and
  0600 files, which would make results private).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

MARKER = ".modise-output"
Inputs = Iterable[str | Path | None]


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may be creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_default(path: str | Path, *, folder: bool) -> None:
    """Give ``path`` the mode a plain ``mkdir`` / ``open(.., 'w')`` would have under the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def _overlaps(out: Path, inputs: Inputs) -> str | None:
    """Why ``out`` (resolved) may not be written, or ``None``."""
    cwd = Path.cwd().resolve()
    if cwd == out or out in cwd.parents:
        return "it is the working folder or one of its parents"
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        p = Path(inp).expanduser()
        if not p.exists():  # e.g. a hub id: nothing of the user's to protect
            continue
        p = p.resolve()
        if p == out:
            return f"it is the input '{inp}'"
        if out in p.parents:
            return f"it contains the input '{inp}'"
    return None


def refuse_overlap(out: Path, inputs: Inputs) -> None:
    why = _overlaps(out.expanduser().resolve(), inputs)
    if why:
        raise ModiseError(f"Refusing to write to '{out}': {why}; choose a new folder for --out.")


def check_output_dir(out: str | Path, overwrite: bool, inputs: Inputs = (), hint: str = "pass --overwrite to replace it") -> Path:
    """Raise unless ``out`` may be written: absent or empty, or (with ``overwrite``) a folder modise wrote.

    ``inputs`` are the files/folders the command reads: ``out`` may neither equal nor contain one.
    """
    out = Path(out)
    refuse_overlap(out, inputs)
    if out.exists() and not out.is_dir():
        raise ModiseError(f"Output '{out}' exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ModiseError(f"Output folder '{out}' is not empty; {hint}.")
        if not (out / MARKER).is_file():
            raise ModiseError(
                f"Refusing to overwrite '{out}': it holds files modise did not write (no {MARKER} marker); "
                f"remove it yourself or choose a new folder for --out."
            )
    return out


def remove_output_dir(out: str | Path, inputs: Inputs = ()) -> None:
    """Delete ``out`` if it is absent, empty or a folder modise wrote (else raise, deleting nothing)."""
    out = check_output_dir(out, overwrite=True, inputs=inputs)
    if out.is_dir():
        shutil.rmtree(out)


def claim_output_dir(out: str | Path, inputs: Inputs = ()) -> Path:
    """Create ``out`` (mode from the umask) and mark it as modise's, for folders written in place
    (a training run); the same refusals as :func:`check_output_dir` for the working folder and inputs."""
    out = Path(out)
    refuse_overlap(out, inputs)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    return out


@contextlib.contextmanager
def output_dir(out: str | Path, overwrite: bool = False, inputs: Inputs = ()) -> Iterator[Path]:
    """Yield a staging folder that replaces ``out`` atomically when the block succeeds.

    The staging folder lives beside ``out`` (same filesystem, so the final rename is
    atomic) and gets the :data:`MARKER`. On an exception it is removed and ``out`` is
    left untouched. ``inputs``: what the command reads (see :func:`check_output_dir`).
    """
    inputs = list(inputs)
    out = check_output_dir(out, overwrite, inputs).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    _chmod_default(stage, folder=True)
    (stage / MARKER).touch()
    try:
        yield stage
        check_output_dir(out, overwrite, inputs)  # again: something may have appeared while we worked
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
    write_bytes_atomic(path, json.dumps(obj, indent=2, default=json_default).encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename; the file gets the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _chmod_default(tmp, folder=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars/arrays and paths."""
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
