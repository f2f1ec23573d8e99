"""`modise mame train` follows `modise train`'s run convention: a typed config, config.yaml, one logs/ folder,
the shared precision rule, and the same flag names (old spellings kept as aliases)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from modise.cli import app
from modise.precision import resolve_precision
from modise.synthesis.mame_config import MameTrainConfig
from tests.test_synthesis_mame_train import _folder

TINY = ["--size", "tiny", "--random-weights", "--resolution", "64", "--val-every", "0", "--json"]


def _steps(run):
    with (run / "logs" / "metrics.csv").open(newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_config_rejects_unknown_fields_and_resolves_the_recipe():
    with pytest.raises(ValidationError):
        MameTrainConfig(data=".", ckpt_every=3)  # extra="forbid": a misspelt setting is an error
    with pytest.raises(ValidationError):
        MameTrainConfig(data=".", resolution=100)  # not a multiple of 8
    cfg = MameTrainConfig(data=".", size="tiny", lora_rank=4, grad_accum=3).resolved()
    assert (cfg.recipe, cfg.batch_size, cfg.grad_accum, cfg.max_steps, cfg.lr) == ("light", 1, 3, 1000, 1e-4)
    full = MameTrainConfig(data=".").resolved()
    assert (full.recipe, full.batch_size, full.grad_accum, full.lr) == ("mame", 16, 16, 1e-6)
    assert MameTrainConfig(data=".", inpainting=True).base_name().endswith("stable-diffusion-inpainting")


def test_precision_auto_is_32_true_on_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto") == "32-true"
    assert resolve_precision("bf16-mixed") == "bf16-mixed"


def test_old_and_new_flag_spellings_give_the_same_run(tmp_path, sample_images):
    data = _folder(tmp_path / "d", sample_images)
    runs = {}
    for name, flags in {"new": ["--grad-accum", "2", "--checkpoint-every", "1", "--num-workers", "0", "--grad-clip", "0.5"],
                        "old": ["--accumulate", "2", "--ckpt-every", "1", "--num-workers", "0", "--clip", "0.5"]}.items():
        run = tmp_path / name
        res = CliRunner().invoke(app, ["mame", "train", *TINY, "--max-steps", "1", "--data", str(data),
                                       "--out", str(run), *flags])
        assert res.exit_code == 0, (res.output, res.exception)
        runs[name] = yaml.safe_load((run / "config.yaml").read_text())
    for cfg in runs.values():
        del cfg["data"]
    assert runs["new"] == runs["old"]
    t = runs["new"]["training"]
    assert (t["grad_accum"], t["checkpoint_every"], t["num_workers"], t["grad_clip"]) == (2, 1, 0, 0.5)


def test_run_folder_layout_config_yaml_and_one_logs_folder_across_resume(tmp_path, sample_images):
    data = _folder(tmp_path / "d", sample_images)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--max-steps", "2", "--data", str(data), "--out", str(run)])
    assert res.exit_code == 0, (res.output, res.exception)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # modise train's shape: what was trained at the top level, the optimisation under `training`
    assert {k: cfg[k] for k in ("kind", "base", "size", "random_weights", "inpainting", "resolution", "images")} == {
        "kind": "mame", "base": "random-tiny", "size": "tiny", "random_weights": True, "inpainting": False,
        "resolution": 64, "images": 2}
    assert cfg["training"]["precision"] == resolve_precision("auto")
    assert cfg["training"]["recipe"] == "light" and cfg["training"]["max_steps"] == 2
    assert not (run / "run_config.json").exists()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "model_index.json").is_file()
    assert not list((run / "logs").glob("version_*")) and list((run / "logs").glob("events.out.tfevents.*"))
    assert _steps(run) == [0, 1]

    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--max-steps", "3", "--data", str(data), "--out", str(run),
                                   "--resume"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads(res.stdout.strip().splitlines()[-1])["global_step"] == 3
    assert _steps(run) == [0, 1, 2]  # the curve before --resume is kept in the one metrics.csv
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["max_steps"] == 3


def test_train_mame_library_call(tmp_path, sample_images):
    from modise.errors import ModiseError
    from modise.synthesis.mame_train import train_mame

    data = _folder(tmp_path / "d", sample_images)
    cfg = MameTrainConfig(data=str(data), size="tiny", random_weights=True, resolution=64, max_steps=1, val_every=0)
    summary = train_mame(cfg, tmp_path / "run", progress=False)
    assert summary["global_step"] == 1 and summary["recipe"] == "light"
    with pytest.raises(ModiseError, match="--overwrite"):
        train_mame(cfg, tmp_path / "run", progress=False)  # a non-empty run folder is refused
    assert train_mame(cfg, tmp_path / "run", overwrite=True, progress=False)["global_step"] == 1


def test_lora_on_unet_and_text_encoder_is_fused_through_public_diffusers_api(tmp_path, sample_images):
    """save_pipeline fuses with pipe.fuse_lora + unload_lora_weights (no peft/transformers private state):
    the saved UNet and text encoder are whole plain models that carry the trained adapters."""
    import torch
    from safetensors.torch import load_file

    from modise.synthesis import load_text2img
    from modise.synthesis.pipelines import build_random_pipeline

    data = _folder(tmp_path / "d", sample_images)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--max-steps", "2", "--lr", "1e-2", "--lora",
                                   "--lora-rank", "4", "--lora-text-encoder", "--data", str(data), "--out", str(run)])
    assert res.exit_code == 0, (res.output, res.exception)
    base = build_random_pipeline("tiny")
    for part in ("unet", "text_encoder"):
        saved = load_file(next((run / part).glob("*.safetensors")))
        want = getattr(base, part).state_dict()
        assert set(saved) == set(want)  # whole model, no adapter-only file, no lora keys
    lora = load_file(run / "lora" / "pytorch_lora_weights.safetensors")
    assert any(k.startswith("text_encoder.") for k in lora) and any(k.startswith("unet.") for k in lora)

    loaded = load_text2img(str(run), device="cpu")
    ids = base.tokenizer(["a siemens mammogram"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        plain = base.text_encoder(ids)[0]
        base.load_lora_weights(str(run / "lora"))
        adapted = base.text_encoder(ids)[0]
        fused = loaded.text_encoder(ids)[0]
    assert not torch.allclose(plain, fused, atol=1e-5)  # the text-encoder adapters were trained and fused
    torch.testing.assert_close(adapted, fused, atol=1e-4, rtol=1e-4)
