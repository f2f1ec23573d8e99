"""Frozen open_clip towers shared by the implicit captioner (image side) and the class head (text side).

``clip``: OpenAI CLIP ViT-L/14 at 336 px as ODISE uses (``ViT-L-14-336/openai``: architecture/tag, an ``hf-hub:`` id or a local
folder). ``biomedclip``: BiomedCLIP (timm ViT-B/16 + PubMedBERT, 512-d joint space, context 256).
Random-weight builds use open_clip's own architecture configs and the BERT configs shipped in
``modise/presets/text`` (no download); tiny builds are 2-layer towers of width 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modise.errors import ModiseError
from modise.model.loading import freeze, pretrained_or_missing, seeded

TEXT_DIR = Path(__file__).resolve().parents[1] / "presets" / "text"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_KINDS = ("clip", "biomedclip")


@dataclass
class ClipBundle:
    """An open_clip model with its tokenizer and image normalisation."""

    model: nn.Module
    tokenizer: Any
    image_size: int
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD


def _tiny_bert_text_cfg(model_dir: Path, context_length: int) -> dict[str, Any]:
    tok = str(TEXT_DIR / "tiny-bert")
    return dict(hf_model_name=str(model_dir), hf_tokenizer_name=tok, hf_proj_type="mlp",
                hf_pooler_type="cls_last_hidden_state_pooler", hf_model_pretrained=False, context_length=context_length)


def _local_or_hub(model_id: str) -> str:
    p = Path(model_id)
    return f"local-dir:{p}" if p.is_dir() else model_id


def uses_quick_gelu(model_id: str | None) -> bool:
    """Whether the weights of an ``arch/tag`` id (default ``ViT-L-14-336/openai``) were trained with QuickGELU.

    open_clip's OpenAI weights were (open_clip 2.0.2, which ODISE pins: ``model.py:646``
    ``build_model_from_openai_state_dict(quick_gelu=True)``), but open_clip >= 2.2x builds ``ViT-L-14-336``
    with ``nn.GELU`` for the ``openai`` tag and only warns (``factory.py:477`` "QuickGELU mismatch").
    The tag's own pretrained config says which activation it needs; ``hf-hub:`` ids and local folders
    carry theirs in ``open_clip_config.json``.
    """
    import open_clip

    model_id = model_id or "ViT-L-14-336/openai"
    if model_id.startswith("hf-hub:") or Path(model_id).is_dir():
        return False
    arch, _, tag = model_id.partition("/")
    return bool(open_clip.get_pretrained_cfg(arch, tag or "openai").get("quick_gelu", False))


def tower_activation(tower: nn.Module) -> str:
    """The activation class of an open_clip tower's MLPs (``QuickGELU``, ``GELU``, ...): open_clip blocks
    (``mlp.gelu``) or timm ones (``Mlp.act``, BiomedCLIP's image tower)."""
    names = {type(m.mlp.gelu).__name__ for m in tower.modules() if hasattr(getattr(m, "mlp", None), "gelu")}
    names |= {type(m.act).__name__ for m in tower.modules() if type(m).__name__ == "Mlp" and hasattr(m, "act")}
    return "/".join(sorted(names)) or "unknown"


def build_clip_bundle(kind: str, model_id: str | None, size: str, random_weights: bool, seed: int = 0) -> ClipBundle:
    """Build a frozen open_clip model of ``kind`` (:data:`CLIP_KINDS`) at ``size`` (full|tiny)."""
    if kind not in CLIP_KINDS:
        raise ModiseError(f"Unknown image/text encoder kind '{kind}'; use one of {', '.join(CLIP_KINDS)}.")
    import open_clip
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    if size == "tiny":
        vision = dict(image_size=64, layers=2, width=32, patch_size=16, head_width=16)
        with seeded(seed):
            if kind == "clip":
                text = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)
                model = open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text, quick_gelu=uses_quick_gelu(model_id))
                tok = SimpleTokenizer(context_length=77)
            else:  # biomedclip
                model = open_clip.CustomTextCLIP(32, vision, _tiny_bert_text_cfg(TEXT_DIR / "tiny-bert", 64))
                tok = HFTokenizer(str(TEXT_DIR / "tiny-bert"), context_length=64)
        return ClipBundle(freeze(model), tok, 64)

    if random_weights:
        with seeded(seed):
            if kind == "clip":
                arch = (model_id or "ViT-L-14-336/openai").split("/")[0] if not str(model_id).startswith(("hf-hub:", "/")) else "ViT-L-14-336"
                # on the default device, so a `with torch.device("meta")` block builds the architecture without memory
                model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=uses_quick_gelu(model_id),
                                               device=torch.get_default_device())
                tok = SimpleTokenizer(context_length=77)
            else:  # biomedclip
                vision = dict(timm_model_name="vit_base_patch16_224", timm_model_pretrained=False, timm_pool="",
                              timm_proj="linear", image_size=224)
                model = open_clip.CustomTextCLIP(512, vision, _tiny_bert_text_cfg(TEXT_DIR / "pubmedbert-base", 256))
                # Random weights carry no meaning, so the shipped small WordPiece vocabulary stands in.
                tok = HFTokenizer(str(TEXT_DIR / "tiny-bert"), context_length=256)
        return ClipBundle(freeze(model), tok, _image_size(model))

    assert model_id is not None

    def load():
        if model_id.startswith("hf-hub:") or Path(model_id).is_dir():
            name = _local_or_hub(model_id)
            model, _ = open_clip.create_model_from_pretrained(name)
            return model, open_clip.get_tokenizer(name)
        arch, _, tag = model_id.partition("/")
        model = open_clip.create_model(arch, pretrained=tag or "openai", require_pretrained=True,
                                       force_quick_gelu=uses_quick_gelu(model_id))
        return model, open_clip.get_tokenizer(arch)

    model, tok = pretrained_or_missing(model_id, load, "the image/text encoder")
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    return ClipBundle(freeze(model), tok, _image_size(model), tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD)))


