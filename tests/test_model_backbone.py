"""The typed backbone interface: every backbone maps images (+ conditioning) to 4 maps,
keeps no state between calls, and is wired by keyword; ``modise inspect`` shows the settings."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from modise.cli import app
from modise.model import build_model
from modise.model.backbone import Backbone


def _images(b: int = 2, h: int = 128, w: int = 128) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("preset", ["m-odise", "m2f-swinl"])
def test_every_backbone_gives_four_maps_at_strides_4_to_32(preset):
    m = build_model(preset, "tiny").eval()
    bb = m.backbone
    assert isinstance(bb, Backbone)
    with torch.no_grad():
        maps = bb(_images(2, 128, 192), m.captioner)
    assert [tuple(t.shape) for t in maps] == [(2, c, 128 // s, 192 // s) for c, s in zip(bb.out_channels, (4, 8, 16, 32))]
    assert "feature_maps" in bb.describe() and bb.stage_modules()
    if preset == "m2f-swinl":
        assert m.captioner is None and bb.frozen_modules() == []  # trainable Swin (Mask2Former)


def test_diffusion_backbone_keeps_no_hooks_or_state_between_calls():
    m = build_model("m-odise", "tiny").eval()
    ex = m.backbone.extractor
    with torch.no_grad():
        m.captioner.gate.fill_(0.5)
        m.captioner.time_gate.fill_(0.5)

    def hooks() -> int:
        return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in ex.modules())

    before = hooks()
    x = _images(1)
    with torch.no_grad():
        a = m.features(x)
        b = m.features(x)
        plain = m.backbone(x)  # no conditioning: the empty prompt and an unchanged time embedding
    assert hooks() == before  # the tap / time-embedding hooks live for one call only
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.allclose(u, v) for u, v in zip(a, plain))  # the captioner did reach the UNet
    with pytest.raises((RuntimeError, ValueError)):  # a failing call leaves no hook behind either
        m.backbone(torch.rand(1, 3, 128, 128), lambda x, e: (torch.zeros(1, 5, 5), None))
    assert hooks() == before


def test_a_captioner_on_a_backbone_without_conditioning_is_one_sentence():
    from modise.errors import ModiseError

    with pytest.raises(ModiseError, match="captioner.encoder"):
        build_model("m2f-swinl", "tiny", overrides={"captioner": {"encoder": "clip", "model_id": None}})


def test_inspect_json_shows_thresholds_optimiser_and_trainable_parts():
    r = CliRunner().invoke(app, ["inspect", "--preset", "m-odise", "--size", "tiny", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["inference"]["overlap_threshold"] == 0.8 and "object_mask_threshold" in rep["inference"]
    assert "backbone_lr_multiplier" in rep["optimizer"] and "weight_decay_norm" in rep["optimizer"]
    parts = rep["parts"]
    assert parts["backbone.extractor"]["trainable"] == 0 and parts["backbone.projection"]["trainable"] > 0
    assert parts["backbone"]["trainable"] == parts["backbone.projection"]["trainable"]


def test_inspect_and_benchmark_default_to_the_full_size_like_every_command():
    import typer.main

    cmd = typer.main.get_command(app)
    for name in ("inspect", "benchmark", "train"):
        size = next(p for p in cmd.commands[name].params if p.name == "size")
        assert size.default in ("full", "ModelSize.full") or getattr(size.default, "value", None) == "full", name
    assert "--random-weights" in next(p for p in cmd.commands["inspect"].params if p.name == "size").help
