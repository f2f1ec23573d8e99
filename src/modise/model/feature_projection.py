"""Per-tap bottleneck projections to a common width, summed by stride into 4 maps (strides 4/8/16/32).

ODISE ``feature_extractor.py:53-66, 88-99, 157-174``: one detectron2 ``BottleneckBlock`` per tap
(``ResNet.make_stage`` with one block, bottleneck = width // 4, norm "GN"); every tap is first
resized (nearest) to the window size // its stride, strides clamped to [4, 32] (so the stride-64
UNet tap joins stride 32), then projected; taps of one stride are summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OUT_STRIDES = (4, 8, 16, 32)


def _gn(c: int) -> nn.GroupNorm:
    """detectron2 ``get_norm("GN", c)`` is GroupNorm(32, c); tiny widths fall back to fewer groups."""
    return nn.GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if c % g == 0), c)


def _conv_norm(cin: int, cout: int, k: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel_size=k, padding=k // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # detectron2 c2_msra_fill
    return nn.Sequential(conv, _gn(cout))


class BottleneckBlock(nn.Module):
    """detectron2's ResNet bottleneck, stride 1: x [B,C,h,w] -> [B,out,h,w].

    relu(norm(1x1 C->b)) -> relu(norm(3x3 b->b)) -> norm(1x1 b->out), plus a 1x1 conv + norm
    shortcut when C != out, then relu.
    """

    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_norm(in_channels, bottleneck_channels, 1)
        self.conv2 = _conv_norm(bottleneck_channels, bottleneck_channels, 3)
        self.conv3 = _conv_norm(bottleneck_channels, out_channels, 1)
        self.shortcut = _conv_norm(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


def clamp_stride(stride: int, lo: int = OUT_STRIDES[0], hi: int = OUT_STRIDES[-1]) -> int:
    return min(max(stride, lo), hi)


class FeatureProjection(nn.Module):
    """taps [B,C_i,h_i,w_i] (stride s_i) -> 4 maps [B,dim,H/s,W/s] for s in 4, 8, 16, 32.

    ``image_size`` (H, W) is the window's size before any resize to the model's resolution.
    """

    def __init__(self, tap_channels: list[int], tap_strides: list[int], dim: int) -> None:
        super().__init__()
        self.tap_strides = [clamp_stride(s) for s in tap_strides]
        if sorted(set(self.tap_strides)) != list(OUT_STRIDES):
            raise ValueError(f"taps must cover strides {OUT_STRIDES}, got {sorted(set(self.tap_strides))}")
        self.dim = dim
        self.proj = nn.ModuleList(BottleneckBlock(c, dim, dim // 4) for c in tap_channels)

    def forward(self, taps: list[torch.Tensor], image_size: tuple[int, int]) -> list[torch.Tensor]:
        h, w = image_size
        outs: list[torch.Tensor | None] = [None] * len(OUT_STRIDES)
        dtype = self.proj[0].conv1[0].weight.dtype
        for tap, s, proj in zip(taps, self.tap_strides, self.proj):
            size = (h // s, w // s)
            if tap.shape[-2:] != size:
                tap = F.interpolate(tap, size=size, mode="nearest")  # F.interpolate's default, as ODISE
            x = proj(tap.to(dtype))
            i = OUT_STRIDES.index(s)
            outs[i] = x if outs[i] is None else outs[i] + x
        return outs  # type: ignore[return-value]
