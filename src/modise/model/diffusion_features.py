"""Frozen diffusion features (ODISE): VAE encode, t=0 noise, UNet, partial VAE decode; 8 pre-hook taps
(hooks registered for one call at a time: the extractor keeps no state between calls).

Taps capture the *input* of blocks (forward pre-hooks), in diffusers names:

=====================================  ======  =============================
module                                 stride  channels (SD-1.x)
=====================================  ======  =============================
vae.encoder.down_blocks[2].resnets[1]  4       512
vae.encoder.down_blocks[3].resnets[1]  8       512
unet.up_blocks[0].resnets[2]           64      2560  (the projection clamps it to 32)
unet.up_blocks[1].resnets[2]           32      1920
unet.up_blocks[2].resnets[2]           16      960
unet.up_blocks[3].resnets[2]           8       640
vae.decoder.up_blocks[0].resnets[2]    8       512
vae.decoder.up_blocks[1].resnets[2]    4       512
=====================================  ======  =============================

Strides are ODISE's (``ldm.py:300-337``: encoder 2**(idx//2), UNet 64 >> level, decoder 8 >> level).
Channel counts are read from the loaded modules. As in ODISE:

- the t=0 noise is one map drawn once (seed 42, [1,C,64,64] for SD at 512 px), shared by every image
  of a batch and resized bicubically when the latent has another size (``ldm.py:271-277, 583-594``),
  so an image's features never depend on the rest of its batch;
- the VAE decoder taps decode the *clean* latent, not the UNet's x0 estimate (``ldm.py:606``), so they
  do not depend on the captioner's conditioning; the decoder stops after its last tap.

Sliding windows (ODISE ``feature_extractor.py:181-250``): square windows of side
``min(window, short side)``, stride = side (no overlap except the last, flush window), features
averaged where the last window overlaps; see :func:`window_boxes` and :func:`slide`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from modise.model.loading import freeze

TAPS: tuple[tuple[str, str, int], ...] = (
    ("vae", "encoder.down_blocks.2.resnets.1", 4),
    ("vae", "encoder.down_blocks.3.resnets.1", 8),
    ("unet", "up_blocks.0.resnets.2", 64),
    ("unet", "up_blocks.1.resnets.2", 32),
    ("unet", "up_blocks.2.resnets.2", 16),
    ("unet", "up_blocks.3.resnets.2", 8),
    ("vae", "decoder.up_blocks.0.resnets.2", 8),
    ("vae", "decoder.up_blocks.1.resnets.2", 4),
)
_DECODER_TAPS = [i for i, (_, name, _) in enumerate(TAPS) if name.startswith("decoder.")]


class _StopDecoder(Exception):
    """Raised by the last decoder tap's hook: nothing after it is needed."""


class DecoderTaps(nn.Module):
    """Scaled clean latent [B,4,h,w] -> the VAE decoder run up to its last tap (output: nothing).

    A module of its own so that timing hooks see the partial decode as one stage; it is not
    registered as a submodule (its parts belong to the VAE).
    """

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_vae", vae)

    def forward(self, latents: torch.Tensor, scaling_factor: float) -> None:
        vae, z = self._vae, latents / scaling_factor  # ODISE ldm.py:536
        dec = vae.decoder
        if getattr(vae, "post_quant_conv", None) is not None:
            z = vae.post_quant_conv(z)
        h = dec.mid_block(dec.conv_in(z), None)
        try:
            for block in dec.up_blocks:
                h = block(h, None)
        except _StopDecoder:
            pass


