"""``modise benchmark``: per-stage seconds from the real forward, ratio, memory, --train, --device."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from modise.cli import app

STAGES = {"captioner", "vae_encode", "unet", "decoder_taps", "projection", "mask_generator", "class_head", "clip_ensemble"}


def _run(*args: str) -> dict:
    r = CliRunner().invoke(app, ["benchmark", "--size", "tiny", "--image-size", "64", "--repeats", "3", "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_inference_stages_add_up_to_the_whole_and_show_their_spread():
    res = _run("--preset", "m-odise", "--batch-size", "2")
    st = res["stages"]
    assert STAGES | {"postprocess", "other", "total", "forward"} <= set(st)
    total = st["total"]["seconds_per_image"]
    parts = sum(v["seconds_per_image"] for k, v in st.items() if k not in ("total", "forward"))
    assert parts == pytest.approx(total, rel=0.01, abs=5e-5)  # stages of one run: no part beats the whole
    assert all(v["seconds_per_image"] <= total + 1e-5 for k, v in st.items())
    assert all(v["min"] <= v["seconds_per_image"] <= v["max"] for v in st.values())
    # the reference: every frozen diffusion pass (the partial VAE decode too); VAE encode + UNet alone beside it
    encode_unet = st["vae_encode"]["seconds_per_image"] + st["unet"]["seconds_per_image"]
    frozen = encode_unet + st["decoder_taps"]["seconds_per_image"]
    assert res["diffusion_seconds_per_image"] == pytest.approx(frozen, abs=3e-5)
    assert res["overhead_ratio"] == pytest.approx(total / frozen, rel=0.01)
    assert res["encode_unet_seconds_per_image"] == pytest.approx(encode_unet, abs=2e-5)
    assert res["ratio_to_encode_unet"] == pytest.approx(total / encode_unet, rel=0.01)
    assert res["ratio_to_encode_unet"] > res["overhead_ratio"]
    assert 1 <= res["repeats"] <= 3 and res["peak_rss_mb"] > 0 and res["peak_cuda_mb"] is None
    assert (res["batch_size"], res["precision"], res["mode"]) == (2, "fp32", "inference")
    from modise.model.cli import benchmark_rows

    rows = benchmark_rows(res)  # the printed table: the forward is a bracketed subtotal, the rest adds up to 100 %
    shares = [int(share.rstrip("%")) for name, _, share, _ in rows[:-1] if not share.startswith("(")]
    assert rows[0][2].startswith("(") and rows[-1][:1] == ("total",) and 100 - len(shares) <= sum(shares) <= 100 + len(shares)


def test_training_step_reports_images_per_second_in_bf16():
    res = _run("--preset", "m2f-sd", "--batch-size", "2", "--train", "--precision", "bf16")
    assert res["mode"] == "train" and res["images_per_second"] > 0
    assert "backward_and_step" in res["stages"] and not {"postprocess", "clip_ensemble"} & set(res["stages"])


def test_bad_device_and_precision_are_one_sentence():
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["benchmark", "--device", "cuda"])
        assert r.exit_code == 2 and "no CUDA GPU" in r.output
    r = CliRunner().invoke(app, ["benchmark", "--size", "tiny", "--image-size", "64", "--precision", "fp8"])
    assert r.exit_code == 2 and "Invalid value for '--precision'" in r.output and "'fp8' is not one of" in r.output
