"""Frozen text tower: category prompts -> text embeddings (computed once, cached by the class head).

ODISE's ``CategoryEmbed`` keeps the UNnormalised CLIP text embeddings (``ClipAdapter(normalize=False)``,
``build_clip_text_embed``: odise/modeling/meta_arch/clip.py:29-73) and normalises only after its
trainable projection; the class head here does the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modise.data.panoptic import Category
from modise.model.image_encoders import ClipBundle


class TextEncoder(nn.Module):
    """Wraps an open_clip model's text side; ``encode(list[str]) -> [N,E]`` (raw, or unit vectors)."""

    def __init__(self, bundle: ClipBundle) -> None:
        super().__init__()
        self.clip = bundle.model  # shared with the image encoder; frozen
        self.tokenizer = bundle.tokenizer

    @torch.no_grad()
    def encode(self, prompts: list[str], normalize: bool = False) -> torch.Tensor:
        e = self.clip.encode_text(self.tokenizer(prompts)).float()
        return F.normalize(e, dim=-1) if normalize else e


def category_prompts(categories: list[Category], template: str) -> list[list[str]]:
    """Synonym prompts per category: its own ``prompts``, else ``template`` filled with its name.

    A bare ``[name]`` (what ``Category.to_json`` writes when no prompts were given) counts as none,
    so a saved model re-encodes exactly the prompts it was trained with.
    """
    return [list(c.prompts) if c.prompts and list(c.prompts) != [c.name] else [template.format(c.name)] for c in categories]


def encode_categories(encoder: TextEncoder, categories: list[Category], template: str,
                      normalize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (embeddings [K,S,E], valid [K,S]) with S = most synonyms of any category (padded, masked)."""
    prompts = category_prompts(categories, template)
    flat = [p for ps in prompts for p in ps]
    emb = encoder.encode(flat, normalize=normalize)
    s = max(len(ps) for ps in prompts)
    out = emb.new_zeros(len(prompts), s, emb.shape[-1])
    valid = torch.zeros(len(prompts), s, dtype=torch.bool)
    i = 0
    for k, ps in enumerate(prompts):
        out[k, : len(ps)] = emb[i : i + len(ps)]
        valid[k, : len(ps)] = True
        i += len(ps)
    return out, valid
