"""The diffusion feature path as ODISE builds it: taps, noise, windows, projections, frozen precision."""

from __future__ import annotations

import pytest
import torch

from modise.model import build_model, load_preset
from modise.model.diffusion_features import window_boxes, window_side
from modise.model.feature_projection import BottleneckBlock, FeatureProjection
from modise.model.stable_diffusion import SD15_VAE

SD15_TAP_CHANNELS = [512, 512, 2560, 1920, 960, 640, 512, 512]
TAP_STRIDES = [4, 8, 64, 32, 16, 8, 8, 4]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("m-odise", "tiny").eval()
    with torch.no_grad():  # a non-zero gate, so the captioner really changes the UNet's conditioning
        m.captioner.gate.fill_(0.7)
    return m


def _images(b: int = 3, h: int = 128, w: int = 128) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(1))


def test_shared_noise_is_one_seed_42_map_expanded_and_resized_bicubically(model):
    bb = model.backbone.extractor
    assert model.config.noise_seed == 42
    assert bb.shared_noise.shape == (1, 4, 16, 16)  # tiny: native 128 px -> 16; SD-1.x 512 px -> [1,4,64,64]
    assert SD15_VAE["sample_size"] // 2 ** (len(SD15_VAE["block_out_channels"]) - 1) == 64
    expected = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(42))
    assert torch.equal(bb.shared_noise, expected)
    lat = torch.zeros(5, 4, 16, 16)
    n = bb.noise_like(lat)
    assert n.shape == lat.shape and all(torch.equal(n[i], expected[0]) for i in range(5))
    big = bb.noise_like(torch.zeros(2, 4, 24, 32))
    ref = torch.nn.functional.interpolate(expected, size=(24, 32), mode="bicubic", align_corners=False)
    assert torch.allclose(big[1], ref[0])


def test_an_images_features_do_not_depend_on_the_rest_of_its_batch(model):
    x = _images(3, 192, 224)  # tiny: 128 px windows, 4 per image
    with torch.no_grad():
        alone = model.features(x[1:2])
        batch = model.features(x)
    for a, b in zip(alone, batch):  # equal up to fp32 kernel rounding (batch size changes the kernels)
        assert (a[0] - b[1]).abs().max() <= 1e-5 * a.abs().max()


def test_decoder_taps_see_the_clean_latent_not_the_captioners_conditioning(model):
    bb, x = model.backbone.extractor, _images(2)
    with torch.no_grad():
        plain = bb(x)
        cond, time_extra = model.captioner(x, bb.empty_embeds)
        conditioned = bb(x, cond + 0.5, time_extra)
    for i in (0, 1, 6, 7):  # VAE encoder + decoder taps
        assert torch.equal(plain[i], conditioned[i])
    for i in (3, 4, 5):  # UNet taps after cross-attention do change
        assert not torch.allclose(plain[i], conditioned[i])


def test_projection_is_one_detectron2_bottleneck_per_tap_at_full_width():
    proj = FeatureProjection(SD15_TAP_CHANNELS, TAP_STRIDES, 512)
    assert len(proj.proj) == 8 and all(isinstance(p, BottleneckBlock) for p in proj.proj)
    b = proj.proj[2]  # the 2560-channel UNet tap
    assert [tuple(c[0].weight.shape) for c in (b.conv1, b.conv2, b.conv3, b.shortcut)] == [
        (128, 2560, 1, 1), (128, 128, 3, 3), (512, 128, 1, 1), (512, 2560, 1, 1)]
    assert all(c[1].num_groups == 32 and c[0].bias is None for c in (b.conv1, b.conv2, b.conv3, b.shortcut))
    assert proj.proj[0].shortcut is None  # 512 -> 512: identity shortcut, as detectron2
    # 1x1 (+GN) + 3x3 (+GN) + 1x1 (+GN) per tap, plus the 1x1 (+GN) shortcut where C != 512
    per_tap = [128 * c + 128 * 128 * 9 + 128 * 512 + 2 * (128 + 128 + 512) + (512 * c + 1024) * (c != 512)
               for c in SD15_TAP_CHANNELS]
    assert sum(p.numel() for p in proj.parameters()) == sum(per_tap) == 5_873_664
    assert proj.tap_strides == [4, 8, 32, 32, 16, 8, 8, 4]  # stride 64 clamped to 32 (feature_extractor.py:93)


