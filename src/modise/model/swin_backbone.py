"""Swin backbone for the ``m2f-swinl`` baseline (transformers' ``SwinBackbone``; Mask2Former's Swin-L)."""

from __future__ import annotations

import re
import sys

import torch
from torch import nn

from modise.model.backbone import Backbone, Conditioner
from modise.model.loading import freeze, pretrained_or_missing, seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SWIN_L = dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12, image_size=384)
SWIN_TINY = dict(embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=7, image_size=224)
OUT = ["stage1", "stage2", "stage3", "stage4"]


def build_swin(model_id: str | None, size: str, random_weights: bool, seed: int = 0) -> tuple[nn.Module, nn.Module | None]:
    """(Swin backbone with 4 outputs at strides 4/8/16/32, the whole pretrained Mask2Former or None).

    Random weights: a ``size`` Swin architecture alone. Otherwise the COCO-panoptic
    ``Mask2FormerForUniversalSegmentation`` (hub id or folder): its Swin is the backbone and
    :meth:`MaskGenerator.load_from_mask2former` takes its pixel and transformer decoders too,
    as Mask2Former's Swin-L model is fine-tuned whole (only the class layer is new).
    """
    from transformers import SwinBackbone, SwinConfig

    if random_weights or size == "tiny":
        with seeded(seed):
            return SwinBackbone(SwinConfig(**(SWIN_L if size == "full" else SWIN_TINY), out_features=OUT)), None

    def load():
        from transformers import Mask2FormerForUniversalSegmentation
        from transformers.utils import logging as hf_logging

        before = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its multi-line MISSING/UNEXPECTED table; load_report says it in one line
        try:
            m2f, info = Mask2FormerForUniversalSegmentation.from_pretrained(model_id, output_loading_info=True)
        finally:
            hf_logging.set_verbosity(before)
        print(load_report(str(model_id), info), file=sys.stderr)
        return m2f

    m2f = pretrained_or_missing(str(model_id), load, "the Mask2Former (Swin) model")
    return m2f.model.pixel_level_module.encoder, m2f


# Keys a COCO Mask2Former checkpoint and transformers' model differ in by design: Swin's relative position
# index (a buffer rebuilt from the window size) and the final Swin layernorm, which the backbone does not use
# (it normalises each stage with hidden_states_norms).
EXPECTED_DIFFERENCES = re.compile(r"relative_position_index$|(^|\.)layernorm\.(weight|bias)$")


def load_report(model_id: str, info: dict) -> str:
    """One line for ``from_pretrained(..., output_loading_info=True)``'s key report: the expected
    differences counted, anything else named (up to 5 keys per kind)."""
    missing, unexpected = set(info.get("missing_keys") or ()), set(info.get("unexpected_keys") or ())
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()]
    expected = {k for k in missing | unexpected if EXPECTED_DIFFERENCES.search(k)}
    odd = {"missing": sorted(missing - expected), "unexpected": sorted(unexpected - expected), "mismatched": sorted(mismatched)}
    line = f"{model_id}: Mask2Former loaded"
    if expected:
        line += f"; {len(expected)} keys differ as expected (Swin relative_position_index buffers, the unused final Swin layernorm)"
    for kind, keys in odd.items():
        if keys:
            line += f"; {len(keys)} {kind} keys (e.g. {', '.join(keys[:5])})"
    return line + "."


class SwinFeatures(Backbone):
    """images [B,3,H,W] in [0,1] -> 4 maps [B,C_s,H/s,W/s], s = 4, 8, 16, 32 (ImageNet-normalised input).

    ``trainable``: fine-tuned with the heads (Mask2Former); otherwise frozen. No conditioning.
    """

    def __init__(self, backbone: nn.Module, *, trainable: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.trainable = trainable
        if not trainable:
            freeze(self)
        self.out_channels = list(backbone.num_features[1:]) if hasattr(backbone, "num_features") else list(backbone.channels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, conditioning: Conditioner | None = None) -> list[torch.Tensor]:
        return list(self.backbone((images - self.mean) / self.std).feature_maps)

    def frozen_modules(self) -> list[nn.Module]:
        return [] if self.trainable else [self]
