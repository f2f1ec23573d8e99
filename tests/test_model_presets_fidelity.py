"""Table 1 compares what it says it compares: each preset against the original's behaviour.

QuickGELU for OpenAI CLIP weights (open_clip 2.0.2, which ODISE pins), one CLIP-ensemble rule for the
ODISE family, Stable Diffusion v1-3 (ODISE ldm.py:82), ODISE's size divisibility 64
(mask_generator_with_label.py:94) and CLIP preprocessing without antialias (torchvision 0.14.1 tensors).
Full-size towers are built on the meta device (architecture only, no memory, well under a second).
"""

import pytest
import torch

from modise.model import build_model, load_preset
from modise.model.config import PRESETS

DIFFUSION_PRESETS = ("m2f-sd", "odise", "odise-biomedclip", "odise-mame", "m-odise")
CLIP_FAMILY = ("odise", "odise-biomedclip", "odise-mame", "m-odise")


@pytest.fixture(scope="module")
def odise():
    return build_model("odise", "tiny")


# ------------------------------------------------------------------ 1. QuickGELU
def _clip_parts(config):
    return [(kind, mid) for kind, mid in ((config.captioner.encoder, config.captioner.model_id),
                                          (config.class_head.kind, config.class_head.model_id)) if kind not in ("none", "linear")]


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_every_clip_tower_on_openai_weights_runs_quick_gelu(size):
    """open_clip 2.0.2 (ODISE's pin, setup.py:85) builds OpenAI weights with QuickGELU (model.py:646); current
    open_clip builds ViT-L-14-336 with GELU for the 'openai' tag. Every tower modise builds for such an id
    must be QuickGELU, and no other tower may be."""
    from modise.model.image_encoders import tower_activation, uses_quick_gelu
    from modise.model.build_parts import _ClipBundles

    seen = 0
    for preset in PRESETS:
        c = load_preset(preset, size, {"random_weights": True})
        for kind, model_id in _clip_parts(c):
            with torch.device("meta"):
                model = _ClipBundles(c)(kind, model_id).model
            act = tower_activation(model)
            if kind == "clip":
                assert model_id.endswith("/openai") and uses_quick_gelu(model_id)
                assert act == "QuickGELU", f"{preset} {size} {kind}: {act}"
                seen += 1
            else:
                assert "QuickGELU" not in act, f"{preset} {size} {kind}: {act}"
    assert seen == 4  # odise, odise-mame: captioner + class head


def test_quick_gelu_follows_the_tags_pretrained_config():
    from modise.model.image_encoders import uses_quick_gelu

    assert uses_quick_gelu("ViT-L-14-336/openai") and uses_quick_gelu("ViT-B-16/openai") and uses_quick_gelu(None)
    assert not uses_quick_gelu("ViT-B-16/laion2b_s34b_b88k")
    assert not uses_quick_gelu("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")


def test_the_built_models_towers_and_inspect_say_quick_gelu(odise):
    from modise.model.benchmark import inspect_model

    towers = inspect_model(odise)["clip_towers"]
    assert [t["part"] for t in towers] == ["captioner", "class_head"]
    assert all(t["activation"] == "QuickGELU" and t["weights_need_quick_gelu"] for t in towers)
    x = torch.linspace(-3, 3, 7)
    act = next(m.mlp.gelu for m in odise.captioner.image_encoder.visual.modules() if hasattr(getattr(m, "mlp", None), "gelu"))
    assert torch.allclose(act(x), x * torch.sigmoid(1.702 * x))  # QuickGELU (open_clip 2.0.2 model.py)


# ------------------------------------------------------------------ 2. one CLIP-ensemble rule
@pytest.mark.parametrize("size", ["tiny", "full"])
def test_the_clip_ensemble_is_on_for_every_preset_with_a_clip_style_encoder(size):
    from modise.model.clip_ensemble import has_clip_encoder

    for preset in PRESETS:
        c = load_preset(preset, size)
        assert c.inference.clip_ensemble == has_clip_encoder(c) == (preset in CLIP_FAMILY), preset
        if preset in CLIP_FAMILY:  # ODISE's PoolingCLIPHead weights (odise_with_label.py:31-32)
            assert (c.inference.ensemble_alpha, c.inference.ensemble_beta) == (0.3, 0.7)


