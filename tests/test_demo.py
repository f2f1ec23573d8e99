"""``modise demo``: a very short run writes the whole report (phantoms, training, held-out metrics)."""

from __future__ import annotations

import json

import numpy as np

import pytest


def test_demo_short_run_writes_report(tmp_path):
    from modise.engine.demo import run_demo

    out = tmp_path / "demo"
    metrics = run_demo(out, minutes=5, progress=False, n_images=10, steps=6)

    for key in ("pq", "rq", "sq", "thresholds", "best", "dice"):
        assert key in metrics, key
    assert set(metrics["best"]) >= {"threshold", "pq", "rq", "sq"}
    assert 0.05 <= metrics["best"]["threshold"] <= 0.9
    assert metrics["train"]["global_step"] == 6 and not metrics["train"]["stopped_by_time_limit"]
    for name in ("report.md", "report.html", "figures/sweep.png", "figures/training_curve.png", "run/metrics.json", "run/model/model.safetensors"):
        assert (out / name).is_file(), name
    assert list((out / "overlays").glob("*.png"))
    md = (out / "report.md").read_text()
    assert "synthetic phantom" in md and "random weights" in md and "modise cv" in md
    assert "| PQ |" in md
    assert "![froc](figures/froc.png)" in md and (out / "figures" / "froc.png").is_file()  # FROC as CAD studies draw it
    page = (out / "report.html").read_text()
    assert "<strong>This run used synthetic phantom" in page and "**" not in page  # bold across lines
    assert "<p>(diffusion UNet" not in page and "<th>metric" in page  # a paragraph per paragraph, a real table
    from PIL import Image

    curve = np.asarray(Image.open(out / "figures" / "training_curve.png").convert("RGB")).astype(int)
    assert ((curve[..., 2] - curve[..., 0]) > 60).sum() > 50  # the (blue) loss curve is drawn, not an empty frame
    saved = json.loads((out / "run" / "metrics.json").read_text())
    assert saved["best"] == metrics["best"]
    # evaluated once, with the preset's CLIP ensemble (issue 29), not a second time without it
    assert saved["clip_ensemble"] is True and "without_clip_ensemble" not in saved
    assert f"({metrics['demo']['seconds']:.0f} s end to end, budget 5 min)" in md  # one time, the terminal's too
    assert not metrics["demo"]["meaningful"] and "**Not a meaningful result:** 6 training steps" in md
    assert "`modise demo --minutes 11`" in md  # the command that gives the full result


def test_demo_refuses_non_empty_out(tmp_path):
    from modise.engine.demo import run_demo
    from modise.errors import ModiseError

    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ModiseError):
        run_demo(tmp_path, minutes=0.5, progress=False, n_images=4, steps=1)
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_deadline_stops_a_run_without_changing_its_schedule(tmp_path):
    """The time limit only stops a run early; max_steps (and so the lr schedule) stay as configured."""
    import time

    import lightning as L
    import torch

    from modise.engine.training.lightning_module import Deadline
    from modise.engine.training.lightning_console import quiet_lightning

    class Sleepy(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            time.sleep(0.05)
            return self.lin(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)
    deadline = Deadline(0.5)
    with quiet_lightning():
        trainer = L.Trainer(max_steps=10_000, max_epochs=-1, callbacks=[deadline], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
        trainer.fit(Sleepy(), data)
    assert deadline.stopped_at is not None and 3 <= trainer.global_step < 40, trainer.global_step
    assert trainer.max_steps == 10_000  # the configured run length is untouched


def test_demo_is_deterministic_in_steps(tmp_path):
    """Fixed steps and seed: a demo that measures its rate under a budget that does not bind gives the
    numbers and weights of one without a budget (the wall clock plays no part)."""
    import torch

    from modise.engine.demo import run_demo

    a = run_demo(tmp_path / "a", minutes=None, progress=False, n_images=10, steps=10)
    b = run_demo(tmp_path / "b", minutes=60, progress=False, n_images=10, steps=10)
    assert b["demo"]["changes"] == [] and b["train"]["global_step"] == 10 and not b["demo"]["stopped_by_budget"]
    assert a["pq"] == b["pq"] and a["best"] == b["best"] and a["dice"] == b["dice"]
    from safetensors.torch import load_file

    wa, wb = (load_file(tmp_path / d / "run" / "model" / "model.safetensors") for d in ("a", "b"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # the same trained weights


def test_demo_on_a_busy_machine_shrinks_the_run_and_says_so(tmp_path):
    """A clock running 200x fast plays a very busy machine: the plan restarts training at batch 2 with the
    steps that fit (one: the budget is spent), and the report and metrics say what changed."""
    import time

    from modise.engine.demo import run_demo

    start = time.perf_counter()
    slow = lambda: start + (time.perf_counter() - start) * 200  # noqa: E731
    out = tmp_path / "demo"
    m = run_demo(out, minutes=2, progress=False, clock=slow, n_images=10, steps=40)
    demo = m["demo"]
    assert demo["changes"] == ["batch 2 instead of 4", "1 step instead of 40"]
    assert m["train"]["global_step"] == 1 and not demo["meaningful"]
    cfg = (out / "run" / "config.yaml").read_text()
    assert "batch_size: 2" in cfg and "max_steps: 1" in cfg
    md = (out / "report.md").read_text()
    assert "so the demo ran with batch 2 instead of 4; 1 step instead of 40" in md
    assert "**Not a meaningful result:** 1 training steps" in md and f"({demo['seconds']:.0f} s end to end" in md
