"""The backbone interface: images (+ optional conditioning) -> 4 feature maps at strides 4, 8, 16, 32.

Every backbone is a :class:`Backbone`; :class:`~modise.model.modise_model.MODISE` only uses what is
declared here, so adding a backbone is one subclass plus one branch in ``build.py`` (no type switches
elsewhere). Two exist:

- :class:`~modise.model.diffusion_backbone.DiffusionBackbone`: frozen SD-1.x VAE/UNet taps on sliding
  windows + trainable bottleneck projections (ODISE);
- :class:`~modise.model.swin_backbone.SwinFeatures`: a Swin (Mask2Former's Swin-L baseline).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import torch
from torch import nn

STRIDES = (4, 8, 16, 32)


class Conditioner(Protocol):
    """What a diffusion backbone accepts as ``conditioning`` (the implicit captioner is one):
    windows [N,3,n,n] in [0,1] and the empty-prompt embedding [1,L,C] -> (text conditioning [N,L,C],
    time-embedding term [N,T] or None)."""

    def __call__(self, images: torch.Tensor, empty_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class Backbone(nn.Module, ABC):
    """``forward(images [B,3,H,W] in [0,1], H, W multiples of 32, conditioning=None)`` ->
    4 maps [B,C_s,H/s,W/s], s = 4, 8, 16, 32, C_s = ``out_channels[i]``.

    A backbone keeps no state between calls. Capabilities are methods with neutral defaults.
    """

    out_channels: list[int]

    @abstractmethod
    def forward(self, images: torch.Tensor, conditioning: Conditioner | None = None) -> list[torch.Tensor]: ...

    def frozen_modules(self) -> list[nn.Module]:
        """Parts kept frozen: always in eval mode, stored in the frozen precision (bf16 on a GPU)."""
        return []

    def stage_modules(self) -> dict[str, nn.Module]:
        """Named parts whose forward calls ``modise benchmark`` times as stages."""
        return {"backbone": self}

    def describe(self) -> dict[str, Any]:
        """What ``modise inspect`` shows about the features (at least ``feature_maps``)."""
        return {"feature_maps": [{"stride": s, "channels": c} for s, c in zip(STRIDES, self.out_channels)]}

    def set_memory_format(self, channels_last: bool) -> None:
        """Lay frozen convolutional parts out channels-last where that helps (default: nothing to do)."""

    def compile_frozen(self) -> None:
        """``torch.compile`` the expensive frozen part (default: nothing to compile)."""