def test_the_ensemble_is_inference_only_and_switched_by_the_config(odise):
    images = torch.rand(1, 3, 128, 128)
    on = odise.inference(images)[0]
    off_cfg = odise.config.model_copy(update={"inference": odise.config.inference.model_copy(update={"clip_ensemble": False})})
    on_cfg, odise.config = odise.config, off_cfg
    try:
        off = odise.inference(images)[0]
    finally:
        odise.config = on_cfg
    assert "clip_ensemble" in odise.extras
    assert on["sem_seg"].shape == off["sem_seg"].shape and not torch.allclose(on["sem_seg"], off["sem_seg"])


def test_a_model_without_clip_refuses_the_ensemble_in_one_sentence():
    from modise.errors import ModiseError

    with pytest.raises(ModiseError, match="needs a CLIP-style class head or captioner"):
        build_model("m2f-sd", "tiny", overrides={"inference": {"clip_ensemble": True}})


def test_report_reads_a_runs_evaluation_with_or_without_the_ensemble(tmp_path):
    import json

    from modise.engine.evaluation import write_report

    def metrics(pq):
        return {"thresholds": [0.5], "pq": [pq], "rq": [pq], "sq": [80.0], "ap": [10.0], "dice": 40.0,
                "best": {"threshold": 0.5, "pq": pq, "rq": pq, "sq": 80.0, "ap": 10.0}}

    for k in range(2):
        for name, m in (("odise", {**metrics(50.0 + k), "clip_ensemble": True, "without_clip_ensemble": metrics(30.0 + k)}),
                        ("m2f-sd", {**metrics(20.0 + k), "clip_ensemble": False})):
            (tmp_path / name / f"fold{k}").mkdir(parents=True)
            (tmp_path / name / f"fold{k}" / "metrics.json").write_text(json.dumps(m))
    runs = [tmp_path / "m2f-sd", tmp_path / "odise"]
    pq = {}
    for ens in (None, True, False):
        res = write_report(runs, tmp_path / f"T{ens}", clip_ensemble=ens)
        pq[ens] = {r["variant"]: r["PQ_t"]["mean"] for r in res["variants"]}
    assert pq[None] == pq[True] == {"m2f-sd": 20.5, "odise": 50.5}
    assert pq[False] == {"m2f-sd": 20.5, "odise": 30.5}  # m2f-sd has one evaluation: the same row
    assert "CLIP ensemble: off" in (tmp_path / "TFalse" / "report.md").read_text()


# ------------------------------------------------------------------ 3. Stable Diffusion v1-3
def test_sd_presets_default_to_sd_v1_3_and_mame_presets_to_mame():
    for preset in ("m2f-sd", "odise", "odise-biomedclip"):
        for size in ("full", "tiny"):
            assert load_preset(preset, size).diffusion.model_id == "CompVis/stable-diffusion-v1-3"  # ODISE ldm.py:82
    for preset in ("odise-mame", "m-odise"):
        assert load_preset(preset, "full").diffusion.model_id == "Likalto4/fusion_healthy"  # MAM-E, from SD 1.5
    sd15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert load_preset("odise", "full", {"diffusion": {"model_id": sd15}}).diffusion.model_id == sd15  # an override


# ------------------------------------------------------------------ 4. size divisibility
def test_diffusion_presets_pad_to_64_and_swin_to_32():
    for preset in PRESETS:
        for size in ("full", "tiny"):
            assert load_preset(preset, size).size_divisibility == (64 if preset in DIFFUSION_PRESETS else 32), preset


