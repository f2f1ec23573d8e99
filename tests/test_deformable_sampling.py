"""The gather formulation of deformable attention's sampling equals transformers' grid_sample one, and
the pixel decoder uses it exactly where it should (CPU, no autograd)."""

from __future__ import annotations

import pytest
import torch

from modise import compat
from modise.model.deformable_sampling import sample_deformable
from modise.model.mask_generator import MaskGenerator


def _library_fn():
    fn = compat.mask2former_modules().multi_scale_deformable_attention
    return getattr(fn, "library_fn", fn)


def _inputs(b=2, shapes=((12, 10), (6, 5), (3, 3)), heads=4, c=8, points=3, seed=0, spread=1.4):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    q = 17
    value = torch.randn(b, s, heads, c, generator=g)
    # Locations from -0.2 to 1.2: a fifth of the samples have neighbours outside the map (zero padding).
    loc = torch.rand(b, q, heads, len(shapes), points, 2, generator=g) * spread - (spread - 1) / 2
    attn = torch.rand(b, q, heads, len(shapes), points, generator=g)
    return value, list(shapes), loc, attn / attn.sum((-1, -2), keepdim=True)


@pytest.mark.parametrize("seed", range(4))
def test_gather_equals_grid_sample(seed):
    value, shapes, loc, attn = _inputs(seed=seed)
    ref = _library_fn()(value, shapes, loc, attn)
    out = sample_deformable(value, shapes, loc, attn)
    assert out.shape == ref.shape == (2, 17, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sample_deformable(value, torch.tensor(shapes), loc, attn), ref, atol=1e-5, rtol=1e-5)


def test_gather_on_pixel_centres_edges_and_outside():
    # Samples exactly on pixel centres, on the map's border, half a pixel outside and fully outside.
    value, shapes, _, attn = _inputs(b=1, shapes=((4, 6),), heads=1, c=3, points=1)
    h, w = shapes[0]
    xs = torch.tensor([0.5 / w, 2.5 / w, 0.0, 1.0, -0.5 / w, 1 + 0.5 / w, -3.0, 0.3, 5.0 / w, 1.0])
    ys = torch.tensor([0.5 / h, 1.5 / h, 0.0, 1.0, 0.2, 0.7, 0.5, -1.0 / h, 0.0, 1 + 1.0 / h])
    loc = torch.stack([xs, ys], -1).view(1, 10, 1, 1, 1, 2)
    attn = torch.ones(1, 10, 1, 1, 1)
    ref = _library_fn()(value, shapes, loc, attn)
    torch.testing.assert_close(sample_deformable(value, shapes, loc, attn), ref, atol=1e-6, rtol=1e-6)
    grid = value[0, :, 0].view(h, w, 3)
    torch.testing.assert_close(sample_deformable(value, shapes, loc, attn)[0, 0], grid[0, 0])  # a pixel centre
    torch.testing.assert_close(sample_deformable(value, shapes, loc, attn)[0, 1], grid[1, 2])
    assert sample_deformable(value, shapes, loc, attn)[0, 6].abs().max() == 0  # far outside reads zeros


def test_gather_in_bf16_keeps_positions_in_fp32():
    value, shapes, loc, attn = _inputs(seed=5)
    vb = value.to(torch.bfloat16)
    ref = _library_fn()(vb.float(), shapes, loc, attn)
    out = sample_deformable(vb, shapes, loc, attn)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=2e-2)


def _mask_generator():
    torch.manual_seed(0)
    return MaskGenerator([8, 16, 24, 32], hidden_dim=32, num_queries=4, dec_layers=2, enc_layers=2, nheads=4,
                         dim_feedforward=64, enc_feedforward=64).eval()


def test_pixel_decoder_uses_the_gather_only_on_cpu_without_autograd(monkeypatch):
    mg = _mask_generator()  # 2 deformable layers
    dispatcher = compat.mask2former_modules().multi_scale_deformable_attention
    assert dispatcher.cpu_inference_fn is sample_deformable
    compat.route_deformable_sampling(sample_deformable)  # installed once: still one wrapper around the library's
    assert compat.mask2former_modules().multi_scale_deformable_attention is dispatcher
    assert getattr(dispatcher.library_fn, "cpu_inference_fn", None) is None
    maps = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip([8, 16, 24, 32], (4, 8, 16, 32))]
    calls = []
    monkeypatch.setattr(dispatcher, "cpu_inference_fn", lambda *a: calls.append(1) or sample_deformable(*a))
    with torch.no_grad():
        fast = mg.pixel_decoder(maps, return_dict=True).mask_features
    assert len(calls) == 2
    tracked = mg.pixel_decoder(maps, return_dict=True).mask_features  # training: transformers' own sampling
    assert len(calls) == 2 and tracked.requires_grad
    torch.testing.assert_close(fast, tracked.detach(), atol=1e-5, rtol=1e-5)
    tracked.sum().backward()
    attention, _ = compat.mask2former_init_targets()
    offsets = next(m for m in mg.pixel_decoder.modules() if isinstance(m, attention)).sampling_offsets
    assert offsets.weight.grad is not None and offsets.weight.grad.abs().sum() > 0  # through the sample positions
