"""Classification heads: ODISE's open-vocabulary head for ODISE/M-ODISE, Mask2Former's linear one for m2f-*.

Every head is called per decoder layer as ``head(queries [B,Q,D], mask_features [B,D,h,w],
masks [B,Q,h,w]) -> logits [B,Q,K+1]`` (void last); ``queries`` are the decoder-normed query
states and ``masks`` the mask logits predicted from them at the pixel decoder's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Mask2Former's MLP: ``num_layers`` linear layers with ReLU between them."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def mask_pool(features: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """ODISE's hard ``MaskPooling`` (odise.py:923-963): features [B,C,h,w], mask logits [B,Q,h,w] -> [B,Q,C].

    The mask is detached and binarised (sigmoid > 0.5), so no gradient flows into the masks.
    """
    m = (masks.detach().sigmoid() > threshold).to(features.dtype)
    return torch.einsum("bchw,bqhw->bqc", features, m / (m.sum(dim=(-1, -2), keepdim=True) + 1e-8))


class PooledMaskEmbed(nn.Module):
    """ODISE's ``PooledMaskEmbed`` (odise.py:966-1015): mask embedding [B,Q,P] and the logit scale.

    ``pool_proj(LN + Linear)(mask-pooled pixel features) + normed query -> LN -> 3-layer MLP -> P``.
    """

    def __init__(self, hidden_dim: int, mask_dim: int, projection_dim: int, init_logit_scale: float) -> None:
        super().__init__()
        self.pool_proj = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
        self.mask_embed = nn.Sequential(nn.LayerNorm(mask_dim), MLP(mask_dim, hidden_dim, projection_dim, 3))
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        x = self.pool_proj(mask_pool(mask_features, masks)) + queries
        return self.mask_embed(x)


class TextClassHead(nn.Module):
    """ODISE's category head: logits = scale * cos(mask embed, text_proj(text)), max over synonyms, void last.

    ``CategoryEmbed`` (odise.py:1219-1307): the frozen text tower's UNnormalised embeddings [K,S,E]
    (a non-persistent buffer, recomputed at build) go through a trainable ``Linear(E, P)``; the void
    class is a learnable embedding initialised as the text tower's embedding of "" and projected by
    the same Linear. Scale = exp(logit_scale) clamped at 100 (``CategoryODISE.cal_pred_logits``,
    odise.py:181-207).
    """

    def __init__(self, text_embeds: torch.Tensor, valid: torch.Tensor, null_embed: torch.Tensor, hidden_dim: int,
                 projection_dim: int, init_logit_scale: float) -> None:
        super().__init__()
        e = text_embeds.shape[-1]
        self.register_buffer("text_embeds", text_embeds, persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        self.pooled = PooledMaskEmbed(hidden_dim, hidden_dim, projection_dim, init_logit_scale)
        self.text_proj = nn.Linear(e, projection_dim)
        self.null_embed = nn.Parameter(null_embed.detach().reshape(1, e).clone())

    @property
    def num_classes(self) -> int:
        return self.text_embeds.shape[0]

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """queries [B,Q,D], mask_features [B,D,h,w], masks [B,Q,h,w] -> logits [B,Q,K+1]."""
        q = F.normalize(self.pooled(queries, mask_features, masks), dim=-1)
        t = F.normalize(self.text_proj(self.text_embeds), dim=-1)  # [K,S,P]
        sim = torch.einsum("bqp,ksp->bqks", q, t).masked_fill(~self.valid, float("-inf")).amax(-1)
        void = q @ F.normalize(self.text_proj(self.null_embed), dim=-1).t()  # [B,Q,1]
        return self.pooled.logit_scale.exp().clamp(max=100.0) * torch.cat([sim, void], dim=-1)


class LinearClassHead(nn.Module):
    """Mask2Former's linear classifier: queries [B,Q,D] -> logits [B,Q,K+1] (void last)."""

    def __init__(self, num_classes: int, hidden_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(hidden_dim, num_classes + 1)

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor | None = None,
                masks: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(queries)