def _detectron2_image_list(images: torch.Tensor, d: int) -> torch.Tensor:
    """detectron2 ImageList.from_tensors(size_divisibility=d, pad_value=0): max size rounded up, bottom/right."""
    h, w = images.shape[-2:]
    out = torch.zeros(*images.shape[:-2], (h + d - 1) // d * d, (w + d - 1) // d * d)
    out[..., :h, :w] = images
    return out


def test_pad_is_detectron2s_image_list_and_mask2formers_target_padding(odise):
    x = torch.rand(2, 3, 128, 160)
    masks = torch.rand(3, 128, 160) > 0.5
    padded, targets = odise.pad(x, [{"labels": torch.tensor([0, 1, 0]), "masks": masks}])
    assert padded.shape == (2, 3, 128, 192) and torch.equal(padded, _detectron2_image_list(x, 64))
    assert targets[0]["masks"].shape == (3, 128, 192) and targets[0]["masks"].dtype == torch.bool
    assert torch.equal(targets[0]["masks"][:, :, :160], masks) and not targets[0]["masks"][:, :, 160:].any()
    assert odise.pad(torch.rand(1, 3, 128, 192)).shape == (1, 3, 128, 192)


def test_the_pipeline_feeds_the_model_images_padded_to_its_divisibility(odise):
    import numpy as np

    from modise.pipeline import ModisePipeline

    seen = []
    handle = odise.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        res = ModisePipeline(odise, device="cpu")([np.random.default_rng(0).random((128, 160), dtype=np.float32)])
    finally:
        handle.remove()
    assert seen == [(128, 192)] and res[0].ids.shape == (128, 160)


# ------------------------------------------------------------------ 7. CLIP preprocessing
def test_clip_preprocess_is_torchvision_resize_without_antialias_centre_crop_normalise():
    """ODISE: open_clip's Resize(bicubic) + CenterCrop + Normalize on tensors under torchvision 0.14.1,
    where tensor resize's antialias=None means no antialias (clip.py:94)."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

    from modise.model.image_encoders import OPENAI_MEAN, OPENAI_STD, clip_preprocess

    torch.manual_seed(0)
    x = torch.rand(2, 3, 150, 97)
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    ref = Normalize(OPENAI_MEAN, OPENAI_STD)(CenterCrop(32)(Resize(32, InterpolationMode.BICUBIC, antialias=False)(x)))
    got = clip_preprocess(x, 32, mean, std)
    assert got.shape == ref.shape == (2, 3, 32, 32)
    assert torch.allclose(got, ref, atol=1e-5)
    antialiased = Normalize(OPENAI_MEAN, OPENAI_STD)(CenterCrop(32)(Resize(32, InterpolationMode.BICUBIC, antialias=True)(x)))
    assert (got - antialiased).abs().max() > 0.1  # the difference the original's behaviour pins


# ------------------------------------------------------------------ 10. m2f-swinl load report
def test_m2f_swinl_load_says_the_expected_key_differences_in_one_line(tmp_path, capfd):
    from safetensors.torch import load_file, save_file
    from test_model_m2f_swinl import _tiny_mask2former

    from modise.model.swin_backbone import build_swin

    _tiny_mask2former().save_pretrained(tmp_path / "m2f")
    path = tmp_path / "m2f" / "model.safetensors"
    sd = load_file(str(path))
    enc = "model.pixel_level_module.encoder."
    # what a converted COCO checkpoint holds beyond transformers' model: Swin's position index buffers, the final norm
    sd[enc + "encoder.layers.0.blocks.0.attention.self.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    sd[enc + "layernorm.weight"], sd[enc + "layernorm.bias"] = torch.ones(256), torch.zeros(256)
    sd["model.something_else.weight"] = torch.zeros(3)
    save_file(sd, str(path), metadata={"format": "pt"})
    capfd.readouterr()
    build_swin(str(tmp_path / "m2f"), "full", random_weights=False)
    err = capfd.readouterr().err
    assert "MISSING" not in err and "UNEXPECTED" not in err and "LOAD REPORT" not in err
    line = [l for l in err.splitlines() if "Mask2Former loaded" in l]
    assert len(line) == 1 and "3 keys differ as expected" in line[0]
    assert "1 unexpected keys (e.g. model.something_else.weight)" in line[0]  # anything else is named
