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
