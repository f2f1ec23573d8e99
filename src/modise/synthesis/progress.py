"""Progress on stderr (:mod:`modise.progress`) that diffusers pipelines advance once per denoising step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def step_progress(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., Any]]:
    """Yield a ``callback_on_step_end`` for pipelines; the progress counts denoising steps."""
    from modise.progress import Progress

    if not enabled:
        yield lambda pipe, step, timestep, kwargs: kwargs
        return
    with Progress(description, total, "denoising step") as bar:

        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            bar.advance()
            return kwargs

        yield on_step_end
