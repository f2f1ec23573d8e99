"""Frozen diffusion features (ODISE): VAE encode, t=0 noise, UNet, partial VAE decode; 8 pre-hook taps.

Taps capture the *input* of blocks (forward pre-hooks), in diffusers names:

=====================================  ======  =============================
module                                 stride  channels (SD-1.x)
=====================================  ======  =============================
vae.encoder.down_blocks[2].resnets[1]  4       512
vae.encoder.down_blocks[3].resnets[1]  8       512
unet.up_blocks[0].resnets[2]           64->32  2560
unet.up_blocks[1].resnets[2]           32      1920
unet.up_blocks[2].resnets[2]           16      960
unet.up_blocks[3].resnets[2]           8       640
vae.decoder.up_blocks[0].resnets[2]    8       512
vae.decoder.up_blocks[1].resnets[2]    4       512
=====================================  ======  =============================

Channel counts are read from the loaded modules. The VAE decoder runs only until its last tap
(the pre-hook raises to stop it). Larger images go through 512x512 windows (see :func:`slide`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from modise.model.loading import freeze

TAPS: tuple[tuple[str, str, int], ...] = (
    ("vae", "encoder.down_blocks.2.resnets.1", 4),
    ("vae", "encoder.down_blocks.3.resnets.1", 8),
    ("unet", "up_blocks.0.resnets.2", 32),  # really stride 64: resized to 32 ("clamped") by the projection
    ("unet", "up_blocks.1.resnets.2", 32),
    ("unet", "up_blocks.2.resnets.2", 16),
    ("unet", "up_blocks.3.resnets.2", 8),
    ("vae", "decoder.up_blocks.0.resnets.2", 8),
    ("vae", "decoder.up_blocks.1.resnets.2", 4),
)


class _StopDecoder(Exception):
    """Raised by the last tap's hook: nothing after it is needed."""


class DiffusionFeatureExtractor(nn.Module):
    """images [B,3,H,W] in [0,1] (+ optional conditioning) -> 8 tap tensors (see module docstring).

    ``empty_embeds`` [1,77,C] is the text encoder's embedding of the empty prompt (the
    unconditional conditioning), computed once at build time.
    """

    def __init__(self, vae: nn.Module, unet: nn.Module, empty_embeds: torch.Tensor, noise_seed: int = 0,
                 alpha_bar_0: float = 1.0 - 0.00085) -> None:
        super().__init__()
        self.vae = freeze(vae)
        self.unet = freeze(unet)
        self.register_buffer("empty_embeds", empty_embeds.detach(), persistent=False)
        self.noise_seed = noise_seed
        self.alpha_bar_0 = float(alpha_bar_0)
        self.scaling_factor = float(vae.config.scaling_factor)
        roots = {"vae": self.vae, "unet": self.unet}
        self._tap_modules = [roots[r].get_submodule(name) for r, name, _ in TAPS]
        self.tap_channels = [int(m.in_channels) for m in self._tap_modules]
        self.tap_strides = [s for _, _, s in TAPS]
        self._store: list[torch.Tensor | None] = [None] * len(TAPS)
        for i, m in enumerate(self._tap_modules):
            m.register_forward_pre_hook(self._make_hook(i, last=(i == len(TAPS) - 1)))
        self._time_extra: torch.Tensor | None = None
        self.unet.time_embedding.register_forward_hook(self._add_time_extra)

    @property
    def cond_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    @property
    def seq_len(self) -> int:
        return int(self.empty_embeds.shape[1])

    @property
    def time_embed_dim(self) -> int:
        return int(self.unet.time_embedding.linear_2.out_features)

    def _make_hook(self, i: int, last: bool) -> Callable:
        def hook(module, args):
            self._store[i] = args[0]
            if last:
                raise _StopDecoder

        return hook

    def _add_time_extra(self, module, args, output):
        return output if self._time_extra is None else output + self._time_extra.to(output.dtype)

    def train(self, mode: bool = True) -> "DiffusionFeatureExtractor":
        return super().train(False)  # frozen: always eval

    def noise_like(self, latents: torch.Tensor) -> torch.Tensor:
        """The fixed t=0 noise: same seed, same noise for the same shape on every call."""
        g = torch.Generator(device="cpu").manual_seed(self.noise_seed)
        return torch.randn(latents.shape, generator=g, dtype=torch.float32).to(latents)

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None = None,
                time_extra: torch.Tensor | None = None) -> list[torch.Tensor]:
        """images [B,3,H,W] in [0,1]; cond [B,L,C] or None (empty prompt) -> 8 taps [B,C_i,H/s_i,W/s_i]."""
        self._store = [None] * len(TAPS)
        b = images.shape[0]
        dtype = next(self.unet.parameters()).dtype
        with torch.no_grad():  # nothing trainable before the UNet
            latents = self.vae.encode(images.to(dtype) * 2 - 1).latent_dist.mean * self.scaling_factor
        a = self.alpha_bar_0
        noise = self.noise_like(latents)
        noisy = math.sqrt(a) * latents + math.sqrt(1 - a) * noise
        if cond is None:
            cond = self.empty_embeds.expand(b, -1, -1)
        self._time_extra = time_extra
        try:
            eps = self.unet(noisy, torch.zeros(b, dtype=torch.long, device=images.device),
                            encoder_hidden_states=cond.to(dtype)).sample
        finally:
            self._time_extra = None
        # Decode the model's x0 estimate, only as far as the last decoder tap.
        z = (noisy - math.sqrt(1 - a) * eps) / math.sqrt(a) / self.scaling_factor
        dec = self.vae.decoder
        if getattr(self.vae, "post_quant_conv", None) is not None:
            z = self.vae.post_quant_conv(z)
        h = dec.mid_block(dec.conv_in(z), None)
        try:
            for block in dec.up_blocks:
                h = block(h, None)
        except _StopDecoder:
            pass
        taps, self._store = self._store, [None] * len(TAPS)
        if any(t is None for t in taps):
            raise RuntimeError("a diffusion feature tap did not fire; is this an SD-1.x UNet/VAE?")
        return taps  # type: ignore[return-value]


