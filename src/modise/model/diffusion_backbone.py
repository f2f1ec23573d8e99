"""ODISE's feature backbone: frozen diffusion taps on sliding windows + trainable bottleneck projections.

Per window (ODISE ``feature_extractor.py:139-250``): resize to the diffusion model's resolution,
condition the UNet (the implicit captioner, passed in as ``conditioning``), take the 8 taps of
:class:`DiffusionFeatureExtractor`, project them at the window's own size; :func:`slide` stitches the
windows back together.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from modise.model.backbone import STRIDES, Backbone, Conditioner
from modise.model.diffusion_features import TAPS, DiffusionFeatureExtractor, slide, window_side
from modise.model.feature_projection import FeatureProjection, clamp_stride


class DiffusionBackbone(Backbone):
    """images [B,3,H,W] in [0,1] (+ a :class:`Conditioner`) -> 4 maps [B,D,H/s,W/s], s = 4, 8, 16, 32.

    ``window_size`` caps the window side; ``internal_size`` (None: the model's native size) is the size
    windows are resized to; ``slide_training`` also slides in training; ``window_batch`` windows per
    UNet call (0: all); ``checkpoint_projection`` recomputes the projections in backward.
    """

    def __init__(self, extractor: DiffusionFeatureExtractor, projection: FeatureProjection, *, window_size: int = 512,
                 internal_size: int | None = None, slide_training: bool = True, window_batch: int = 16,
                 checkpoint_projection: bool = True) -> None:
        super().__init__()
        self.extractor = extractor
        self.projection = projection
        self.out_channels = [projection.dim] * len(STRIDES)
        self.internal_size = internal_size or extractor.native_size
        self.window_size = window_size
        self.slide_training = slide_training
        self.window_batch = window_batch
        self.checkpoint_projection = checkpoint_projection

    def _window_maps(self, crops: torch.Tensor, conditioning: Conditioner | None) -> list[torch.Tensor]:
        """Windows [N,3,s,s] in [0,1] -> 4 maps [N,D,s/4..s/32]; the captioner sees each window once."""
        n = self.internal_size
        x = crops
        if x.shape[-2:] != (n, n):  # ODISE feature_extractor.py:144 (T.Resize bicubic on tensors)
            x = F.interpolate(x, size=(n, n), mode="bicubic", align_corners=False)
        cond = time_extra = None
        if conditioning is not None:
            cond, time_extra = conditioning(x, self.extractor.empty_embeds)
        taps = self.extractor(x, cond, time_extra)
        if self.checkpoint_projection and torch.is_grad_enabled():
            # ODISE use_checkpoint=True (odise_with_label.py:27, feature_extractor.py:150-153): recompute the
            # projections in backward instead of keeping their activations
            return checkpoint(self.projection, taps, crops.shape[-2:], use_reentrant=False)
        return self.projection(taps, crops.shape[-2:])

    def forward(self, images: torch.Tensor, conditioning: Conditioner | None = None) -> list[torch.Tensor]:
        # ODISE's backbone_in_size is both the window cap and the size windows are resized to
        side = window_side(*images.shape[-2:], min(self.window_size, self.internal_size), self.slide_training)
        return slide(lambda crops: self._window_maps(crops, conditioning), images, side, self.window_batch)

    def frozen_modules(self) -> list[nn.Module]:
        return [self.extractor]

    def stage_modules(self) -> dict[str, nn.Module]:
        ex = self.extractor
        return {"vae_encode": ex.vae.encoder, "unet": ex.unet, "decoder_taps": ex.decoder_taps, "projection": self.projection}

    def describe(self) -> dict[str, Any]:
        return {
            "taps": [{"module": f"{r}.{n}", "stride": s, "output_stride": clamp_stride(s), "channels": ch}
                     for (r, n, s), ch in zip(TAPS, self.extractor.tap_channels)],
            **super().describe(),
            "windows": {"window_size": self.window_size, "internal_size": self.internal_size,
                        "slide_training": self.slide_training, "window_batch": self.window_batch},
        }

    def set_memory_format(self, channels_last: bool) -> None:
        ex = self.extractor
        on_gpu = ex.dtype == torch.bfloat16 and ex.unet.conv_in.weight.device.type == "cuda"
        fmt = torch.channels_last if channels_last and on_gpu else torch.contiguous_format
        for part in (ex.vae, ex.unet):
            part.to(memory_format=fmt)

    def compile_frozen(self) -> None:
        self.extractor.unet.compile()
