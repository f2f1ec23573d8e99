"""`modise mame train`: tiny offline fine-tunes (text-to-image and inpainting), resume, reload."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from modise.cli import app
from modise.errors import ModiseError

TINY = ["--size", "tiny", "--random-weights", "--resolution", "64", "--lr", "2e-3"]


def _folder(root, sample_images, inpainting=False):
    """A prepared folder: 64x64 PNGs of real mammograms + metadata.jsonl (+ masks)."""
    root.mkdir()
    lines = []
    for i, p in enumerate(sample_images[:2]):
        Image.open(p).convert("L").resize((64, 64)).save(root / f"{i}.png")
        rec = {"file_name": f"{i}.png", "text": "a siemens mammogram in CC view with small area"}
        if inpainting:
            m = np.zeros((64, 64), np.uint8)
            m[20:36, 10:30] = 255
            Image.fromarray(m).save(root / f"{i}_mask.png")
            rec = {"file_name": f"{i}.png", "text": "a mammogram with a lesion", "mask_file_name": f"{i}_mask.png"}
        lines.append(json.dumps(rec))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _train(*args):
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--json", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])


def test_text2img_overfits_resumes_and_reloads(tmp_path, sample_images):
    from modise.synthesis import generate_images, load_text2img

    data = _folder(tmp_path / "d", sample_images)
    run = tmp_path / "run"
    s = _train("--data", str(data), "--out", str(run), "--max-steps", "8", "--val-every", "8", "--val-steps", "1",
               "--ckpt-every", "4")
    assert s["global_step"] == 8
    assert np.isfinite(s["loss_before"]) and np.isfinite(s["loss_after"])
    assert s["loss_after"] < 0.8 * s["loss_before"]  # fixed noise and timesteps: overfitting lowers it
    assert (run / "validation" / "step_000008.png").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "model_index.json").is_file()

    r = _train("--data", str(data), "--out", str(run), "--max-steps", "9", "--val-every", "0", "--resume")
    assert r["global_step"] == 9
    assert r["loss_before"] == pytest.approx(s["loss_after"], rel=1e-4)  # continues from the saved weights

    pipe = load_text2img(str(run))
    (im,) = generate_images(pipe, "a siemens mammogram in CC view", 1, 0, 2, 5.0, "L", 64)
    assert im.mode == "L" and im.size == (64, 64)


def test_inpainting_trains_and_reloads(tmp_path, sample_images):
    from modise.synthesis import inpaint_lesion, load_inpaint

    data = _folder(tmp_path / "d", sample_images, inpainting=True)
    run = tmp_path / "run"
    s = _train("--data", str(data), "--out", str(run), "--inpainting", "--max-steps", "3", "--val-every", "2",
               "--val-steps", "1")
    assert s["global_step"] == 3 and np.isfinite(s["loss_after"])
    assert (run / "validation" / "step_000002.png").is_file()
    pipe = load_inpaint(str(run))
    assert pipe.unet.config.in_channels == 9
    image = np.asarray(Image.open(data / "0.png"))
    mask = np.asarray(Image.open(data / "0_mask.png")) > 0
    result, _ = inpaint_lesion(pipe, image, mask, steps=1, crop=64)
    assert np.array_equal(np.asarray(result)[~mask], image[~mask])


def test_bad_requests_are_clear(tmp_path, sample_images):
    data = _folder(tmp_path / "d", sample_images)
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--data", str(data), "--out", str(tmp_path / "r"), "--resume"])
    assert isinstance(res.exception, ModiseError) and "last.ckpt" in str(res.exception)
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--data", str(data), "--out", str(tmp_path / "r2"),
                                   "--inpainting"])
    assert isinstance(res.exception, ModiseError) and "mask_file_name" in str(res.exception)


@pytest.mark.parametrize("inpainting", [False, True], ids=["text2img", "inpainting"])
def test_lora_trains_adapters_only_and_saves_a_plain_pipeline(tmp_path, sample_images, inpainting):
    import torch
    from safetensors.torch import load_file

    from modise.synthesis import generate_images, inpaint_lesion, load_inpaint, load_text2img
    from modise.synthesis.mame_module import MameModule
    from modise.synthesis.pipelines import build_random_pipeline

    pipe = build_random_pipeline("tiny", inpainting=inpainting)
    module = MameModule(pipe.vae, pipe.text_encoder, pipe.unet, pipe.tokenizer, pipe.scheduler, lora_rank=4,
                        train_text_encoder=False, inpainting=inpainting)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("unet.") and ".lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} >= {"to_q", "to_k", "to_v", "0"}

    data = _folder(tmp_path / "d", sample_images, inpainting=inpainting)
    run = tmp_path / "run"
    flags = ["--inpainting"] if inpainting else []
    s = _train("--data", str(data), "--out", str(run), "--lora", "--lora-rank", "4", "--max-steps", "2",
               "--val-every", "0", *flags)
    assert s["global_step"] == 2 and s["lora_rank"] == 4
    assert np.isfinite(s["loss_before"]) and np.isfinite(s["loss_after"])
    assert s["loss_after"] != s["loss_before"]  # the adapters moved off their zero start

    adapter = run / "lora" / "pytorch_lora_weights.safetensors"
    unet_file = next((run / "unet").glob("*.safetensors"))
    lora_sd = load_file(adapter)
    assert lora_sd and all(k.startswith("unet.") and "lora" in k for k in lora_sd)
    assert adapter.stat().st_size < 0.25 * unet_file.stat().st_size
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"] and all(".lora_" in k for k in ckpt["state_dict"])  # adapters only

    # The run folder is a plain pipeline (LoRA merged): no peft layers after loading it as is.
    loaded = (load_inpaint if inpainting else load_text2img)(str(run))
    assert not any("lora" in n for n, _ in loaded.unet.named_parameters())
    if inpainting:
        image = np.asarray(Image.open(data / "0.png"))
        mask = np.asarray(Image.open(data / "0_mask.png")) > 0
        result, _ = inpaint_lesion(loaded, image, mask, steps=1, crop=64)
        assert np.array_equal(np.asarray(result)[~mask], image[~mask])
    else:
        (im,) = generate_images(loaded, "a siemens mammogram in CC view", 1, 0, 2, 5.0, "L", 64)
        assert im.size == (64, 64) and np.asarray(im).std() > 0

        # The shared adapter on the same base gives the merged UNet's output.
        # Inputs on the loaded pipeline's device (CUDA when there is one): a CPU tensor here failed there.
        base = build_random_pipeline("tiny").to(loaded.device)
        x = torch.randn(1, 4, 8, 8, device=loaded.device)
        cond = torch.randn(1, 77, 32, device=loaded.device)
        with torch.no_grad():
            plain = base.unet(x, 10, encoder_hidden_states=cond).sample
            base.load_lora_weights(str(run / "lora"))
            adapted = base.unet(x, 10, encoder_hidden_states=cond).sample
            merged = loaded.unet(x, 10, encoder_hidden_states=cond).sample
        assert not torch.allclose(plain, merged, atol=1e-5)
        torch.testing.assert_close(adapted, merged, atol=1e-4, rtol=1e-4)

        r = _train("--data", str(data), "--out", str(run), "--lora", "--lora-rank", "4", "--max-steps", "3",
                   "--val-every", "0", "--resume")
        assert r["global_step"] == 3
        assert r["loss_before"] == pytest.approx(s["loss_after"], rel=1e-4)  # resumed adapters = saved ones


def test_lora_bad_requests_are_clear(tmp_path, sample_images):
    data = _folder(tmp_path / "d", sample_images)
    res = CliRunner().invoke(app, ["mame", "train", *TINY, "--data", str(data), "--out", str(tmp_path / "r"),
                                   "--lora-text-encoder"])
    assert isinstance(res.exception, ModiseError) and "--lora" in str(res.exception)
