"""ODISE's implicit captioner: a frozen image embedding becomes the UNet's text conditioning."""

from __future__ import annotations

import torch
from torch import nn

from modise.model.image_encoders import ImageEncoder


class ImplicitCaptioner(nn.Module):
    """cond = empty_prompt + tanh(gate) * (proj(image_embed) + pos); gate starts at 0 (unconditional UNet).

    Optionally a second gated map adds to the UNet time embedding. Gradients reach ``proj``,
    ``pos`` and the gates through the frozen UNet's activations.
    """

    def __init__(self, image_encoder: ImageEncoder, cond_dim: int, seq_len: int, time_embed_dim: int | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder  # frozen
        self.proj = nn.Linear(image_encoder.embed_dim, cond_dim)
        self.pos = nn.Parameter(torch.randn(seq_len, cond_dim) * 0.02)
        self.gate = nn.Parameter(torch.zeros(1))
        self.time_proj = nn.Linear(image_encoder.embed_dim, time_embed_dim) if time_embed_dim else None
        self.time_gate = nn.Parameter(torch.zeros(1)) if time_embed_dim else None

    def forward(self, images: torch.Tensor, empty_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """images [B,3,H,W] in [0,1], empty_embeds [1,L,C] -> (cond [B,L,C], time term [B,T] or None)."""
        e = self.image_encoder(images).to(self.proj.weight.dtype)
        prefix = self.proj(e)[:, None, :] + self.pos[None]
        cond = empty_embeds + torch.tanh(self.gate) * prefix
        t = torch.tanh(self.time_gate) * self.time_proj(e) if self.time_proj is not None else None
        return cond, t
