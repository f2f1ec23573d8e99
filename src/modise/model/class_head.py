"""Classification heads: open-vocabulary (text embeddings) for ODISE/M-ODISE, linear for m2f-*."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TextClassHead(nn.Module):
    """logits = exp(scale) * cos(proj(query), text_proj(prompt)), max over synonyms, learnable void last.

    Text embeddings [K,S,E] come from the frozen text encoder once and live in a non-persistent
    buffer (recomputed from the frozen encoder at build, never checkpointed).
    """

    def __init__(self, text_embeds: torch.Tensor, valid: torch.Tensor, hidden_dim: int, init_logit_scale: float) -> None:
        super().__init__()
        e = text_embeds.shape[-1]
        self.register_buffer("text_embeds", text_embeds, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        self.query_proj = nn.Linear(hidden_dim, e)
        self.text_proj = nn.Linear(e, e)  # identity at start: begins at the frozen text space
        nn.init.eye_(self.text_proj.weight)
        nn.init.zeros_(self.text_proj.bias)
        self.void_embed = nn.Parameter(torch.randn(e) * e**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    @property
    def num_classes(self) -> int:
        return self.text_embeds.shape[0]

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """queries [B,Q,D] -> logits [B,Q,K+1]."""
        q = F.normalize(self.query_proj(queries), dim=-1)
        t = F.normalize(self.text_proj(self.text_embeds), dim=-1)  # [K,S,E]
        sim = torch.einsum("bqe,kse->bqks", q, t).masked_fill(~self.valid, float("-inf")).amax(-1)
        void = q @ F.normalize(self.void_embed, dim=-1)
        return self.logit_scale.exp().clamp(max=100.0) * torch.cat([sim, void[..., None]], dim=-1)


class LinearClassHead(nn.Module):
    """Mask2Former's linear classifier: queries [B,Q,D] -> logits [B,Q,K+1] (void last)."""

    def __init__(self, num_classes: int, hidden_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(hidden_dim, num_classes + 1)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        return self.linear(queries)
