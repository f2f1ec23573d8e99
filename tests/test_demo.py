"""``modise demo``: a very short run writes the whole report (phantoms, training, held-out metrics)."""

from __future__ import annotations

import json

import pytest


def test_demo_short_run_writes_report(tmp_path):
    from modise.engine.demo import run_demo

    out = tmp_path / "demo"
    metrics = run_demo(out, minutes=0.5, progress=False, n_images=10, max_steps=6)

    for key in ("pq", "rq", "sq", "thresholds", "best", "dice"):
        assert key in metrics, key
    assert set(metrics["best"]) >= {"threshold", "pq", "rq", "sq"}
    assert 0.05 <= metrics["best"]["threshold"] <= 0.9
    assert metrics["train"]["global_step"] == 6  # max_steps caps the time budget
    for name in ("report.md", "report.html", "figures/sweep.png", "figures/training_curve.png", "run/metrics.json", "run/model/model.safetensors"):
        assert (out / name).is_file(), name
    assert list((out / "overlays").glob("*.png"))
    md = (out / "report.md").read_text()
    assert "synthetic phantom" in md and "random weights" in md and "modise cv" in md
    assert "| PQ |" in md
    saved = json.loads((out / "run" / "metrics.json").read_text())
    assert saved["best"] == metrics["best"]


def test_demo_refuses_non_empty_out(tmp_path):
    from modise.engine.demo import run_demo
    from modise.errors import ModiseError

    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ModiseError):
        run_demo(tmp_path, minutes=0.5, progress=False, n_images=4, max_steps=1)
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_time_budget_ignores_slow_first_steps(tmp_path):
    """Slow warm-up steps must not end the run early: the budget is re-estimated as steps get faster."""
    import time

    import lightning as L
    import torch

    from modise.engine.training.lightning_module import TimeBudget
    from modise.engine.training.progress import quiet_lightning

    class Sleepy(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            time.sleep(0.25 if self.global_step < 3 else 0.01)  # like the first steps of a real run
            return self.lin(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)
    with quiet_lightning():
        trainer = L.Trainer(max_steps=10_000, max_epochs=-1, callbacks=[TimeBudget(2.0)], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
        t0 = time.perf_counter()
        trainer.fit(Sleepy(), data)
    took = time.perf_counter() - t0
    assert trainer.global_step >= 40, trainer.global_step  # a probe of the first steps would stop at ~8
    assert took < 6.0, took
