"""ODISE's implicit captioner, class head, CLIP ensemble and inference thresholds, pinned with small tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modise.errors import ModiseError
from modise.model import PRESETS, build_model, load_preset
from modise.model.class_head import TextClassHead, mask_pool
from modise.model.clip_ensemble import MaskCLIPClassifier, geometric_ensemble
from modise.model.image_encoders import clip_preprocess
from modise.model.implicit_captioner import PositionalLinear


@pytest.fixture(scope="module")
def odise():
    return build_model("odise", "tiny")


# ------------------------------------------------------------------ implicit captioner
def test_positional_linear_is_linear_plus_a_learned_term_per_token():
    torch.manual_seed(0)
    pl = PositionalLinear(5, 3, seq_len=4)
    x = torch.randn(2, 5)
    y = pl(x)
    assert y.shape == (2, 4, 3) and pl.positional_embedding.shape == (1, 4, 3)
    assert torch.allclose(y, pl.linear(x)[:, None] + pl.positional_embedding)
    assert 0 < pl.positional_embedding.std() < 0.05  # trunc_normal(std=0.02)


def test_captioner_gates_are_full_shape_zero_and_start_at_the_empty_prompt(odise):
    cap, bb = odise.captioner, odise.backbone.extractor
    assert cap.gate.shape == (1, bb.seq_len, bb.cond_dim) and not cap.gate.any()
    assert cap.time_gate.shape == (bb.time_embed_dim,) and not cap.time_gate.any()  # ODISE turns the time path on
    x = torch.rand(2, 3, 96, 64)
    cond, t = cap(x, bb.empty_embeds)
    assert cond.shape == (2, bb.seq_len, bb.cond_dim) and torch.equal(cond, bb.empty_embeds.expand(2, -1, -1))
    assert t.shape == (2, bb.time_embed_dim) and not t.any()
    with torch.no_grad():
        cap.gate.fill_(0.3), cap.time_gate.fill_(0.3)
    try:
        cond, t = cap(x, bb.empty_embeds)
        e = cap.image_encoder(x)
        assert torch.allclose(cond, bb.empty_embeds + torch.tanh(torch.tensor(0.3)) * cap.project(e), atol=1e-6)
        assert not torch.allclose(cond[0], cond[1]) and t.abs().sum() > 0  # image-specific conditioning
    finally:
        with torch.no_grad():
            cap.gate.zero_(), cap.time_gate.zero_()


def test_captioner_sees_the_unnormalised_image_embedding(odise):
    enc = odise.captioner.image_encoder
    x = torch.rand(2, 3, 64, 64)
    e = enc(x)
    assert torch.allclose(e, enc.visual((x - enc.mean) / enc.std), atol=1e-6)
    assert not torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-3)


def test_clip_preprocess_keeps_the_aspect_ratio_short_side_and_centre_crop():
    # a horizontal ramp 0..1 over a 2:1 image: the centre crop keeps only its middle half
    x = torch.linspace(0, 1, 128).view(1, 1, 1, 128).expand(1, 3, 64, 128)
    y = clip_preprocess(x, 32, torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    assert y.shape == (1, 3, 32, 32)
    assert y[0, 0, 16, 0] == pytest.approx(0.25, abs=0.03) and y[0, 0, 16, -1] == pytest.approx(0.75, abs=0.03)
    assert torch.allclose(y[0, 0, 0], y[0, 0, -1], atol=1e-4)  # rows untouched: no vertical squeeze


def test_odise_presets_use_clip_vit_l_14_336():
    for preset in ("odise", "odise-mame"):
        c = load_preset(preset, "full")
        assert c.captioner.model_id == c.class_head.model_id == "ViT-L-14-336/openai" and c.captioner.time_embedding


# ------------------------------------------------------------------ class head
def test_mask_pool_is_hard_and_detached():
    feats = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    logits = torch.full((1, 1, 4, 4), -3.0, requires_grad=True)
    with torch.no_grad():
        logits[0, 0, :2, :2] = 0.2  # sigmoid 0.55 > 0.5: inside; the soft weight does not matter
    pooled = mask_pool(feats, logits)
    assert torch.allclose(pooled[0, 0], feats[0, :, :2, :2].mean(dim=(-1, -2)))
    assert not pooled.requires_grad


def test_class_head_text_side_is_unnormalised_projected_with_void_from_the_empty_prompt(odise):
    from open_clip.tokenizer import SimpleTokenizer

    head = odise.class_head
    assert isinstance(head, TextClassHead)
    clip = odise.extras["clip_model"]
    with torch.no_grad():
        empty = clip.encode_text(SimpleTokenizer(context_length=77)([""]))
    assert torch.allclose(head.null_embed.detach(), empty, atol=1e-5)  # learnable, initialised as ""
    assert head.null_embed.requires_grad
    norms = head.text_embeds[head.valid].norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-3)  # raw CLIP text embeddings
    assert head.text_proj.in_features == clip.text_projection.shape[-1]
    assert head.text_proj.out_features == odise.config.hidden_dim  # ODISE: projection_dim = mask_dim
    t = F.normalize(head.text_proj(head.text_embeds[:, 0]), dim=-1)
    assert (t[0] @ t[1]).abs() < 0.99  # a random tiny tower still tells the prompts apart
    assert len(head.pooled.mask_embed[1].layers) == 3  # LayerNorm + 3-layer MLP


def test_class_head_trains_through_the_pooled_pixel_features(odise):
    x = torch.rand(1, 3, 128, 128)
    odise.train()
    out = odise(x)
    assert len(out["aux_outputs"]) == odise.config.dec_layers
    out["pred_logits"].sum().backward()
    g = odise.class_head.pooled.pool_proj[1].weight.grad
    assert g is not None and g.abs().sum() > 0
    odise.zero_grad(set_to_none=True)


@pytest.mark.parametrize("preset", ["odise", "m-odise"])
def test_tiny_presets_overfit_two_lesion_classes(preset):
    # one bright and one dim square, each its own class: the head must tell them apart
    torch.manual_seed(0)
    from modise.data.panoptic import Category

    cats = [Category(1, "circumscribed_mass", 1, ["a circumscribed mass"]), Category(2, "spiculated_mass", 1, [])]
    m = build_model(preset, "tiny", categories=cats, overrides={"loss": {"num_points": 1024}})
    x = torch.full((2, 3, 128, 128), 0.1)
    masks = torch.zeros(2, 1, 128, 128)
    x[0, :, 20:60, 30:70], masks[0, 0, 20:60, 30:70] = 0.9, 1
    x[1, :, 60:110, 50:100], masks[1, 0, 60:110, 50:100] = 0.5, 1
    t = [{"labels": torch.tensor([0]), "masks": masks[0]}, {"labels": torch.tensor([1]), "masks": masks[1]}]
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-3)

    def step() -> float:
        opt.zero_grad()
        (loss := m.loss(m(x), t)["loss"]).backward()
        opt.step()
        return loss.item()

    losses = [step() for _ in range(40)]
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    res = m.inference(x, settings=m.config.inference.replace(object_mask_threshold=0.5))
    for r, want in zip(res, (1, 2)):
        segs = r["panoptic_seg"][1]
        assert segs and max(segs, key=lambda s: s["score"])["category_id"] == want


# ------------------------------------------------------------------ ensemble
def test_geometric_ensemble_formula():
    logits = torch.tensor([[2.0, 0.0, 1.0]])  # K=2 classes + void
    clip = torch.tensor([[0.0, 3.0]])
    seen = torch.tensor([True, False])
    out = geometric_ensemble(logits, clip, seen, alpha=0.3, beta=0.7).exp()
    p, pc = logits[:, :2].softmax(-1), clip.softmax(-1)
    fg = torch.stack([p[0, 0] ** 0.7 * pc[0, 0] ** 0.3, p[0, 1] ** 0.3 * pc[0, 1] ** 0.7])
    void = logits.softmax(-1)[0, 2]
    expect = torch.cat([fg / fg.sum() * (1 - void), void[None]])
    assert torch.allclose(out[0], expect + 1e-8, atol=1e-6)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    # alpha = 0: the class head alone
    same = geometric_ensemble(logits, clip, torch.tensor([True, True]), alpha=0.0).exp()
    assert torch.allclose(same, logits.softmax(-1), atol=1e-6)


def test_maskclip_full_mask_token_equals_the_class_token(odise):
    clf = odise.extras["clip_ensemble"]
    assert isinstance(clf, MaskCLIPClassifier)
    x = torch.rand(1, 3, 80, 96)
    full = torch.full((1, 2, 20, 24), 10.0)
    full[0, 1, :, 12:] = -10.0  # second mask: left half only
    e = clf.mask_embed(x, full)
    s = clf.image_size
    ref = clf.visual((F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False) - clf.mean) / clf.std)
    assert torch.allclose(e[0, 0], ref[0], atol=1e-4)  # attends to everything the class token does
    assert not torch.allclose(e[0, 1], ref[0], atol=1e-3)
    am = clf.attention_mask(F.interpolate(full, size=(s, s)))
    q, p = 2, (s // clf.visual.conv1.stride[0]) ** 2
    assert am.shape == (1, q + 1 + p, q + 1 + p)
    assert torch.isinf(am[0, :, :q]).all() and not torch.isinf(am[0, q:, q:]).any()
    assert torch.isinf(am[0, 1, q + 1:]).sum() == p // 2  # the half-image mask hides half the patches
    assert clf(x, full).shape == (1, 2, len(odise.categories))


def test_ensemble_runs_at_inference_for_clip_presets_only(odise):
    assert odise.config.inference.clip_ensemble and "clip_ensemble" in odise.extras
    res = odise.inference(torch.rand(1, 3, 70, 90))[0]
    assert res["sem_seg"].shape == (len(odise.categories), 70, 90)
    for preset in ("m-odise", "odise-biomedclip"):  # BiomedCLIP: on too (one rule; the timm tower is pooled like CLIP's)
        assert load_preset(preset, "full").inference.clip_ensemble
    m = build_model("m-odise", "tiny", overrides={"inference": {"clip_ensemble": False}})  # opt-out keeps it switchable
    assert "clip_ensemble" in m.extras and m.inference(torch.rand(1, 3, 96, 96))[0]["sem_seg"].shape[-2:] == (96, 96)
    with pytest.raises(ModiseError, match="clip_ensemble"):
        build_model("m2f-sd", "tiny", overrides={"inference": {"clip_ensemble": True}})


def test_biomedclip_style_timm_tower_is_mask_pooled_like_its_class_token():
    # BiomedCLIP's image tower: open_clip TimmModel around a timm ViT (no positional_embedding)
    from open_clip.timm_model import TimmModel

    torch.manual_seed(0)
    visual = TimmModel("vit_tiny_patch16_224", embed_dim=16, image_size=224, pool="", proj="linear").eval()
    assert not hasattr(visual, "positional_embedding")
    clf = MaskCLIPClassifier(visual, 224, (0.5,) * 3, (0.5,) * 3, torch.randn(2, 1, 16), torch.ones(2, 1, dtype=torch.bool), 10.0)
    x = torch.rand(1, 3, 64, 64)
    masks = torch.full((1, 2, 16, 16), 10.0)
    masks[0, 1, :, 8:] = -10.0
    e = clf.mask_embed(x, masks)
    with torch.no_grad():
        ref = visual((F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False) - 0.5) / 0.5)
    assert torch.allclose(e[0, 0], ref[0], atol=1e-4) and not torch.allclose(e[0, 1], ref[0], atol=1e-3)
    assert clf(x, masks).shape == (1, 2, 2)
    with pytest.raises(ModiseError, match="cannot mask-pool"):
        MaskCLIPClassifier(torch.nn.Linear(2, 2), 32, (0.5,) * 3, (0.5,) * 3, torch.randn(2, 1, 8),
                           torch.ones(2, 1, dtype=torch.bool), 1.0)


# ------------------------------------------------------------------ thresholds
@pytest.mark.parametrize("preset", PRESETS)
def test_inference_thresholds_are_odise_or_mask2former_and_saved_with_the_weights(preset):
    c = load_preset(preset, "full")
    ic = c.inference
    want = (0.8, 0.8) if preset.startswith("m2f-") else (0.0, 0.8)
    assert (ic.object_mask_threshold, ic.overlap_threshold) == want
    assert load_preset(preset, "tiny").inference == ic
    assert c.model_dump()["inference"]["object_mask_threshold"] == want[0]  # what save_pretrained writes


def test_a_runs_thresholds_live_in_the_model_config_saved_with_its_weights(tmp_path):
    import yaml

    from modise.data.phantoms import prepare_synthetic
    from modise.pipeline import ModisePipeline
    from modise.engine.training.config import TrainConfig
    from modise.engine.training.train import train

    data = tmp_path / "data"
    prepare_synthetic(data, n=6, seed=0, size=96, k=3, quiet=True)
    base = dict(preset="m2f-sd", size="tiny", data=str(data), fold=0, random_weights=True, image_size=96, batch_size=2,
                max_steps=1, checkpoint_every=1, accelerator="cpu", devices=1)
    for kw, want in (({}, (0.8, 0.8)), ({"model_overrides": {"inference": {"object_mask_threshold": 0.3}}}, (0.3, 0.8))):
        run = tmp_path / f"run{len(kw)}"
        train(TrainConfig(**base, **kw), run)
        saved = yaml.safe_load((run / "model" / "config.yaml").read_text())["inference"]
        assert (saved["object_mask_threshold"], saved["overlap_threshold"]) == want
        p = ModisePipeline.from_pretrained(run, device="cpu")
        ic = p.model.config.inference
        assert (ic.object_mask_threshold, ic.overlap_threshold) == want


def test_full_size_heads_have_odises_trainable_counts():
    """ODISE README: 28.1M trainable parameters. At full size (CLIP width 768, SD cond 77x768, time 1280,
    hidden 256, 100 queries) the parts built here count: captioner 1,695,744, mask generator 20,035,776,
    class head 461,825; with ODISE's 8 per-tap BottleneckBlocks (5,873,664: no shortcut where 512 -> 512)
    that is 28,067,009."""
    import open_clip

    from modise.model.image_encoders import ClipBundle, ImageEncoder
    from modise.model.implicit_captioner import ImplicitCaptioner
    from modise.model.mask_generator import MaskGenerator

    def n(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    narrow = open_clip.CLIP(embed_dim=768, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=16, head_width=16),
                            text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)).requires_grad_(False)
    cap = ImplicitCaptioner(ImageEncoder(ClipBundle(narrow, None, 32)), cond_dim=768, seq_len=77, time_embed_dim=1280)
    gen = MaskGenerator([512] * 4, 256, 100, 9, 6, 8, 2048, 1024)
    head = TextClassHead(torch.randn(2, 1, 768), torch.ones(2, 1, dtype=torch.bool), torch.randn(768), 256, 256, 2.659)
    assert (n(cap), n(gen), n(head)) == (1_695_744, 20_035_776, 461_825)
    bottlenecks = sum(c * 128 + 9 * 128 * 128 + 128 * 512 + 2 * (128 + 128 + 512) + (c * 512 + 1024 if c != 512 else 0)
                      for c in (512, 512, 2560, 1920, 960, 640, 512, 512))
    assert bottlenecks == 5_873_664
    assert n(cap) + n(gen) + n(head) + bottlenecks == 28_067_009  # "28.1M"
