"""`modise mame train`: MAM-E's recipe in the run config, and everything computed on the training device."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from modise.cli import app
from tests.test_synthesis_mame_train import _folder

TINY = ["--size", "tiny", "--random-weights", "--resolution", "64"]


def test_mame_recipe_is_the_original_config_and_default_for_full_size():
    from modise.synthesis.mame_recipe import default_recipe, resolve_recipe

    r = resolve_recipe(default_recipe("full"))
    # experiments/with_prompt/fusion/config_file.yaml at dc9fead, lines 39-57
    assert (r.name, r.batch_size, r.grad_accum, r.max_steps, r.lr, r.weight_decay, r.grad_clip, r.train_text_encoder) == (
        "mame", 16, 16, 6000, 1e-6, 1e-2, 1.0, True)
    assert default_recipe("tiny") == "light"
    assert resolve_recipe("mame", lora=True).lr == 1e-4  # LoRA's lr unless given
    assert resolve_recipe("mame", max_steps=3, lr=2e-3).max_steps == 3


def test_inpainting_recipes_are_the_original_configs():
    """--inpainting at full size defaults to the run behind the released Likalto4/vindr_lesion-inpainting
    (experiments/inpainting/vindr-mammo/config_file.yaml@10a9966 l.40-58); the Mass-only run is
    the same file @5d1e833 (l.41-44)."""
    from modise.synthesis.mame_config import MameTrainConfig
    from modise.synthesis.mame_recipe import default_recipe, resolve_recipe

    assert default_recipe("full", inpainting=True) == "inpaint" and default_recipe("tiny", inpainting=True) == "light"
    r = resolve_recipe("inpaint")
    assert (r.batch_size, r.grad_accum, r.max_steps, r.lr, r.weight_decay, r.grad_clip, r.train_text_encoder) == (
        8, 1, 15000, 1e-6, 1e-2, 1.0, True)
    m = resolve_recipe("inpaint-mass")
    assert (m.batch_size, m.grad_accum, m.max_steps, m.lr) == (16, 2, 6000, 1e-6)
    cfg = MameTrainConfig(data=".", inpainting=True).resolved()
    assert (cfg.recipe, cfg.batch_size, cfg.grad_accum, cfg.max_steps) == ("inpaint", 8, 1, 15000)
    assert MameTrainConfig(data=".").resolved().recipe == "mame"


def test_recipe_is_saved_in_the_run_config_and_the_effective_batch_printed(tmp_path, sample_images):
    data = _folder(tmp_path / "d", sample_images)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--recipe", "mame", "--max-steps", "1", "--lr", "1e-3",
                                   "--val-every", "0", "--data", str(data), "--out", str(run), "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    t = cfg["training"]
    assert (t["recipe"], t["batch_size"], t["grad_accum"], t["max_steps"], t["lr"], t["weight_decay"], t["grad_clip"],
            t["train_text_encoder"]) == ("mame", 16, 16, 1, 1e-3, 0.01, 1.0, True)
    assert t["effective_batch"] == 256 and t["world_size"] == 1
    assert "effective batch 256" in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["global_step"] == 1


def test_fixed_loss_runs_inside_fit_on_the_training_device(tmp_path, sample_images, monkeypatch):
    """The fixed-noise loss runs the VAE on the training device, after Lightning moved the model there."""
    from modise.synthesis import mame_callbacks

    seen = []
    real = mame_callbacks.fixed_loss

    def spy(module, *args, **kwargs):
        trainer = module.trainer
        seen.append(trainer is not None and next(module.parameters()).device == trainer.strategy.root_device)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(mame_callbacks, "fixed_loss", spy)
    data = _folder(tmp_path / "d", sample_images)
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--max-steps", "1", "--val-every", "0", "--data", str(data),
                                   "--out", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert seen == [True, True]  # before and after, both inside fit on the strategy's device
    assert "fixed-noise loss before training" in res.stderr  # said before the first step


@pytest.mark.parametrize("inpainting,lora", [(False, 0), (False, 4), (True, 4)], ids=["full", "lora", "inpaint-lora"])
def test_loss_creates_no_cpu_tensor_when_the_model_is_elsewhere(tmp_path, sample_images, inpainting, lora):
    """The model on PyTorch's meta device: any tensor made on the CPU inside the loss raises."""
    from modise.model.stable_diffusion import build_scheduler
    from modise.synthesis.mame_dataset import PromptImageFolder
    from modise.synthesis.mame_module import MameModule, fixed_loss_tensor
    from modise.synthesis.pipelines import build_random_pipeline

    pipe = build_random_pipeline("tiny", inpainting=inpainting)
    ddpm = build_scheduler("ddpm")  # the training scheduler, as train_mame uses
    module = MameModule(pipe.vae, pipe.text_encoder, pipe.unet, pipe.tokenizer, ddpm, lora_rank=lora,
                        train_text_encoder=True, inpainting=inpainting).to("meta")
    dataset = PromptImageFolder(_folder(tmp_path / "d", sample_images, inpainting), pipe.tokenizer, 64, inpainting)
    loss = fixed_loss_tensor(module, dataset, repeats=1)
    assert loss.device.type == "meta" and loss.shape == ()
    batch = {k: v[None].to("meta") for k, v in dataset[0].items()}
    assert module.loss(batch).device.type == "meta"
    assert torch.zeros(()).device.type == "cpu"  # the default device is untouched


def test_inpainting_run_keeps_the_training_box_statistics(tmp_path, sample_images):
    from modise.synthesis.boxes import MameBoxStats, load_box_stats, save_box_stats

    data = _folder(tmp_path / "d", sample_images, inpainting=True)
    stats = MameBoxStats(area_q25=50, area_q75=300, ratio_mean=1.1, ratio_std=0.2, side=64)
    save_box_stats(stats, data)
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--inpainting", "--max-steps", "1", "--val-every", "0",
                                   "--data", str(data), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, (res.output, res.exception)
    assert load_box_stats(tmp_path / "run") == stats
