"""The training recipe is explicit: detectron2/ODISE's batch-scaling rule, and the effective batch,
lr, steps and epochs recorded in config.yaml and printed at the start of a run."""

import pytest
import yaml
from typer.testing import CliRunner

from modise.engine.training.recipe import effective_batch, recipe_line, recipe_record, scale_to_batch
from modise.engine.training.config import TrainConfig


def _cfg(**kw):
    return TrainConfig(data="d", **kw)


def test_scaling_follows_auto_scale_workers_example():
    """odise/config/utils.py:32-51: total batch 16 -> 32 gives lr 0.1 -> 0.2, 5000 -> 2500 steps,
    checkpoint period 1000 -> 500."""
    cfg = _cfg(batch_size=2, lr=0.1, max_steps=5000, checkpoint_every=1000, reference_batch=16)
    out = scale_to_batch(cfg, world_size=16)
    assert effective_batch(out, 16) == 32
    assert (out.lr, out.max_steps, out.checkpoint_every) == (pytest.approx(0.2), 2500, 500)


def test_odise_recipe_on_one_device():
    """ODISE's 64 x 92,188 at 1e-4 (coco_panoptic_semseg.py:59, odise_label_coco_50e.py:27,45) for
    batch 2 on one device: lr / 32, steps x 32 (the same images seen, the same lr per image)."""
    cfg = _cfg(batch_size=2, lr=1e-4, max_steps=92_188, warmup_steps=250, reference_batch=64)
    out = scale_to_batch(cfg, world_size=1)
    assert out.lr == pytest.approx(1e-4 / 32) and out.max_steps == 92_188 * 32 and out.warmup_steps == 250 * 32
    rec = recipe_record(cfg, out, 1, n_train_images=1000)
    assert rec["effective_batch"] == 2 and rec["epochs"] == pytest.approx(2 * 92_188 * 32 / 1000, abs=0.01)
    assert rec["scaled_from"] == {"lr": 1e-4, "max_steps": 92_188, "factor": 2 / 64}
    assert "scaled x0.03125 from reference batch 64" in recipe_line(rec)


def test_no_reference_batch_no_scaling():
    """ODISE's default reference_world_size=0 (configs/common/train.py:48): the config as given."""
    cfg = _cfg(batch_size=8, grad_accum=2)
    assert scale_to_batch(cfg, world_size=4) is cfg
    rec = recipe_record(cfg, cfg, 4, n_train_images=640)
    assert rec["effective_batch"] == 64 and rec["epochs"] == 1000.0 and "scaled_from" not in rec


def test_run_records_and_prints_the_scaled_recipe(tmp_path):
    """Through the CLI: --reference-batch 1 with batch 2 doubles lr and halves the steps; config.yaml
    records the recipe and the intensity-jitter choice; the recipe is printed before training."""
    from modise.cli import app
    from modise.data.phantoms import prepare_synthetic

    data = tmp_path / "data"
    prepare_synthetic(data, n=10, seed=0, size=128, k=5, quiet=True)
    args = ["train", "--preset", "m-odise", "--size", "tiny", "--random-weights", "--data", str(data), "--fold", "0",
            "--out", str(tmp_path / "run"), "--image-size", "128", "--batch-size", "2", "--max-steps", "4", "--lr", "1e-3",
            "--reference-batch", "1", "--intensity-jitter", "--accelerator", "cpu", "--devices", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "recipe: effective batch 2 (2 per device x 1 accumulation x 1 device(s)), lr 0.002, 2 steps = 0.5 epochs" in res.output
    training = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["training"]
    assert training["intensity_jitter"] is True and training["reference_batch"] == 1
    assert training["lr"] == pytest.approx(2e-3) and training["max_steps"] == 2
    assert training["recipe"] == {
        "effective_batch": 2, "batch_per_device": 2, "grad_accum": 1, "world_size": 1, "lr": pytest.approx(2e-3),
        "max_steps": 2, "train_images": 8, "epochs": 0.5, "reference_batch": 1,
        "scaled_from": {"lr": pytest.approx(1e-3), "max_steps": 4, "factor": 2.0},
    }
