"""``modise.compat``: every library internal MODISE relies on still exists and still means the same.

When one of these fails after a library upgrade, fix ``src/modise/compat.py`` (and only it).
"""

from __future__ import annotations

import inspect

import torch

from modise import compat
from modise.model.mask_generator import mask2former_config


def test_mask2former_blocks_build_standalone_and_keep_their_io():
    cfg = mask2former_config(hidden_dim=32, num_queries=4, dec_layers=2, enc_layers=1, nheads=2, dim_feedforward=64,
                             enc_feedforward=64)
    pix = compat.mask2former_pixel_decoder(cfg, [8, 16, 24, 32])
    dec = compat.mask2former_transformer_decoder(cfg, in_features=32)
    torch.nn.init.normal_(pix.level_embed)  # uninitialised memory when built standalone (mask_generator.py)
    maps = [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip([8, 16, 24, 32], (4, 8, 16, 32))]
    out = pix(maps, return_dict=True)
    assert out.mask_features.shape == (1, 32, 16, 16) and len(out.multi_scale_features) == 3
    res = dec(list(out.multi_scale_features), out.mask_features)
    assert len(res.masks_queries_logits) == 3 and res.masks_queries_logits[-1].shape == (1, 4, 16, 16)
    assert res.intermediate_hidden_states[-1].shape == (4, 1, 32)  # [Q,B,D]
    attention, layer = compat.mask2former_init_targets()
    assert any(isinstance(m, attention) for m in pix.modules()) and any(isinstance(m, layer) for m in dec.modules())
    for name in ("n_heads", "n_levels", "n_points", "sampling_offsets", "attention_weights", "value_proj", "output_proj"):
        assert hasattr(next(m for m in pix.modules() if isinstance(m, attention)), name), name
    assert hasattr(next(m for m in dec.modules() if isinstance(m, layer)).cross_attn, "in_proj_bias")


def test_mask2former_loss_keeps_the_hooks_the_criterion_overrides():
    loss_cls = compat.mask2former_loss_class()
    assert list(inspect.signature(loss_cls.get_num_masks).parameters) == ["self", "class_labels", "device"]
    assert {"masks_queries_logits", "class_queries_logits", "mask_labels", "class_labels"} <= set(
        inspect.signature(loss_cls.forward).parameters)


def test_vit_tokens_are_what_the_towers_feed_their_blocks():
    import open_clip
    from open_clip.timm_model import TimmModel

    torch.manual_seed(0)
    clip = open_clip.CLIP(embed_dim=16, vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=16, head_width=16),
                          text_cfg=dict(context_length=8, vocab_size=100, width=16, heads=1, layers=1)).eval()
    v, x = clip.visual, torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        tokens = compat.open_clip_vit_tokens(v, x)
        assert tokens.shape == (2, 1 + 4, 32)
        ref = v.ln_post(v.transformer(tokens))[:, 0] @ v.proj
        assert torch.allclose(ref, v(x), atol=1e-5)
    trunk = TimmModel("vit_tiny_patch16_224", embed_dim=16, image_size=224, pool="", proj="linear").eval().trunk
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        tokens = compat.timm_vit_tokens(trunk, x)
        assert tokens.shape == (1, 1 + 196, trunk.embed_dim)
        assert torch.allclose(trunk.norm(trunk.blocks(tokens)), trunk.forward_features(x), atol=1e-5)


def test_deformable_attention_samples_through_the_module_level_function():
    # use_gather_deformable_sampling replaces this global; the layer must look it up at call time.
    m = compat.mask2former_modules()
    fn = getattr(m.multi_scale_deformable_attention, "library_fn", m.multi_scale_deformable_attention)
    assert list(inspect.signature(fn).parameters) == ["value", "value_spatial_shapes", "sampling_locations",
                                                      "attention_weights"]
    attention, _ = compat.mask2former_init_targets()
    assert "multi_scale_deformable_attention(" in inspect.getsource(attention.forward)
