"""Converters on all cores with the output of one: items are processed in worker processes, and what
each did to the dataset (``add`` an image, ``skip`` an item, ``warn``, count something) is recorded
there and replayed here, in input order, on the one :class:`~modise.data.writer.DatasetWriter`, so
ids, file names, messages and folds are the same for any number of workers.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

Event = tuple[str, tuple, dict]


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Recorder:
    """Stands in for the writer inside an item's body: records ``add`` / ``skip`` / ``warn`` / ``note``.

    ``encode``: a function that turns ``add``'s arguments into what the writer's ``add_encoded`` takes
    (e.g. :func:`~modise.data.writer.encode_image`), so the encoding runs in the worker, not in the
    one process that writes."""

    def __init__(self, encode: Callable[..., Any] | None = None) -> None:
        self.events: list[Event] = []
        self.encode = encode

    def add(self, *args: Any, **kwargs: Any) -> None:
        if self.encode is not None:
            self.events.append(("add_encoded", (self.encode(*args, **kwargs),), {}))
        else:
            self.events.append(("add", args, kwargs))

    def skip(self, *args: Any, **kwargs: Any) -> None:
        self.events.append(("skip", args, kwargs))

    def warn(self, *args: Any, **kwargs: Any) -> None:
        self.events.append(("warn", args, kwargs))

    def note(self, kind: str, value: Any = None) -> None:
        """Something the converter tallies itself (a count, a name seen), passed to its ``on_note``."""
        self.events.append(("note", (kind, value), {}))


def _record(body: Callable[[Any, Any, Recorder], None], ctx: Any, encode: Callable[..., Any] | None, item: Any) -> list[Event]:
    rec = Recorder(encode)
    body(ctx, item, rec)
    return rec.events


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` on ``workers`` processes, results in input order, at most 2 per worker in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold threads (progress bar, BLAS) that a forked child would inherit locked
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def convert_items(body: Callable[[Any, Any, Recorder], None], ctx: Any, items: Iterable[Any], writer: Any,
                  workers: int | None, on_note: Callable[[str, Any], None] | None = None,
                  encode: Callable[..., Any] | None = None) -> None:
    """Run ``body(ctx, item, recorder)`` for every item (``workers`` processes; None: all cores) and replay
    what it recorded on ``writer`` in input order. ``body``, ``ctx`` and ``encode`` (see :class:`Recorder`)
    must be picklable (module level)."""
    workers = default_workers() if workers is None else workers
    for events in ordered_map(partial(_record, body, ctx, encode), items, workers):
        for kind, args, kwargs in events:
            if kind == "note":
                if on_note is not None:
                    on_note(*args)
            else:
                getattr(writer, kind)(*args, **kwargs)
