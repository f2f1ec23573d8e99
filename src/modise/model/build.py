"""``build_model``: compose MODISE's parts for a preset and size (the segment-anything ``build_*`` style)."""

from __future__ import annotations

from typing import Any

import torch

from modise.data.panoptic import Category
from modise.model.config import ModelConfig, load_preset
from modise.model.modise_model import MODISE

DEFAULT_CATEGORIES = [
    Category(id=1, name="benign", isthing=1, prompts=["a benign lesion in a mammogram"]),
    Category(id=2, name="malignant", isthing=1, prompts=["a malignant lesion in a mammogram"]),
]


def build_model(preset: str = "m-odise", size: str = "tiny", *, random_weights: bool = False,
                categories: list[Category] | None = None, overrides: dict[str, Any] | None = None) -> MODISE:
    """Build a preset (``m2f-swinl``, ``m2f-sd``, ``odise``, ``odise-biomedclip``, ``odise-mame``, ``m-odise``).

    ``random_weights`` builds frozen parts with seeded random weights (offline); ``tiny`` always does.
    ``categories`` map contiguous labels k to dataset categories (default: benign, malignant).
    """
    overrides = dict(overrides or {})
    if random_weights:
        overrides["random_weights"] = True
    return build_from_config(load_preset(preset, size, overrides), categories)


def _empty_prompt_embeds(text_encoder) -> torch.Tensor:
    from modise.model.sd_parts import offline_clip_tokenizer

    tok = offline_clip_tokenizer()
    n = int(text_encoder.config.max_position_embeddings)  # 77 for SD-1.x
    ids = tok([""], padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]


def build_from_config(config: ModelConfig, categories: list[Category] | None = None) -> MODISE:
    """Build MODISE from a validated config (what ``from_pretrained`` uses)."""
    from modise.model.class_head import LinearClassHead, TextClassHead
    from modise.model.clip_ensemble import build_clip_ensemble
    from modise.model.diffusion_features import DiffusionFeatureExtractor
    from modise.model.feature_projection import FeatureProjection
    from modise.model.image_encoders import ImageEncoder, build_clip_bundle
    from modise.model.implicit_captioner import ImplicitCaptioner
    from modise.model.loading import freeze, load_sd_parts, seeded
    from modise.model.mask_generator import MaskGenerator
    from modise.model.sd_parts import build_scheduler
    from modise.model.swin_backbone import SwinFeatures, build_swin
    from modise.model.text_encoders import TextEncoder, encode_categories

    categories = list(categories or DEFAULT_CATEGORIES)
    c, size, rnd = config, config.size, config.random_weights or config.size == "tiny"
    d = c.diffusion

    bundles: dict[tuple[str, str | None], Any] = {}

    def bundle(kind: str, model_id: str | None):
        key = (kind, model_id)
        if key not in bundles:
            bundles[key] = build_clip_bundle(kind, model_id, size, rnd, seed=c.seed + 10)
        return bundles[key]

    captioner = projection = pretrained_m2f = None
    extras: dict[str, torch.nn.Module] = {}
    if d.kind == "sd":
        vae, unet, text_encoder = load_sd_parts(d.model_id, size, rnd, seed=c.seed)
        alpha0 = float(build_scheduler("ddpm").alphas_cumprod[0])
        backbone = DiffusionFeatureExtractor(vae, unet, _empty_prompt_embeds(text_encoder), c.noise_seed, alpha0)
        del text_encoder  # only the empty-prompt embedding is needed
        if c.captioner.encoder != "none":
            b = bundle(c.captioner.encoder, c.captioner.model_id)
            captioner = ImplicitCaptioner(ImageEncoder(b), backbone.cond_dim, backbone.seq_len,
                                          backbone.time_embed_dim if c.captioner.time_embedding else None)
        projection = FeatureProjection(backbone.tap_channels, backbone.tap_strides, d.projection_dim)
        feature_channels = [d.projection_dim] * 4
    else:
        swin, pretrained_m2f = build_swin(d.model_id, size, rnd, seed=c.seed)
        backbone = SwinFeatures(swin)
        if not d.trainable:
            freeze(backbone)
        feature_channels = backbone.channels

    mask_generator = MaskGenerator(feature_channels, c.hidden_dim, c.num_queries, c.dec_layers, c.enc_layers, c.nheads,
                                   c.dim_feedforward, c.enc_feedforward)
    if pretrained_m2f is not None:
        mask_generator.load_from_mask2former(pretrained_m2f)
        del pretrained_m2f  # its class layer is not used: the linear head below is new (our classes)
    if c.class_head.kind == "linear":
        class_head = LinearClassHead(len(categories), c.hidden_dim)
    else:
        b = bundle(c.class_head.kind, c.class_head.model_id)
        text = TextEncoder(b)
        embeds, valid = encode_categories(text, categories, c.class_head.prompt_template)  # unnormalised
        class_head = TextClassHead(embeds, valid, text.encode([""]), c.hidden_dim,
                                   c.class_head.projection_dim or c.hidden_dim, c.class_head.init_logit_scale)
        # The whole open_clip model is frozen; its text side ran once above. Kept for accounting
        # (parameters shared with the captioner's image tower are counted once).
        extras["clip_model"] = b.model
    if c.inference.clip_ensemble:
        extras["clip_ensemble"] = build_clip_ensemble(c, categories, bundle)
    model = MODISE(c, categories, backbone, projection, captioner, mask_generator, class_head, extras)
    return model.train()
