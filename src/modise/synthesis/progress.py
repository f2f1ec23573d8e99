"""A rich progress bar on stderr that diffusers pipelines advance once per denoising step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def step_progress(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., Any]]:
    """Yield a ``callback_on_step_end`` for pipelines; the bar counts denoising steps."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total)

        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            progress.advance(task)
            return kwargs

        yield on_step_end
