"""The training progress bar: optimiser steps on Lightning's public ProgressBar API."""

from __future__ import annotations

import lightning as L
import torch


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        loss = (self.w - batch).square().mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(64, 1), batch_size=1)


def _fit(callbacks: list, **kw) -> L.Trainer:
    trainer = L.Trainer(max_steps=50, callbacks=callbacks, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu", devices=1, **kw)
    trainer.fit(_Tiny())
    return trainer


def test_step_progress_bar_counts_steps_on_public_lightning_api(capsys):
    from modise.engine.training.lightning_console import StepProgressBar

    bar = StepProgressBar("fitting")
    trainer = _fit([bar], max_epochs=-1)
    assert trainer.global_step == 50 and bar.progress is None  # closed at the end
    err = capsys.readouterr().err
    assert "fitting" in err and "50/50" in err and " loss " in err and "train/loss" not in err