def window_starts(length: int, window: int, overlap: float, align: int = 32) -> list[int]:
    """Start offsets of windows covering ``length`` (multiples of ``align``, last one flush with the end)."""
    if length <= window:
        return [0]
    stride = max(align, int(window * (1 - overlap)) // align * align)
    n = math.ceil((length - window) / stride) + 1
    starts = [min(i * stride, length - window) for i in range(n)]
    return sorted({s // align * align if s != length - window else s for s in starts})


def slide(fn: Callable[[torch.Tensor], list[torch.Tensor]], images: torch.Tensor, window: int, overlap: float,
          strides: tuple[int, ...] = (4, 8, 16, 32)) -> list[torch.Tensor]:
    """Run ``fn`` (crop -> maps at ``strides``) on ``window``-sized crops and average the stitched maps.

    images [B,3,H,W] with H, W multiples of 32 -> maps [B,C,H/s,W/s]; a single call when the image fits.
    """
    h, w = images.shape[-2:]
    if h <= window and w <= window:
        return fn(images)
    outs: list[torch.Tensor] | None = None
    counts = [images.new_zeros(1, 1, h // s, w // s) for s in strides]
    for y in window_starts(h, window, overlap):
        for x in window_starts(w, window, overlap):
            wh, ww = min(window, h), min(window, w)
            maps = fn(images[..., y : y + wh, x : x + ww])
            if outs is None:
                outs = [m.new_zeros(m.shape[0], m.shape[1], h // s, w // s) for m, s in zip(maps, strides)]
            for i, (m, s) in enumerate(zip(maps, strides)):
                top, left = y // s, x // s
                pad = (left, w // s - left - m.shape[-1], top, h // s - top - m.shape[-2])
                outs[i] = outs[i] + F.pad(m, pad)  # out of place: gradients flow through every window
                counts[i] = counts[i] + F.pad(torch.ones_like(m[:1, :1]), pad)
    assert outs is not None
    return [o / c.clamp(min=1) for o, c in zip(outs, counts)]