def test_projection_resizes_nearest_before_projecting_and_sums_equal_strides():
    torch.manual_seed(0)
    proj = FeatureProjection([4] * 8, TAP_STRIDES, 16).eval()
    taps = [torch.rand(1, 4, 128 // s, 128 // s) for s in TAP_STRIDES]  # a window resized to 128 px
    outs = proj(taps, (96, 96))  # ... from 96 px: features come back at 96 / stride
    assert [tuple(o.shape) for o in outs] == [(1, 16, 24, 24), (1, 16, 12, 12), (1, 16, 6, 6), (1, 16, 3, 3)]
    near = torch.nn.functional.interpolate(taps[2], size=(3, 3), mode="nearest")  # stride 64: 2x2 -> 3x3
    mid = torch.nn.functional.interpolate(taps[3], size=(3, 3), mode="nearest")
    with torch.no_grad():
        assert torch.allclose(outs[3], proj.proj[2](near) + proj.proj[3](mid))


def test_window_side_and_grid_follow_odise():
    assert window_side(1024, 1024, 512) == 512 and window_side(384, 1024, 512) == 384
    assert window_side(1024, 2048, 512, slide_training=False) == 1024
    assert window_boxes(1024, 1024, 512) == [(0, 0, 512, 512), (0, 512, 512, 1024), (512, 0, 1024, 512),
                                             (512, 512, 1024, 1024)]


def test_full_defaults_are_odise_windows_and_tiny_stays_small():
    full, tiny = load_preset("m-odise", "full").diffusion, load_preset("m-odise", "tiny").diffusion
    assert (full.window_size, full.slide_training, full.internal_size, full.projection_dim) == (512, True, None, 512)
    assert SD15_VAE["sample_size"] == 512  # internal_size None = the VAE's native size: 512 for SD-1.x / MAM-E
    assert full.frozen_precision == "auto" and not full.compile
    assert tiny.projection_dim < 512 and tiny.window_size <= 256


def test_windows_are_resized_to_the_native_size_and_batched_into_one_captioner_and_unet_call():
    model = build_model("m-odise", "tiny").eval()
    with torch.no_grad():
        model.captioner.gate.fill_(0.7)
    seen = {"unet": [], "captioner": []}
    model.backbone.extractor.unet.register_forward_pre_hook(lambda m, a: seen["unet"].append(a[0].shape))
    model.captioner.register_forward_pre_hook(lambda m, a: seen["captioner"].append(a[0].shape))
    x = _images(2, 96, 160)  # side 96 (< the native 128), windows at x = 0 and 64
    results = {}
    for dtype in (torch.float32, torch.float64):
        model.to(dtype)
        for batch in (0, 1):
            model.backbone.window_batch = batch
            with torch.no_grad():
                results[dtype, batch] = model.features(x.to(dtype))
    # all 2 windows x 2 images in one captioner and one UNet call, each resized to the native 128 px
    assert seen["captioner"][0] == (4, 3, 128, 128) and seen["unet"][0] == (4, 4, 16, 16)
    assert [s[0] for s in seen["unet"][1:5]] == [1, 1, 1, 1]  # window_batch 1: one window per call
    for a, b in zip(results[torch.float64, 0], results[torch.float64, 1]):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-10  # the same computation, exactly
    for a, b in zip(results[torch.float32, 0], results[torch.float32, 1]):
        # fp32: only kernel rounding differs between batch sizes (|maps| ~ 10 with random weights)
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_unet_uses_pytorch_sdpa_attention(model):
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs = model.backbone.extractor.unet.attn_processors
    assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs.values())


def test_frozen_parts_in_bf16_trainable_in_fp32_and_it_still_trains():
    m = build_model("m-odise", "tiny").set_frozen_precision("bf16")
    frozen = {id(p) for f in m.frozen_modules() for p in f.parameters()}
    params = list(m.parameters())
    assert frozen and all(p.dtype == torch.bfloat16 for p in params if id(p) in frozen)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params if id(p) not in frozen)
    x = _images(2)
    targets = [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 128, 128)} for _ in range(2)]
    targets[0]["masks"][0, 20:60, 30:70] = 1
    targets[1]["masks"][0, 70:110, 50:90] = 1
    m.train()
    with torch.no_grad():
        m.captioner.gate.fill_(0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.loss(m(x), targets)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert m.captioner.project.linear.weight.grad is not None and m.captioner.project.linear.weight.grad.dtype == torch.float32
    assert m.backbone.projection.proj[0].conv1[0].weight.grad.abs().sum() > 0
    m.eval()
    res = m.inference(x)  # fp32 heads, no autocast: features come back as fp32
    assert len(res) == 2


def test_frozen_precision_config_applies_at_the_first_forward_and_auto_keeps_fp32_off_a_gpu():
    auto = build_model("odise", "tiny")
    with torch.no_grad():
        auto.features(_images(1))
    assert auto.backbone.extractor.dtype == torch.float32  # "auto" on a CPU: weights as given
    m = build_model("odise", "tiny", overrides={"diffusion": {"frozen_precision": "bf16"}})
    with torch.no_grad():
        maps = m.features(_images(1))
    assert m.backbone.extractor.dtype == torch.bfloat16 and all(t.dtype == torch.float32 for t in maps)
    visual = m.extras["clip_model"].visual  # a frozen tower others may call directly with fp32 images
    assert next(visual.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        assert visual(torch.rand(1, 3, 64, 64)).dtype == torch.bfloat16


def test_checkpointed_projection_gives_the_same_gradients():
    m = build_model("m-odise", "tiny").train()
    x = _images(2)
    grads = []
    for ckpt in (True, False):
        m.backbone.checkpoint_projection = ckpt
        m.zero_grad(set_to_none=True)
        sum(f.square().mean() for f in m.features(x)).backward()
        grads.append([p.grad.clone() for p in m.backbone.projection.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
