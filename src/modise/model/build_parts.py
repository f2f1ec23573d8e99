"""Build MODISE's parts for a validated config, wired by keyword (the segment-anything ``build_*`` style).

:func:`build_parts` returns the keyword arguments of :class:`~modise.model.modise_model.MODISE`
(``backbone``, ``captioner``, ``mask_generator``, ``class_head``, ``extras``). A new backbone is one
:class:`~modise.model.backbone.Backbone` subclass plus one branch in :func:`build_backbone`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from modise.data.panoptic import Category
from modise.model.backbone import Backbone
from modise.model.config import ModelConfig

DEFAULT_CATEGORIES = [
    Category(id=1, name="benign", isthing=1, prompts=["a benign lesion in a mammogram"]),
    Category(id=2, name="malignant", isthing=1, prompts=["a malignant lesion in a mammogram"]),
]


def _empty_prompt_embeds(text_encoder) -> torch.Tensor:
    from modise.model.stable_diffusion import offline_clip_tokenizer

    tok = offline_clip_tokenizer()
    n = int(text_encoder.config.max_position_embeddings)  # 77 for SD-1.x
    ids = tok([""], padding="max_length", max_length=n, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]


class _ClipBundles:
    """One open_clip model per (kind, id), shared by the captioner, the class head and the ensemble."""

    def __init__(self, config: ModelConfig) -> None:
        self.config, self._cache = config, {}

    def __call__(self, kind: str, model_id: str | None):
        from modise.model.image_encoders import build_clip_bundle

        c = self.config
        if (kind, model_id) not in self._cache:
            rnd = c.random_weights or c.size == "tiny"
            self._cache[(kind, model_id)] = build_clip_bundle(kind, model_id, size=c.size, random_weights=rnd,
                                                              seed=c.seed + 10)
        return self._cache[(kind, model_id)]


def build_backbone(config: ModelConfig, bundle: _ClipBundles) -> tuple[Backbone, nn.Module | None, Any]:
    """(the config's backbone, its conditioning (the implicit captioner) or None, a pretrained Mask2Former
    whose decoders the mask generator takes, or None). The one place that branches on the backbone kind."""
    from modise.errors import ModiseError
    from modise.model.loading import load_sd_parts

    c, d = config, config.diffusion
    rnd = c.random_weights or c.size == "tiny"
    if d.kind == "swin":
        from modise.model.swin_backbone import SwinFeatures, build_swin

        if c.captioner.encoder != "none":
            raise ModiseError(f"preset {c.preset}: captioner.encoder {c.captioner.encoder} needs a diffusion backbone "
                              "(diffusion.kind: sd); set captioner.encoder: none.")
        swin, pretrained_m2f = build_swin(d.model_id, size=c.size, random_weights=rnd, seed=c.seed)
        return SwinFeatures(swin, trainable=d.trainable), None, pretrained_m2f
    from modise.model.diffusion_backbone import DiffusionBackbone
    from modise.model.diffusion_features import DiffusionFeatureExtractor
    from modise.model.feature_projection import FeatureProjection
    from modise.model.image_encoders import ImageEncoder
    from modise.model.implicit_captioner import ImplicitCaptioner
    from modise.model.stable_diffusion import build_scheduler

    vae, unet, text_encoder = load_sd_parts(d.model_id, size=c.size, random_weights=rnd, seed=c.seed)
    extractor = DiffusionFeatureExtractor(vae, unet, _empty_prompt_embeds(text_encoder), noise_seed=c.noise_seed,
                                          alpha_bar_0=float(build_scheduler("ddpm").alphas_cumprod[0]))
    del text_encoder  # only the empty-prompt embedding is needed
    captioner = None  # built before the projection: trainable parts draw from the global RNG in this order
    if c.captioner.encoder != "none":
        captioner = ImplicitCaptioner(ImageEncoder(bundle(c.captioner.encoder, c.captioner.model_id)),
                                      cond_dim=extractor.cond_dim, seq_len=extractor.seq_len,
                                      time_embed_dim=extractor.time_embed_dim if c.captioner.time_embedding else None)
    projection = FeatureProjection(tap_channels=extractor.tap_channels, tap_strides=extractor.tap_strides,
                                   dim=d.projection_dim)
    backbone = DiffusionBackbone(extractor, projection, window_size=d.window_size, internal_size=d.internal_size,
                                 slide_training=d.slide_training, window_batch=d.window_batch,
                                 checkpoint_projection=d.checkpoint_projection)
    return backbone, captioner, None


def build_parts(config: ModelConfig, categories: list[Category] | None = None) -> dict[str, Any]:
    """MODISE's keyword arguments for ``config``: backbone, captioner, mask_generator, class_head, extras."""
    from modise.model.class_head import LinearClassHead, TextClassHead
    from modise.model.clip_ensemble import build_clip_ensemble, has_clip_encoder
    from modise.model.mask_generator import MaskGenerator
    from modise.model.text_encoders import TextEncoder, encode_categories

    categories = list(categories or DEFAULT_CATEGORIES)
    c = config
    bundle = _ClipBundles(c)
    backbone, captioner, pretrained_m2f = build_backbone(c, bundle)
    mask_generator = MaskGenerator(backbone.out_channels, hidden_dim=c.hidden_dim, num_queries=c.num_queries,
                                   dec_layers=c.dec_layers, enc_layers=c.enc_layers, nheads=c.nheads,
                                   dim_feedforward=c.dim_feedforward, enc_feedforward=c.enc_feedforward)
    if pretrained_m2f is not None:
        mask_generator.load_from_mask2former(pretrained_m2f)
        del pretrained_m2f  # its class layer is not used: the class head is new (our classes)
    extras: dict[str, nn.Module] = {}
    if c.class_head.kind == "linear":
        class_head = LinearClassHead(len(categories), hidden_dim=c.hidden_dim)
    else:
        b = bundle(c.class_head.kind, c.class_head.model_id)
        text = TextEncoder(b)
        embeds, valid = encode_categories(text, categories, c.class_head.prompt_template)  # unnormalised
        class_head = TextClassHead(embeds, valid, text.encode([""]), hidden_dim=c.hidden_dim,
                                   projection_dim=c.class_head.projection_dim or c.hidden_dim,
                                   init_logit_scale=c.class_head.init_logit_scale)
        # The whole open_clip model is frozen; its text side ran once above. Kept for accounting
        # (parameters shared with the captioner's image tower are counted once).
        extras["clip_model"] = b.model
    # built whenever it can be (it shares the frozen towers), so inference.clip_ensemble can switch it after training
    if c.inference.clip_ensemble or has_clip_encoder(c):
        extras["clip_ensemble"] = build_clip_ensemble(c, categories, bundle)
    return {"backbone": backbone, "captioner": captioner, "mask_generator": mask_generator,
            "class_head": class_head, "extras": extras}
