"""A run's ``logs/`` folder, shared by ``modise train`` and ``modise mame train``: TensorBoard events
and one ``logs/metrics.csv`` whose curve continues across ``--resume``.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts; :class:`RunCSVLogger`
is a logger of its own on Lightning's public ``Logger`` interface that keeps the rows from before
the resumed checkpoint. Same file format: a header of the sorted keys, a row per logged step.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

LOGS_DIR, METRICS_CSV = "logs", "metrics.csv"


def read_metrics_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a ``metrics.csv``; empty for a missing file."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    except FileNotFoundError:
        return [], []


class RunCSVLogger(Logger):
    """``RUN/logs/metrics.csv``; rows already there stay, except those from the first new step on.

    A resumed run restarts at its checkpoint's step, so rows logged after that checkpoint (a run
    killed between checkpoints) give way to the new ones. Rows are written every ``flush_every``
    steps and when fit ends (Lightning calls :meth:`finalize`); rank 0 alone writes.
    """

    def __init__(self, run: str | Path, flush_every: int = 100) -> None:
        super().__init__()
        self._dir = Path(run) / LOGS_DIR
        self._flush_every = flush_every
        self._pending: list[dict[str, Any]] = []
        self._keys: list[str] = []
        self._started = False  # False until the first save has dropped the superseded rows

    @property
    def name(self) -> str:
        return LOGS_DIR

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return str(self._dir.parent)

    @property
    def log_dir(self) -> str:
        return str(self._dir)

    @property
    def path(self) -> Path:
        return self._dir / METRICS_CSV

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the run's settings are RUN/config.yaml; TensorBoard keeps hparams.yaml

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        step = len(self._pending) if step is None else step
        self._pending.append({**{k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}, "step": step})
        if (step + 1) % self._flush_every == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        if not self._pending:
            return
        new_keys = {k for row in self._pending for k in row} - set(self._keys)
        if self._started and not new_keys:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._keys).writerows(self._pending)
        else:
            self._rewrite(new_keys)
        self._pending = []

    def _rewrite(self, new_keys: set[str]) -> None:
        """The file with a widened header; on the first save, without rows the new ones replace."""
        from modise.outputs import write_bytes_atomic

        header, rows = read_metrics_csv(self.path)
        if not self._started:
            first = min(int(r["step"]) for r in self._pending)
            rows = [r for r in rows if r.get("step") and int(r["step"]) < first]
            self._started = True
        self._keys = sorted({*header, *self._keys, *new_keys})
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self._keys)
        writer.writeheader()
        writer.writerows(rows + self._pending)
        self._dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, text.getvalue().encode())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def run_loggers(run: str | Path) -> list[Logger]:
    """TensorBoard (first: ``trainer.logger``, where validation images go) and :class:`RunCSVLogger`,
    both in the one ``RUN/logs/`` folder across resumes (no ``version_N`` split)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    return [TensorBoardLogger(run, name=LOGS_DIR, version=""), RunCSVLogger(run)]
