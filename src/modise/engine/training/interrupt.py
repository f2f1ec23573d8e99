"""Ctrl-C during ``Trainer.fit``: keep the step reached, then tell the user how to resume.

Lightning catches ``KeyboardInterrupt``, calls the callbacks' ``on_exception`` and leaves with
``sys.exit(1)`` (``lightning/pytorch/trainer/call.py``, ``_call_and_handle_interrupt``), ignoring
SIGINT from then on. :class:`SaveOnException` saves ``last.ckpt`` there; :func:`interrupted`
tells such an exit from a real one.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class SaveOnException(Callback):
    """Save ``checkpoint`` when fit stops on Ctrl-C or an error (after at least one step), flushing the logs."""

    # errors after which the weights are not worth resuming from (e.g. a non-finite loss)
    not_worth_saving: tuple[type[BaseException], ...] = ()

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.exception: BaseException | None = None
        self.saved: Path | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.exception = exception
        for logger in trainer.loggers:  # keep the curve up to here (CSV rows are buffered)
            try:
                logger.save()
            except Exception:  # noqa: BLE001
                pass
        if trainer.global_step == 0 or isinstance(exception, self.not_worth_saving):
            return  # nothing learnt yet (a fresh start is the same), or nothing worth resuming
        try:
            trainer.save_checkpoint(self.checkpoint, weights_only=False)
            self.saved = self.checkpoint
        except Exception as e:  # noqa: BLE001  the original error matters more
            print(f"warning: could not save a checkpoint after the interruption: {e}", file=sys.stderr)


def interrupted(error: BaseException, guard: SaveOnException) -> bool:
    """Whether ``error`` (raised by fit) is the user's Ctrl-C; if so, give the user the key back."""
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, SystemExit) and isinstance(guard.exception, KeyboardInterrupt)):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return True
    return False
