"""m2f-swinl: the whole COCO-pretrained transformers Mask2Former (Swin, pixel decoder, transformer
decoder) is loaded, only the class layer is new; tested offline with a tiny saved model."""

from __future__ import annotations

import pytest
import torch

from modise.errors import MissingWeightsError
from modise.model import build_model

DIMS = {"hidden_dim": 64, "num_queries": 8, "dec_layers": 2, "enc_layers": 1, "nheads": 4, "dim_feedforward": 64,
        "enc_feedforward": 64}


def _tiny_mask2former(num_labels: int = 5):
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    swin = SwinConfig(embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=7, image_size=224,
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = Mask2FormerConfig(backbone_config=swin, feature_size=64, mask_feature_size=64, hidden_dim=64, num_queries=8,
                            decoder_layers=3, encoder_layers=1, num_attention_heads=4, dim_feedforward=64,
                            encoder_feedforward_dim=64, num_labels=num_labels, dropout=0.0)
    torch.manual_seed(1)
    return Mask2FormerForUniversalSegmentation(cfg).eval()


def test_whole_pretrained_mask2former_is_loaded_class_layer_new(tmp_path):
    hf = _tiny_mask2former()
    hf.save_pretrained(tmp_path / "m2f")
    m = build_model("m2f-swinl", "full", overrides={"diffusion": {"model_id": str(tmp_path / "m2f")}, **DIMS})
    pairs = ((m.backbone.backbone, hf.model.pixel_level_module.encoder),
             (m.mask_generator.pixel_decoder, hf.model.pixel_level_module.decoder),
             (m.mask_generator.transformer, hf.model.transformer_module))
    for mine, theirs in pairs:
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert m.class_head.linear.out_features == len(m.categories) + 1 != hf.class_predictor.out_features
    # fine-tuned whole: Swin included, with Mask2Former's backbone lr x 0.1 (preset optimizer section)
    assert all(p.requires_grad for p in m.backbone.parameters())
    assert m.config.optimizer.backbone_lr_multiplier == 0.1
    # the copied decoders reproduce the pretrained model's masks on the same image
    x = torch.rand(1, 3, 128, 128)
    m.eval()
    with torch.no_grad():
        ours = m(x)["pred_masks"]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        theirs = hf(pixel_values=(x - mean) / std).masks_queries_logits
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-4)


def test_pretrained_sizes_must_fit_the_preset(tmp_path):
    from modise.errors import ModiseError

    _tiny_mask2former().save_pretrained(tmp_path / "m2f")
    with pytest.raises(ModiseError, match="transformer decoder does not fit"):
        build_model("m2f-swinl", "full", overrides={"diffusion": {"model_id": str(tmp_path / "m2f")}, **DIMS,
                                                    "num_queries": 200})


def test_full_preset_is_mask2formers_swin_l_recipe_and_missing_weights_name_the_id():
    from modise.model import load_preset

    c = load_preset("m2f-swinl", "full")
    assert c.num_queries == 200 and c.diffusion.model_id == "facebook/mask2former-swin-large-coco-panoptic"
    assert (c.inference.object_mask_threshold, c.inference.overlap_threshold) == (0.8, 0.8)
    with pytest.raises(MissingWeightsError, match="nobody/no-m2f"):
        build_model("m2f-swinl", "full", overrides={"diffusion": {"model_id": "nobody/no-m2f"}})
