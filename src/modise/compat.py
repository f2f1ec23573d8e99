"""The one place that reaches into libraries' non-public code; ``tests/test_compat.py`` fails loudly
when a library release moves any of it.

- transformers (pinned ``>=5,<6`` in pyproject): Mask2Former's building blocks are not exported from
  ``transformers``; MODISE uses its pixel decoder, masked-attention transformer decoder and loss
  standalone (``model/mask_generator.py``, ``model/criterion.py``), and its pixel decoder's deformable
  attention samples through the module-level ``multi_scale_deformable_attention``, which
  :func:`route_deformable_sampling` wraps (CPU inference: ``model/deformable_sampling.py``).
- open_clip / timm: a ViT's token embedding before its blocks (``model/clip_ensemble.py`` runs the
  blocks itself with an attention mask, as ODISE's mask-pooled CLIP does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


# ---------------------------------------------------------------- transformers: Mask2Former internals
def mask2former_modules() -> Any:
    """``transformers.models.mask2former.modeling_mask2former`` (non-exported classes: ``Mask2FormerPixelDecoder``,
    ``Mask2FormerTransformerModule``, ``Mask2FormerLoss``, ``Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention``,
    ``Mask2FormerMaskedAttentionDecoderLayer``)."""
    from transformers.models.mask2former import modeling_mask2former

    return modeling_mask2former


def mask2former_pixel_decoder(config: Any, feature_channels: list[int]) -> nn.Module:
    """Mask2Former's multi-scale deformable pixel decoder: 4 maps -> multi-scale features + mask features."""
    return mask2former_modules().Mask2FormerPixelDecoder(config, feature_channels=list(feature_channels))


def mask2former_transformer_decoder(config: Any, in_features: int) -> nn.Module:
    """Mask2Former's masked-attention transformer decoder (queries, per-layer mask logits)."""
    return mask2former_modules().Mask2FormerTransformerModule(in_features=in_features, config=config)


def mask2former_loss_class() -> type:
    """``Mask2FormerLoss`` (Hungarian matching + point-sampled BCE/Dice + class CE); subclassed in criterion.py."""
    return mask2former_modules().Mask2FormerLoss


def mask2former_init_targets() -> tuple[type, type]:
    """(deformable attention of the pixel decoder, masked-attention decoder layer): the module types
    ``init_mask_generator`` initialises as Deformable DETR / Mask2Former do."""
    m = mask2former_modules()
    return m.Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention, m.Mask2FormerMaskedAttentionDecoderLayer


def route_deformable_sampling(cpu_inference_fn: Callable[..., torch.Tensor]) -> None:
    """Send Mask2Former's deformable-attention sampling (``multi_scale_deformable_attention(value,
    value_spatial_shapes, sampling_locations, attention_weights)``) to ``cpu_inference_fn`` on the CPU when
    no autograd is recording; everything else keeps transformers' own function. Installed once (later
    calls replace only the function); ``library_fn`` on the installed wrapper is transformers' function."""
    m = mask2former_modules()
    installed = m.multi_scale_deformable_attention
    if getattr(installed, "cpu_inference_fn", None) is not None:
        installed.cpu_inference_fn = cpu_inference_fn
        return

    def dispatch(value, value_spatial_shapes, sampling_locations, attention_weights):
        tracked = torch.is_grad_enabled() and any(
            t.requires_grad for t in (value, sampling_locations, attention_weights))
        if value.device.type == "cpu" and not tracked:
            return dispatch.cpu_inference_fn(value, value_spatial_shapes, sampling_locations, attention_weights)
        return installed(value, value_spatial_shapes, sampling_locations, attention_weights)

    dispatch.cpu_inference_fn = cpu_inference_fn  # type: ignore[attr-defined]
    dispatch.library_fn = installed  # type: ignore[attr-defined]
    m.multi_scale_deformable_attention = dispatch


# ---------------------------------------------------------------- open_clip / timm ViT tokens
def open_clip_vit_tokens(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """open_clip ``VisionTransformer``: normalised images -> [B,1+P,W] (conv1, class token, positions,
    patch dropout, ln_pre), what its ``forward`` feeds the transformer."""
    return visual._embeds(x)


def timm_vit_tokens(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm ``VisionTransformer``: normalised images -> [B,1+P,W] (patch embed, class token + positions,
    patch drop, norm_pre), what its ``forward_features`` feeds the blocks."""
    return trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(x))))
