"""Model parts: presets/config validation, Mask2Former init traps, taps, sliding windows, class head."""

from __future__ import annotations

import math

import pytest
import torch

from modise.errors import ModiseError
from modise.model import PRESETS, load_preset
from modise.model.config import validate_config
from modise.model.diffusion_features import slide, window_boxes
from modise.model.mask_generator import MaskGenerator


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_at_both_sizes(preset):
    full, tiny = load_preset(preset, "full"), load_preset(preset, "tiny")
    assert full.preset == preset and full.size == "full" and tiny.size == "tiny"
    assert (full.num_queries, full.hidden_dim, full.dec_layers) == (200 if preset == "m2f-swinl" else 100, 256, 9)
    assert tiny.num_queries < 100 and tiny.random_weights
    assert full.loss.class_weight == 2 and full.loss.mask_weight == 5 and full.loss.dice_weight == 5
    assert full.loss.void_weight == 0.1 and full.loss.num_points == 12544


def test_unknown_keys_and_presets_are_one_sentence():
    with pytest.raises(ModiseError, match="Unknown preset 'nope'"):
        load_preset("nope", "tiny")
    with pytest.raises(ModiseError, match="hidden_dimm"):
        load_preset("m-odise", "tiny", {"hidden_dimm": 3})
    with pytest.raises(ModiseError, match="diffusion.kind"):
        validate_config({"diffusion": {"kind": "gan"}})
    with pytest.raises(ModiseError, match="size"):
        load_preset("m-odise", "huge")


def test_mask2former_init_traps_are_fixed():
    torch.manual_seed(0)
    gen = MaskGenerator([32, 32, 32, 32], hidden_dim=64, num_queries=8, dec_layers=2, enc_layers=1, nheads=4,
                        dim_feedforward=64, enc_feedforward=64)
    le = gen.pixel_decoder.level_embed
    assert torch.isfinite(le).all() and 0.5 < le.std().item() < 1.5  # normal(0, 1), not uninitialised memory
    from transformers.models.mask2former.modeling_mask2former import (
        Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention as MSDA,
    )

    attn = next(m for m in gen.modules() if isinstance(m, MSDA))
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    grid = attn.sampling_offsets.bias.view(attn.n_heads, attn.n_levels, attn.n_points, 2)
    theta = 2 * math.pi / attn.n_heads
    d = torch.tensor([math.cos(theta), math.sin(theta)])
    d = d / d.abs().max()
    assert torch.allclose(grid[1, 0, 0], d, atol=1e-6)  # head 1 points in its own direction
    assert torch.allclose(grid[1, 2, 3], 4 * d, atol=1e-6)  # point i at distance i+1, same on every level
    assert torch.count_nonzero(attn.attention_weights.weight) == 0


def test_window_boxes_are_odise_grid_without_overlap_but_the_last():
    assert window_boxes(256, 256, 256) == [(0, 0, 256, 256)]
    # 512 x 1280: stride = side, the last column flush with the border (ODISE feature_extractor.py:205-224)
    boxes = window_boxes(512, 1280, 512)
    assert boxes == [(0, 0, 512, 512), (0, 512, 512, 1024), (0, 768, 512, 1280)]
    assert len(window_boxes(1024, 1024, 512)) == 4


def test_slide_stitches_windows_back_in_place():
    # A position-encoding "extractor": each window returns the average-pooled image itself, so the
    # stitched maps must equal the pooled full image exactly wherever windows overlap.
    img = torch.rand(2, 3, 320, 384)

    def fn(crop):
        return [torch.nn.functional.avg_pool2d(crop, s) for s in (4, 8, 16, 32)]

    for batch in (0, 1, 3):
        out = slide(fn, img, 256, window_batch=batch)
        for o, s in zip(out, (4, 8, 16, 32)):
            assert torch.allclose(o, torch.nn.functional.avg_pool2d(img, s), atol=1e-5)


def test_text_head_max_over_synonyms_and_void_last():
    from modise.model.class_head import TextClassHead

    emb = torch.nn.functional.normalize(torch.eye(4)[:, None].repeat(1, 2, 1), dim=-1)[:2]  # K=2, S=2, E=4
    emb[0, 1] = torch.tensor([0.0, 0.0, 1.0, 0.0])  # class 0 has a synonym along e2
    valid = torch.tensor([[True, True], [True, False]])
    null = torch.tensor([0.0, 0.0, 0.0, 1.0])
    head = TextClassHead(emb, valid, null, hidden_dim=4, projection_dim=4, init_logit_scale=0.0)
    with torch.no_grad():  # make the mask embedding the query itself and the text projection the identity
        head.text_proj.weight.copy_(torch.eye(4))
        head.text_proj.bias.zero_()
        for lin in head.pooled.pool_proj[1], *head.pooled.mask_embed[1].layers[:2]:
            lin.weight.zero_(), lin.bias.zero_()
        last = head.pooled.mask_embed[1].layers[2]
        last.weight.zero_(), last.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
    logits = head(torch.zeros(1, 1, 4), torch.rand(1, 4, 3, 3), torch.zeros(1, 1, 3, 3)).detach()
    assert logits.shape == (1, 1, 3)
    assert logits[0, 0, 0] == pytest.approx(1.0)  # matched through the synonym
    assert logits[0, 0, 1] == pytest.approx(0.0)
    assert logits[0, 0, 2] == pytest.approx(0.0)  # void: the projected "" embedding (e3)


def test_clip_bundle_kind_is_explicit():
    from modise.model.image_encoders import CLIP_KINDS, build_clip_bundle

    with pytest.raises(ModiseError, match="Unknown image/text encoder kind 'linear'; use one of clip, biomedclip"):
        build_clip_bundle("linear", None, "tiny", random_weights=True)
    assert CLIP_KINDS == ("clip", "biomedclip")
