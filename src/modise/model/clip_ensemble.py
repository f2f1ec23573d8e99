"""ODISE's inference-time geometric ensemble with a mask-pooled CLIP classifier.

``MaskCLIPClassifier`` is ODISE's ``MaskCLIP`` (odise/modeling/meta_arch/clip.py:239-361): the image
is resized to CLIP's square input, every predicted mask becomes an extra token (a copy of the class
token) that attends only to the class token and the patches its mask covers (max-pooled per patch,
sigmoid >= 0.5); the mask tokens' outputs through ``ln_post`` and ``proj`` are the mask embeddings,
scored against the class prompts' normalised text embeddings with CLIP's own logit scale (max over
synonyms). :func:`geometric_ensemble` combines them with the class head as ``PoolingCLIPHead`` and
``CategoryODISE.forward`` do (odise.py:292-323, 1506-1536).

ODISE's MaskCLIP handles open_clip ``VisionTransformer`` towers only (clip.py:283 asserts
``positional_embedding``). BiomedCLIP's image tower is a timm ViT wrapped by open_clip; the same
mask-token scheme is built for it here (class token copies, additive attention mask through the timm
blocks, final norm + BiomedCLIP's projection), so one rule holds for every preset with a CLIP-style
encoder: the ensemble is on, as in ODISE (``clip_head=PoolingCLIPHead``, mask_generator_with_label.py:89).
It is inference-only: a model with such an encoder always carries the classifier, and
``inference.clip_ensemble`` switches it, so one trained model is scored with and without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modise.data.panoptic import Category
from modise.errors import ModiseError


def geometric_ensemble(logits: torch.Tensor, clip_logits: torch.Tensor, seen: torch.Tensor, alpha: float = 0.3,
                       beta: float = 0.7) -> torch.Tensor:
    """Class head logits [..., K+1] (void last) and CLIP logits [..., K] -> log-probabilities [..., K+1].

    Foreground: p^(1-a) * p_clip^a with a = ``alpha`` for seen classes (``seen`` [K] bool) and ``beta``
    for the others (odise.py:1506-1536), renormalised over the K classes and scaled by the head's
    non-void probability; void keeps the head's probability (odise.py:303-323). ``log(p + 1e-8)``
    as ODISE, so a later softmax gives these probabilities back.
    """
    p = logits[..., :-1].softmax(-1)
    pc = clip_logits.softmax(-1)
    a = torch.where(seen.to(p.device), torch.tensor(alpha, device=p.device), torch.tensor(beta, device=p.device)).to(p.dtype)
    fg = (p ** (1 - a) * pc**a).log().softmax(-1)
    void = logits.softmax(-1)[..., -1:]
    return torch.log(torch.cat([fg * (1 - void), void], dim=-1) + 1e-8)


def _timm_trunk(visual: nn.Module) -> nn.Module | None:
    """The timm ViT inside an open_clip ``TimmModel`` (BiomedCLIP), if it has one class token and token pooling."""
    trunk = getattr(visual, "trunk", None)
    ok = (trunk is not None and getattr(trunk, "cls_token", None) is not None and getattr(trunk, "num_prefix_tokens", 0) == 1
          and getattr(trunk, "global_pool", None) == "token" and getattr(trunk, "attn_pool", None) is None)
    return trunk if ok else None


class MaskCLIPClassifier(nn.Module):
    """Frozen CLIP ViT + class prompts: images [B,3,H,W] in [0,1], mask logits [B,Q,h,w] -> logits [B,Q,K].

    Towers: open_clip ``VisionTransformer`` (CLIP, as ODISE) and, beyond ODISE, the timm ViT that
    open_clip wraps for BiomedCLIP (class token + token pooling), with the same mask-token scheme.
    """

    def __init__(self, visual: nn.Module, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 text_embeds: torch.Tensor, valid: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.timm = _timm_trunk(visual) is not None
        if not self.timm and not hasattr(visual, "positional_embedding"):
            raise ModiseError(f"The CLIP ensemble cannot mask-pool a {type(visual).__name__} image tower (it needs an "
                              "open_clip VisionTransformer or a timm ViT with a class token); set inference.clip_ensemble: false.")
        self.visual = visual  # frozen, shared with the captioner / class head
        self.image_size = image_size
        self.logit_scale = min(float(logit_scale), 100.0)  # MaskCLIP.logit_scale: exp clamped at 100
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("text_embeds", F.normalize(text_embeds, dim=-1), persistent=False)  # [K,S,E]
        self.register_buffer("valid", valid, persistent=False)

    @property
    def patch_size(self) -> tuple[int, int]:
        if self.timm:
            return tuple(self.visual.trunk.patch_embed.patch_size)
        return tuple(self.visual.conv1.kernel_size)

    def attention_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """mask logits [B,Q,S,S] -> additive attention mask [B, Q+1+P, Q+1+P] (0 or -inf).

        Nothing attends to the Q mask tokens; mask token q attends to the class token and the
        patches where its max-pooled mask probability is >= 0.5 (clip.py:290-321).
        """
        ps = self.patch_size
        patch = F.max_pool2d(masks.sigmoid(), kernel_size=ps, stride=ps)
        b, q = masks.shape[:2]
        blocked = (patch < 0.5).flatten(2)  # [B,Q,P]
        n = q + 1 + blocked.shape[-1]
        block = torch.zeros(b, n, n, dtype=torch.bool, device=masks.device)
        block[:, :, :q] = True
        block[:, :q, q + 1 :] = blocked
        return torch.zeros(block.shape, dtype=masks.dtype, device=masks.device).masked_fill(block, float("-inf"))

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> [B,1+P,W]: class + patch tokens with positions, before the blocks."""
        from modise.compat import open_clip_vit_tokens, timm_vit_tokens

        return timm_vit_tokens(self.visual.trunk, x) if self.timm else open_clip_vit_tokens(self.visual, x)

    def _blocks(self, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.timm:
            for blk in self.visual.trunk.blocks:
                seq = blk(seq, attn_mask=mask[:, None])  # [B,1,N,N] broadcast over heads (SDPA)
            return seq
        heads = self.visual.transformer.resblocks[0].attn.num_heads  # nn.MultiheadAttention: [B*heads,N,N]
        return self.visual.transformer(seq, attn_mask=mask.repeat_interleave(heads, dim=0))

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final norm + projection of (mask) tokens, as the tower does for its class token."""
        v = self.visual
        if self.timm:
            return v.head(v.trunk.head(v.trunk.fc_norm(v.trunk.norm(tokens))))
        out = v.ln_post(tokens)
        return out @ v.proj if v.proj is not None else out

    @torch.no_grad()
    def mask_embed(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """-> mask embeddings [B,Q,E] (unnormalised)."""
        s = self.image_size
        x = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False)  # clip.py:327 (square)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        m = F.interpolate(masks.to(x.dtype), size=(s, s), mode="bilinear", align_corners=False)
        tokens = self._tokens(x)
        q = m.shape[1]
        seq = torch.cat([tokens[:, :1].expand(-1, q, -1), tokens], dim=1)
        return self._project(self._blocks(seq, self.attention_mask(m))[:, :q])

    @torch.no_grad()
    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        e = F.normalize(self.mask_embed(images, masks), dim=-1)
        sim = torch.einsum("bqe,kse->bqks", e, self.text_embeds).masked_fill(~self.valid, float("-inf")).amax(-1)
        return self.logit_scale * sim


def has_clip_encoder(config: Any) -> bool:
    """Whether the config has an open_clip model (class head or captioner) the ensemble can pool."""
    return config.class_head.kind != "linear" or config.captioner.encoder != "none"


def build_clip_ensemble(config: Any, categories: list[Category], bundle: Callable[[str, str | None], Any]) -> MaskCLIPClassifier:
    """The mask-pooled classifier of the config's class-head (else captioner) open_clip model."""
    from modise.model.text_encoders import TextEncoder, encode_categories

    if config.class_head.kind != "linear":
        b = bundle(config.class_head.kind, config.class_head.model_id)
    elif config.captioner.encoder != "none":
        b = bundle(config.captioner.encoder, config.captioner.model_id)
    else:
        raise ModiseError(f"inference.clip_ensemble needs a CLIP-style class head or captioner; preset '{config.preset}' "
                          "has neither, so set inference.clip_ensemble: false.")
    embeds, valid = encode_categories(TextEncoder(b), categories, config.inference.ensemble_prompt_template)
    return MaskCLIPClassifier(b.model.visual, b.image_size, b.mean, b.std, embeds, valid, float(b.model.logit_scale.exp()))