def _image_size(model: nn.Module) -> int:
    """The image tower's input side (336 for ViT-L-14-336, 224 for BiomedCLIP)."""
    size = getattr(model.visual, "image_size", None)
    if size is None:  # timm trunks (BiomedCLIP) keep it on the patch embedding
        size = model.visual.trunk.patch_embed.img_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def clip_preprocess(images: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """open_clip's eval transform on tensors: shortest side -> ``size`` (bicubic, not antialiased),
    centre crop ``size`` x ``size``, normalise. images [B,3,H,W] in [0,1] -> [B,3,size,size].

    ODISE applies exactly these (``ClipAdapter.clip_preprocess`` = Resize, CenterCrop, Normalize of
    ``open_clip.create_model_and_transforms``; odise/modeling/meta_arch/clip.py:94), so crops keep
    their aspect ratio. It runs them on tensors with torchvision 0.14.1 (ODISE README.md:60), whose
    tensor ``resize`` takes ``antialias=None`` as False: a plain bicubic ``interpolate``, unclamped.
    """
    h, w = images.shape[-2:]
    if (h, w) != (size, size):
        short = min(h, w)
        nh, nw = (size, int(size * w / h)) if h == short else (int(size * h / w), size)
        x = F.interpolate(images, size=(nh, nw), mode="bicubic", align_corners=False)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        images = x[..., top : top + size, left : left + size]
    return (images - mean) / std


class ImageEncoder(nn.Module):
    """Frozen image tower: images [B,3,H,W] in [0,1] -> unnormalised embeddings [B,E].

    Unnormalised like ODISE's captioner (``ClipAdapter(normalize=False)``, ldm.py:652).
    """

    def __init__(self, bundle: ClipBundle) -> None:
        super().__init__()
        self.visual = bundle.model.visual
        self.image_size = bundle.image_size
        self.register_buffer("mean", torch.tensor(bundle.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(bundle.std).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            self.embed_dim = int(self.visual(torch.zeros(1, 3, self.image_size, self.image_size)).shape[-1])

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return clip_preprocess(images, self.image_size, self.mean.to(images.dtype), self.std.to(images.dtype))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # resize in fp32 (as ODISE's fp32 inputs), then run the tower in its own dtype
        dtype = next(self.visual.parameters()).dtype
        return self.visual(self.preprocess(images.float()).to(dtype))