class DiffusionFeatureExtractor(nn.Module):
    """images [B,3,H,W] in [0,1] (+ optional conditioning) -> 8 tap tensors (see module docstring).

    ``empty_embeds`` [1,77,C] is the text encoder's embedding of the empty prompt (the
    unconditional conditioning), computed once at build time. ``noise_seed`` seeds the one
    shared noise map (ODISE: 42).
    """

    def __init__(self, vae: nn.Module, unet: nn.Module, empty_embeds: torch.Tensor, noise_seed: int = 42,
                 alpha_bar_0: float = 1.0 - 0.00085) -> None:
        super().__init__()
        self.vae = freeze(vae)
        self.unet = freeze(unet)
        self.register_buffer("empty_embeds", empty_embeds.detach(), persistent=False)
        self.noise_seed = noise_seed
        self.alpha_bar_0 = float(alpha_bar_0)
        self.scaling_factor = float(vae.config.scaling_factor)
        # The model's native resolution (512 for SD-1.x / MAM-E): windows are resized to it.
        self.native_size = int(vae.config.sample_size)
        latent = self.native_size // 2 ** (len(vae.config.block_out_channels) - 1)
        g = torch.Generator(device="cpu").manual_seed(noise_seed)  # build time, never in forward
        noise = torch.randn(1, int(vae.config.latent_channels), latent, latent, generator=g)
        self.register_buffer("shared_noise", noise, persistent=False)
        roots = {"vae": self.vae, "unet": self.unet}
        self.tap_channels = [int(roots[r].get_submodule(name).in_channels) for r, name, _ in TAPS]
        self.tap_strides = [s for _, _, s in TAPS]
        self.decoder_taps: DecoderTaps
        object.__setattr__(self, "decoder_taps", DecoderTaps(self.vae))  # outside the module tree

    @property
    def cond_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    @property
    def seq_len(self) -> int:
        return int(self.empty_embeds.shape[1])

    @property
    def time_embed_dim(self) -> int:
        return int(self.unet.time_embedding.linear_2.out_features)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    @contextlib.contextmanager
    def _per_call_hooks(self, taps: list[torch.Tensor | None], time_extra: torch.Tensor | None) -> Iterator[None]:
        """Hooks registered for one call only: tap inputs go into ``taps`` (this call's list), and
        ``time_extra`` is added to the UNet's time embedding (ODISE adds the captioner's time term
        there, ldm.py:572). Nothing outlives the call."""
        roots = {"vae": self.vae, "unet": self.unet}
        handles = []

        def tap(i: int) -> Callable:
            def hook(module, args):
                taps[i] = args[0]
                if i == _DECODER_TAPS[-1]:
                    raise _StopDecoder  # the rest of the VAE decoder is not needed

            return hook

        for i, (root, name, _) in enumerate(TAPS):
            handles.append(roots[root].get_submodule(name).register_forward_pre_hook(tap(i)))
        if time_extra is not None:
            handles.append(self.unet.time_embedding.register_forward_hook(
                lambda module, args, output: output + time_extra.to(output.dtype)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def train(self, mode: bool = True) -> "DiffusionFeatureExtractor":
        return super().train(False)  # frozen: always eval

    def noise_like(self, latents: torch.Tensor) -> torch.Tensor:
        """The shared t=0 noise expanded to ``latents`` [B,C,h,w] (bicubic resize for another h, w)."""
        noise = self.shared_noise
        if noise.shape[-2:] != latents.shape[-2:]:
            noise = nn.functional.interpolate(noise.float(), size=latents.shape[-2:], mode="bicubic",
                                              align_corners=False)
        return noise.to(latents.dtype).expand_as(latents)

    def forward(self, images: torch.Tensor, cond: torch.Tensor | None = None,
                time_extra: torch.Tensor | None = None) -> list[torch.Tensor]:
        """images [B,3,H,W] in [0,1]; cond [B,L,C] or None (empty prompt); time_extra [B,T] or None
        -> 8 taps [B,C_i,H/s_i,W/s_i]."""
        b = images.shape[0]
        dtype = self.dtype
        x = images.to(dtype) * 2 - 1  # ODISE pixel mean/std 0.5 (ldm.py:80-81)
        if self.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        taps: list[torch.Tensor | None] = [None] * len(TAPS)
        with self._per_call_hooks(taps, time_extra):
            with torch.no_grad():  # nothing trainable before the UNet or in the decoder
                latents = self.vae.encode(x).latent_dist.mean * self.scaling_factor
                self.decoder_taps(latents, self.scaling_factor)  # clean latent (ldm.py:606)
            a = self.alpha_bar_0
            noisy = a**0.5 * latents + (1 - a) ** 0.5 * self.noise_like(latents)
            if cond is None:
                cond = self.empty_embeds.expand(b, -1, -1)
            self.unet(noisy, torch.zeros(b, dtype=torch.long, device=images.device), encoder_hidden_states=cond.to(dtype))
        if any(t is None for t in taps):
            raise RuntimeError("a diffusion feature tap did not fire; is this an SD-1.x UNet/VAE?")
        return taps  # type: ignore[return-value]


def window_side(h: int, w: int, window: int, slide_training: bool = True) -> int:
    """ODISE's window side (``feature_extractor.py:197-201``): min(window, short side), or the short
    side alone when slide training is off."""
    return min(window, h, w) if slide_training else min(h, w)


def window_boxes(h: int, w: int, side: int) -> list[tuple[int, int, int, int]]:
    """(y1, x1, y2, x2) of square ``side`` windows with stride ``side``; the last one in a row/column
    is flush with the border (``feature_extractor.py:205-224``)."""
    rows = max(h - side + side - 1, 0) // side + 1
    cols = max(w - side + side - 1, 0) // side + 1
    boxes = []
    for i in range(rows):
        for j in range(cols):
            y2, x2 = min(i * side + side, h), min(j * side + side, w)
            boxes.append((max(y2 - side, 0), max(x2 - side, 0), y2, x2))
    return boxes


def slide(fn: Callable[[torch.Tensor], list[torch.Tensor]], images: torch.Tensor, side: int,
          window_batch: int = 0, strides: tuple[int, ...] = (4, 8, 16, 32)) -> list[torch.Tensor]:
    """Run ``fn`` (crops [N,3,side,side] -> maps [N,C,side/s,side/s]) on every window of every image
    and average the stitched maps where windows overlap.

    All windows of the batch go through ``fn`` together, ``window_batch`` crops per call at most
    (0: all at once). images [B,3,H,W] with H, W multiples of 32 -> maps [B,C,H/s,W/s].
    """
    b, _, h, w = images.shape
    boxes = window_boxes(h, w, side)
    crops = images if len(boxes) == 1 else torch.cat([images[..., y1:y2, x1:x2] for y1, x1, y2, x2 in boxes])
    n = crops.shape[0]
    step = n if window_batch <= 0 else window_batch
    chunks = [fn(crops[i : i + step]) for i in range(0, n, step)]
    maps = chunks[0] if len(chunks) == 1 else [torch.cat(level) for level in zip(*chunks)]
    if len(boxes) == 1:
        return maps
    outs, counts = [], []
    for m, s in zip(maps, strides):
        out = m.new_zeros(b, m.shape[1], h // s, w // s)
        count = m.new_zeros(1, 1, h // s, w // s)
        for k, (y1, x1, y2, x2) in enumerate(boxes):
            out[..., y1 // s : y2 // s, x1 // s : x2 // s] += m[k * b : (k + 1) * b]
            count[..., y1 // s : y2 // s, x1 // s : x2 // s] += 1
        outs.append(out / count)
    return outs
