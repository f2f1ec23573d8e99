"""ODISE's implicit captioner: a frozen image embedding becomes the UNet's text conditioning.

Follows NVlabs/ODISE ``odise/modeling/meta_arch/ldm.py:624-714`` (``PositionalLinear``,
``LdmImplicitCaptionerExtractor``): the unnormalised CLIP image embedding goes through a linear
map plus a learned per-token positional embedding to [L, C] (77 x 768 for SD-1.x), and is added
to the empty-prompt embedding through ``tanh(gate)`` with a zero-initialised gate of the full
[1, L, C] shape. The time path (on in ODISE) adds ``tanh(time_gate) * PositionalLinear(e)`` of
width T (1280) to the UNet's time embedding, with a zero-initialised [T] gate.
"""

from __future__ import annotations

import torch
from torch import nn

from modise.model.image_encoders import ImageEncoder


class PositionalLinear(nn.Module):
    """x [B,E] -> linear(x)[:, None] + positional_embedding -> [B,L,C] (ldm.py:624-635)."""

    def __init__(self, in_features: int, out_features: int, seq_len: int = 77, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.positional_embedding = nn.Parameter(torch.zeros(1, seq_len, out_features))
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unsqueeze(1) + self.positional_embedding


class ImplicitCaptioner(nn.Module):
    """cond = empty_prompt + tanh(gate) * PositionalLinear(image_embed); gate [1,L,C] starts at 0.

    At initialisation the UNet sees exactly the empty prompt (and an unchanged time embedding).
    Gradients reach the projections and gates through the frozen UNet's activations.
    """

    def __init__(self, image_encoder: ImageEncoder, cond_dim: int, seq_len: int, time_embed_dim: int | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder  # frozen
        e = image_encoder.embed_dim
        self.project = PositionalLinear(e, cond_dim, seq_len)
        self.gate = nn.Parameter(torch.zeros(1, seq_len, cond_dim))  # zeros_like(uncond_inputs), ldm.py:657
        # ODISE: num_timesteps=1 -> a [1, T] positional term; gate zeros(T) (ldm.py:662-670)
        self.time_project = PositionalLinear(e, time_embed_dim, 1) if time_embed_dim else None
        self.time_gate = nn.Parameter(torch.zeros(time_embed_dim)) if time_embed_dim else None

    def forward(self, images: torch.Tensor, empty_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images [B,3,H,W] in [0,1], empty_embeds [1,L,C] -> (cond [B,L,C], time term [B,T] or None)."""
        e = self.image_encoder(images).to(self.project.linear.weight.dtype)
        cond = empty_embeds.to(e.dtype) + torch.tanh(self.gate) * self.project(e)
        if self.time_project is None:
            return cond, None
        return cond, torch.tanh(self.time_gate) * self.time_project(e)[:, 0]  # cond_emb[:, i], ldm.py:572
