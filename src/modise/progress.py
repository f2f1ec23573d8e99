"""Progress on stderr for every long command (train, mame train, predict, prepare, generate).

In a terminal or a notebook a rich bar; when stderr is a file or a pipe (``modise train > log
2>&1``, a batch job) rich would draw nothing until the end, so plain lines are printed instead:
one at the first step, then one every ``MODISE_PROGRESS_SECONDS`` seconds (default 30) or every tenth
of the work, whichever comes first, and one at the end::

    training: step 120/900 (13%)  loss 0.512  1.84 it/s  ETA 0:11:08
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO, TypeVar

T = TypeVar("T")
DEFAULT_SECONDS = 30.0


def stderr_is_live() -> bool:
    """Whether rich can draw a live bar on stderr (a terminal or a notebook), as rich itself decides."""
    from rich.console import Console

    console = Console(stderr=True)
    return console.is_terminal or console.is_jupyter


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("MODISE_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class ProgressLines:
    """Plain progress lines for a log file: ``description: unit done/total (pct)  metrics  rate  ETA``."""

    def __init__(self, description: str, total: float | None, unit: str = "step", completed: int = 0,
                 stream: TextIO | None = None, every_s: float | None = None) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.stream = stream or sys.stderr
        self.every_s = _interval() if every_s is None else every_s
        self.start_done, self.done, self.printed = completed, completed, None
        self.t0 = self.last = time.monotonic()
        self.metrics = ""

    def update(self, completed: int, total: float | None = None, metrics: str | None = None) -> None:
        self.done = completed
        self.total = total if total is not None else self.total
        self.metrics = metrics if metrics is not None else self.metrics
        now = time.monotonic()
        tenth = (self.total or 0) / 10
        due = (self.printed is None or now - self.last >= self.every_s
               or (tenth >= 1 and completed - self.printed >= tenth))
        if due and completed != self.printed:
            self.print(now)

    def print(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        parts = [f"{self.description}: {self.unit} {self.done}"]
        if self.total and self.total != float("inf"):
            parts[0] += f"/{int(self.total)} ({100 * self.done / self.total:.0f}%)"
        if self.metrics:
            parts.append(self.metrics)
        elapsed = now - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.3g} it/s" if rate >= 1 else f"{1 / rate:.3g} s/it")
            if self.total and self.total != float("inf") and self.done < self.total:
                parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        parts.append(f"elapsed {_clock(elapsed)}")
        print("  ".join(parts), file=self.stream, flush=True)
        self.printed, self.last = self.done, now

    def close(self) -> None:
        if self.printed != self.done:
            self.print()


class Progress:
    """One task's progress: a rich bar when stderr is live, else :class:`ProgressLines`.

    ``update(completed, total=None, metrics=None)`` sets the count (and a short metrics text);
    ``advance(n)`` adds to it; ``close()`` ends the bar or prints the last line.
    """

    def __init__(self, description: str, total: float | None, unit: str = "step", completed: int = 0,
                 transient: bool = False, live: bool | None = None) -> None:
        self.done = completed
        self.bar: Any = None
        self.lines: ProgressLines | None = None
        if live if live is not None else stderr_is_live():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Rich, TextColumn, TimeRemainingColumn

            self.bar = Rich(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[metrics]}"), console=Console(stderr=True), transient=transient)
            self.bar.start()
            self.task = self.bar.add_task(description, total=total, completed=completed, metrics="")
        else:
            self.lines = ProgressLines(description, total, unit, completed)

    def update(self, completed: int, total: float | None = None, metrics: str | None = None) -> None:
        self.done = completed
        if self.bar is not None:
            fields = {} if metrics is None else {"metrics": metrics}
            self.bar.update(self.task, completed=completed, **({"total": total} if total is not None else {}), **fields)
        elif self.lines is not None:
            self.lines.update(completed, total, metrics)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.lines is not None:
            self.lines.close()
            self.lines = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def stderr_console() -> Any:
    """A rich console on stderr (stdout is for results) for warnings and skipped items."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def track(items: Sequence[T], description: str, enabled: bool = True, unit: str = "image",
          transient: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with :class:`Progress` on stderr (nothing for one item or when disabled)."""
    if not enabled or len(items) < 2:
        yield from items
        return
    with Progress(description, len(items), unit, transient=transient) as bar:
        for item in items:
            yield item
            bar.advance()


@contextlib.contextmanager
def denoising_progress(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., Any]]:
    """Yield a ``callback_on_step_end`` for diffusers pipelines; the progress counts denoising steps."""
    if not enabled:
        yield lambda pipe, step, timestep, kwargs: kwargs
        return
    with Progress(description, total, "denoising step") as bar:

        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            bar.advance()
            return kwargs

        yield on_step_end


@contextlib.contextmanager
def no_loading_bars() -> Iterator[None]:
    """Hide diffusers' and transformers' loading bars ("Loading pipeline components", "Loading weights",
    checkpoint shards): they say nothing to a modise user and fill log files."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    saved = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        (dlog.enable_progress_bar if saved[0] else dlog.disable_progress_bar)()
        (tlog.enable_progress_bar if saved[1] else tlog.disable_progress_bar)()
