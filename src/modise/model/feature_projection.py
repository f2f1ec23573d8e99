"""Per-tap bottleneck projections to a common width, summed by stride into 4 maps (strides 4/8/16/32)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OUT_STRIDES = (4, 8, 16, 32)


def _groups(c: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if c % g == 0)


class FeatureProjection(nn.Module):
    """taps [B,C_i,h_i,w_i] (nominal stride s_i) -> 4 maps [B,dim,H/s,W/s] for s in 4, 8, 16, 32.

    Each tap gets its own 1x1 bottleneck (conv + GroupNorm); taps whose real size differs from
    H/s (the stride-64 UNet tap, odd sizes) are resized bilinearly before the sum.
    """

    def __init__(self, tap_channels: list[int], tap_strides: list[int], dim: int) -> None:
        super().__init__()
        self.tap_strides = list(tap_strides)
        self.dim = dim
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, kernel_size=1, bias=False), nn.GroupNorm(_groups(dim), dim))
            for c in tap_channels
        )
        for p in self.proj:
            nn.init.kaiming_uniform_(p[0].weight, a=1)

    def forward(self, taps: list[torch.Tensor], image_size: tuple[int, int]) -> list[torch.Tensor]:
        h, w = image_size
        outs: list[torch.Tensor | None] = [None] * len(OUT_STRIDES)
        for tap, s, proj in zip(taps, self.tap_strides, self.proj):
            x = proj(tap.to(proj[0].weight.dtype))
            size = (h // s, w // s)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            i = OUT_STRIDES.index(s)
            outs[i] = x if outs[i] is None else outs[i] + x
        if any(o is None for o in outs):
            raise ValueError(f"taps must cover strides {OUT_STRIDES}, got {sorted(set(self.tap_strides))}")
        return outs  # type: ignore[return-value]
