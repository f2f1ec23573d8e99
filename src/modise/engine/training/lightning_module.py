"""The LightningModule: M-ODISE's losses, the ODISE optimiser recipe, trainable-only checkpoints."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from torch.optim.lr_scheduler import LambdaLR

from modise.errors import ModiseError

from .schedule import groups_from_config, warmup_step_decay


class NonFiniteLoss(ModiseError):
    """The training loss became NaN or infinite: training stops before the weights turn to NaN."""

    def __init__(self, step: int, loss: float, lr: float) -> None:
        super().__init__(f"Training stopped at step {step}: the loss became {loss} (the weights would turn to NaN); the "
                         f"learning rate {lr:g} is probably too high: start again with a lower --lr and --overwrite.")
        self.step = step


class ModiseLightning(L.LightningModule):
    """Wraps a ``modise.model`` model (injected) for training.

    Checkpoints hold only the trainable weights (frozen diffusion / encoder weights are
    rebuilt from their source), plus Lightning's optimiser, scheduler and loop state, so
    ``--resume`` continues with the same step count and AdamW moments.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        max_steps: int = 1000,
        warmup_steps: float | None = None,
        milestones: tuple[float, float] = (0.889, 0.963),
    ) -> None:
        """``warmup_steps=None``: the preset's ``optimizer.warmup_fraction`` of ``max_steps`` (ODISE 500/184375)."""
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.max_steps, self.warmup_steps, self.milestones = max_steps, warmup_steps, tuple(milestones)
        self.optim_config = getattr(getattr(model, "config", None), "optimizer", None)
        self.strict_loading = False  # frozen weights are not in the checkpoint
        self._trainable_keys = {f"model.{k}" for k in model.trainable_state_dict()}

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        return self.model(images)

    def on_train_epoch_start(self) -> None:
        # Lightning calls .train() on everything; frozen parts must stay in eval mode.
        self.model.train()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, targets = self.model.pad(batch["images"], batch["targets"])  # to the model's size_divisibility
        losses = self.model.loss(self.model(images), targets)
        bs = batch["images"].shape[0]
        if not torch.isfinite(losses["loss"].detach()).item():  # one sync per step, negligible next to the step
            raise NonFiniteLoss(self.trainer.global_step, float(losses["loss"].detach()), self.lr)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
        for k, v in losses.items():
            if k != "loss" and torch.is_tensor(v) and v.numel() == 1:
                self.log(f"train/{k}", v.detach().float(), batch_size=bs)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return losses["loss"]

    def configure_optimizers(self):
        groups = groups_from_config(self.model, self.lr, self.weight_decay, self.optim_config)
        opt = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        factor = self.optim_config.warmup_factor if self.optim_config is not None else 0.067
        # the lambda reads self.max_steps at each step, so a time budget may shorten the run
        sched = LambdaLR(opt, lambda s: warmup_step_decay(s, self.max_steps, self.resolved_warmup_steps(), self.milestones,
                                                          warmup_factor=factor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def resolved_warmup_steps(self) -> float:
        if self.warmup_steps is not None:
            return float(self.warmup_steps)
        fraction = self.optim_config.warmup_fraction if self.optim_config is not None else 500 / 184375
        return fraction * self.max_steps

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in self._trainable_keys}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        missing = self._trainable_keys - set(checkpoint["state_dict"])
        if missing:
            from modise.errors import ModiseError

            raise ModiseError(
                f"Checkpoint does not match this model: {len(missing)} trainable tensors missing "
                f"(e.g. {sorted(missing)[0]}); was it written by another preset or size?"
            )


class Deadline(L.Callback):
    """Stop training once ``seconds`` of it have passed: a limit, never a target.

    The run's ``max_steps`` (and so its lr schedule) stays as configured, so a run that ends in
    time is the same on every machine; one that hits the limit stops at the next step through
    Lightning's public ``trainer.should_stop`` and records where in :attr:`stopped_at`.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stopped_at: int | None = None
        self._start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        import time

        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time

        if self.stopped_at is None and time.perf_counter() - self._start > self.seconds:
            self.stopped_at = trainer.global_step
            trainer.should_stop = True
