"""ODISE's inference-time geometric ensemble with a mask-pooled CLIP classifier.

``MaskCLIPClassifier`` is ODISE's ``MaskCLIP`` (odise/modeling/meta_arch/clip.py:239-361): the image
is resized to CLIP's square input, every predicted mask becomes an extra token (a copy of the class
token) that attends only to the class token and the patches its mask covers (max-pooled per patch,
sigmoid >= 0.5); the mask tokens' outputs through ``ln_post`` and ``proj`` are the mask embeddings,
scored against the class prompts' normalised text embeddings with CLIP's own logit scale (max over
synonyms). :func:`geometric_ensemble` combines them with the class head as ``PoolingCLIPHead`` and
``CategoryODISE.forward`` do (odise.py:292-323, 1506-1536).

Only open_clip ``VisionTransformer`` towers (CLIP; they carry ``positional_embedding``) can be
mask-pooled this way, as in ODISE (clip.py:283 asserts it). BiomedCLIP's image tower is a timm ViT
wrapped by open_clip (no ``positional_embedding``), so presets with a BiomedCLIP captioner and class
head keep the ensemble off and :func:`build_clip_ensemble` refuses to build one for them.
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


class MaskCLIPClassifier(nn.Module):
    """Frozen CLIP ViT + class prompts: images [B,3,H,W] in [0,1], mask logits [B,Q,h,w] -> logits [B,Q,K]."""

    def __init__(self, visual: nn.Module, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 text_embeds: torch.Tensor, valid: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        if not hasattr(visual, "positional_embedding"):
            raise ModiseError("The CLIP ensemble needs an open_clip VisionTransformer image tower (with "
                              "positional_embedding); this one is a timm ViT (BiomedCLIP), so set "
                              "inference.clip_ensemble: false.")
        self.visual = visual  # frozen, shared with the captioner / class head
        self.image_size = image_size
        self.logit_scale = min(float(logit_scale), 100.0)  # MaskCLIP.logit_scale: exp clamped at 100
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("text_embeds", F.normalize(text_embeds, dim=-1), persistent=False)  # [K,S,E]
        self.register_buffer("valid", valid, persistent=False)

    def attention_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """mask logits [B,Q,S,S] -> additive attention mask [B*heads, Q+1+P, Q+1+P] (0 or -inf).

        Nothing attends to the Q mask tokens; mask token q attends to the class token and the
        patches where its max-pooled mask probability is >= 0.5 (clip.py:290-321).
        """
        conv = self.visual.conv1
        patch = F.max_pool2d(masks.sigmoid(), kernel_size=conv.kernel_size, stride=conv.stride)
        b, q = masks.shape[:2]
        blocked = (patch < 0.5).flatten(2)  # [B,Q,P]
        n = q + 1 + blocked.shape[-1]
        block = torch.zeros(b, n, n, dtype=torch.bool, device=masks.device)
        block[:, :, :q] = True
        block[:, :q, q + 1 :] = blocked
        heads = self.visual.transformer.resblocks[0].attn.num_heads
        add = torch.zeros(block.shape, dtype=masks.dtype, device=masks.device).masked_fill(block, float("-inf"))
        return add.repeat_interleave(heads, dim=0)

    @torch.no_grad()
    def mask_embed(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """-> mask embeddings [B,Q,E] (unnormalised)."""
        s = self.image_size
        x = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False)  # clip.py:327 (square)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        m = F.interpolate(masks.to(x.dtype), size=(s, s), mode="bilinear", align_corners=False)
        v = self.visual
        tokens = v._embeds(x)  # conv1, class token, positional embedding, ln_pre: [B,1+P,W]
        q = m.shape[1]
        seq = torch.cat([tokens[:, :1].expand(-1, q, -1), tokens], dim=1)
        out = v.transformer(seq, attn_mask=self.attention_mask(m))
        out = v.ln_post(out[:, :q])
        return out @ v.proj if v.proj is not None else out

    @torch.no_grad()
    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        e = F.normalize(self.mask_embed(images, masks), dim=-1)
        sim = torch.einsum("bqe,kse->bqks", e, self.text_embeds).masked_fill(~self.valid, float("-inf")).amax(-1)
        return self.logit_scale * sim


def build_clip_ensemble(config: Any, categories: list[Category], bundle: Callable[[str, str | None], Any]) -> MaskCLIPClassifier:
    """The mask-pooled CLIP classifier of a config whose class head or captioner is CLIP."""
    from modise.model.text_encoders import TextEncoder, encode_categories

    if config.class_head.kind == "clip":
        b = bundle("clip", config.class_head.model_id)
    elif config.captioner.encoder == "clip":
        b = bundle("clip", config.captioner.model_id)
    else:
        raise ModiseError(f"inference.clip_ensemble needs a CLIP class head or captioner; preset '{config.preset}' "
                          f"uses {config.class_head.kind} / {config.captioner.encoder}, so set inference.clip_ensemble: false.")
    embeds, valid = encode_categories(TextEncoder(b), categories, config.inference.ensemble_prompt_template)
    return MaskCLIPClassifier(b.model.visual, b.image_size, b.mean, b.std, embeds, valid, float(b.model.logit_scale.exp()))
