"""Console output of training: one step-based progress (Lightning's public ``ProgressBar`` base
drawn by :mod:`modise.progress`) and quiet Lightning internals."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from collections.abc import Iterator
from typing import Any

from lightning.pytorch.callbacks import ProgressBar


class StepProgressBar(ProgressBar):
    """Progress over optimiser steps (not epochs) with loss, on stderr (:class:`modise.progress.Progress`:
    a rich bar in a terminal, plain lines in a log file).

    Step-based runs repeat a small dataset for many short epochs; Lightning's bar would
    restart every epoch and read "Epoch 7/-2". This one counts ``global_step`` against
    ``max_steps``.
    """

    def __init__(self, description: str = "training") -> None:
        super().__init__()
        self.description = description
        self.enabled = True
        self.progress: Any = None  # modise.progress.Progress while training

    def disable(self) -> None:  # Lightning calls this on ranks other than 0
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    @property
    def is_enabled(self) -> bool:
        return self.enabled

    def total_steps(self, trainer) -> int | float:
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        return self.total_train_batches * max(1, trainer.max_epochs or 1)

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.enabled:
            return
        from modise.progress import Progress

        self.progress = Progress(self.description, self.total_steps(trainer), "step", completed=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.progress is None:
            return
        metrics = self.get_metrics(trainer, pl_module)
        text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        self.progress.update(trainer.global_step, self.total_steps(trainer), text)

    def on_train_end(self, trainer, pl_module) -> None:
        self.close()  # close the bar before the held-out evaluation prints

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return {k.removeprefix("train/"): v for k, v in items.items()}


# Messages Lightning / torch print that say nothing to a modise user.
_QUIET_WARNINGS = (
    r".*module\(s\) in eval mode.*",  # frozen diffusion / encoders are in eval mode on purpose
    r".*does not have many workers.*",  # tiny CPU runs load in the main process on purpose
    r".*weights_only.*",  # our own checkpoints, loaded by Lightning
    r".*LeafSpec.*is deprecated.*",  # torch pytree deprecation raised inside Lightning
    r".*Checkpoint directory .* exists and is not empty.*",  # --resume writes into its own folder
    r".*The number of training batches .* is smaller than the logging interval.*",
    # Ctrl-C / --resume mid-epoch on purpose: runs count steps; the resumed epoch draws a fresh order
    r".*resuming from a checkpoint that ended before the epoch ended.*",
)
_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's tips, info lines and known-harmless warnings (our own warnings still show)."""
    saved = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)
