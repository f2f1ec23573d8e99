"""Mask generator: transformers' Mask2Former pixel decoder + masked-attention transformer decoder
(non-exported classes, reached through :mod:`modise.compat`).

Built standalone (outside ``Mask2FormerPreTrainedModel``) these modules miss two initialisations:
the pixel decoder's ``level_embed`` is uninitialised memory (``torch.Tensor(n, d)``) and the
deformable attention's sampling-offset grid is never set. :func:`init_mask_generator` sets both
(normal(0,1) level embeddings; offsets bias = per-head direction grid scaled by point index,
weight 0; attention weights 0; xavier value/output projections), as Deformable DETR does.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mask2former_config(hidden_dim: int, num_queries: int, dec_layers: int, enc_layers: int, nheads: int,
                       dim_feedforward: int, enc_feedforward: int):
    from transformers import Mask2FormerConfig

    return Mask2FormerConfig(
        feature_size=hidden_dim, mask_feature_size=hidden_dim, hidden_dim=hidden_dim, num_queries=num_queries,
        decoder_layers=dec_layers + 1,  # transformers counts the initial prediction as a layer
        encoder_layers=enc_layers, num_attention_heads=nheads, dim_feedforward=dim_feedforward,
        encoder_feedforward_dim=enc_feedforward, dropout=0.0,  # dropout doubles as layer-drop there: keep 0
        feature_strides=[4, 8, 16, 32], common_stride=4, pre_norm=False, enforce_input_projection=False,
    )


@torch.no_grad()
def init_deformable_attention(module: nn.Module) -> None:
    """Deformable-DETR init: offsets start on a ring of directions per head, growing with point index."""
    nn.init.constant_(module.sampling_offsets.weight, 0.0)
    thetas = torch.arange(module.n_heads, dtype=torch.float32) * (2.0 * math.pi / module.n_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(module.n_heads, 1, 1, 2)
    grid = grid.repeat(1, module.n_levels, module.n_points, 1)
    for i in range(module.n_points):
        grid[:, :, i, :] *= i + 1
    module.sampling_offsets.bias.copy_(grid.view(-1))
    nn.init.constant_(module.attention_weights.weight, 0.0)
    nn.init.constant_(module.attention_weights.bias, 0.0)
    nn.init.xavier_uniform_(module.value_proj.weight)
    nn.init.constant_(module.value_proj.bias, 0.0)
    nn.init.xavier_uniform_(module.output_proj.weight)
    nn.init.constant_(module.output_proj.bias, 0.0)


@torch.no_grad()
def init_mask_generator(pixel_decoder: nn.Module, transformer: nn.Module) -> None:
    from modise.compat import mask2former_init_targets

    deformable_attention, decoder_layer = mask2former_init_targets()
    nn.init.normal_(pixel_decoder.level_embed, std=1.0)
    for m in pixel_decoder.modules():
        if isinstance(m, deformable_attention):
            init_deformable_attention(m)
    for m in transformer.modules():
        if isinstance(m, decoder_layer):
            for p in m.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            nn.init.zeros_(m.cross_attn.in_proj_bias)
    nn.init.normal_(transformer.level_embed.weight, std=1.0)
    nn.init.normal_(transformer.queries_embedder.weight, std=1.0)
    nn.init.normal_(transformer.queries_features.weight, std=1.0)


class MaskGenerator(nn.Module):
    """4 maps (strides 4, 8, 16, 32; channels ``feature_channels``) -> per decoder layer (initial
    prediction included): mask logits [B,Q,H/4,W/4] and normed query embeddings [B,Q,D]; plus the
    pixel decoder's mask features [B,D,H/4,W/4] (ODISE's class head pools them)."""

    def __init__(self, feature_channels: list[int], hidden_dim: int = 256, num_queries: int = 100, dec_layers: int = 9,
                 enc_layers: int = 6, nheads: int = 8, dim_feedforward: int = 2048, enc_feedforward: int = 1024) -> None:
        super().__init__()
        from modise.compat import mask2former_pixel_decoder, mask2former_transformer_decoder, route_deformable_sampling
        from modise.model.deformable_sampling import sample_deformable

        cfg = mask2former_config(hidden_dim, num_queries, dec_layers, enc_layers, nheads, dim_feedforward, enc_feedforward)
        self.pixel_decoder = mask2former_pixel_decoder(cfg, feature_channels)
        self.transformer = mask2former_transformer_decoder(cfg, in_features=hidden_dim)
        init_mask_generator(self.pixel_decoder, self.transformer)
        route_deformable_sampling(sample_deformable)  # CPU inference: one gather (model/deformable_sampling.py)

    def load_from_mask2former(self, model: nn.Module) -> None:
        """Copy a ``transformers`` Mask2Former's pixel decoder and transformer decoder (COCO-pretrained
        m2f-swinl); its class layer is not used (the class head is re-initialised for our classes)."""
        from modise.errors import ModiseError

        m = getattr(model, "model", model)  # Mask2FormerForUniversalSegmentation or Mask2FormerModel
        for mine, theirs, name in ((self.pixel_decoder, m.pixel_level_module.decoder, "pixel decoder"),
                                   (self.transformer, m.transformer_module, "transformer decoder")):
            try:
                mine.load_state_dict(theirs.state_dict(), strict=True)
            except RuntimeError as e:
                first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
                raise ModiseError(f"The pretrained Mask2Former's {name} does not fit the preset's sizes "
                                  f"(num_queries, hidden_dim, dec_layers, enc_layers, ...): {first}") from None

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        # Mask2Former runs the deformable pixel decoder outside autocast, on .float() features
        # (msdeformattn.py:314-320, "deformable detr does not support half precision"): under bf16
        # mixed precision it computes in its weights' fp32; only the transformer decoder autocasts.
        dtype = next(self.pixel_decoder.parameters()).dtype
        with torch.autocast(features[0].device.type, enabled=False):
            pix = self.pixel_decoder([f.to(dtype) for f in features], return_dict=True)
        out = self.transformer(list(pix.multi_scale_features), pix.mask_features)
        queries = [h.transpose(0, 1) for h in out.intermediate_hidden_states]  # [Q,B,D] -> [B,Q,D]
        return list(out.masks_queries_logits), queries, pix.mask_features
