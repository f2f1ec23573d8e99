"""Tiny M-ODISE end to end: shapes, padding/cropping, gradients, overfitting, checkpoints, loading."""

from __future__ import annotations

import pytest
import torch

from modise.data.panoptic import Category
from modise.errors import MissingWeightsError
from modise.model import MODISE, build_model

CATS = [Category(1, "benign", 1, ["benign lesion", "benign mass"]), Category(2, "malignant", 1, [])]


@pytest.fixture(scope="module")
def model() -> MODISE:
    return build_model("m-odise", "tiny", categories=CATS)


def _targets(h: int, w: int):
    a = torch.zeros(1, h, w)
    a[0, 16:80, 24:96] = 1
    b = torch.zeros(2, h, w)
    b[0, 100:160, 120:200] = 1
    b[1, 20:60, 20:60] = 1
    return [{"labels": torch.tensor([1]), "masks": a}, {"labels": torch.tensor([0, 1]), "masks": b}]


def _images(h: int = 192, w: int = 224) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, h, w, generator=g) * 0.3
    for t, img in zip(_targets(h, w), x):
        img[0] += t["masks"].sum(0) * 0.6  # bright lesions on a dark breast
    return x.repeat(1, 3, 1, 1)


def test_forward_shapes_and_contract(model):
    out = model(_images())
    q, k = model.config.num_queries, len(CATS)
    assert out["pred_logits"].shape == (2, q, k + 1)
    assert out["pred_masks"].shape == (2, q, 192 // 4, 224 // 4)
    assert len(out["aux_outputs"]) == model.config.dec_layers
    assert all(a["pred_masks"].shape == out["pred_masks"].shape for a in out["aux_outputs"])
    losses = model.loss(out, _targets(192, 224))
    assert {"loss", "loss_ce", "loss_mask", "loss_dice", "loss_ce_0"} <= set(losses)
    assert torch.isfinite(losses["loss"])
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.rand(1, 3, 100, 96))


def test_gradients_reach_captioner_and_projections_but_no_frozen_weight(model):
    model.train()
    assert not model.backbone.extractor.training and not model.captioner.image_encoder.training
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        model.captioner.gate.fill_(0.5)  # at gate 0 only the gate itself gets a gradient
        model.captioner.time_gate.fill_(0.5)
    try:
        model.loss(model(_images()), _targets(192, 224))["loss"].backward()
        for name in ("captioner.gate", "captioner.project.linear.weight", "captioner.project.positional_embedding",
                     "captioner.time_gate", "backbone.projection.proj.0.conv1.0.weight", "backbone.projection.proj.7.conv3.0.weight",
                     "class_head.pooled.pool_proj.1.weight", "class_head.text_proj.weight", "class_head.null_embed"):
            g = dict(model.named_parameters())[name].grad
            assert g is not None and g.abs().sum() > 0, name
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert any(n.startswith("backbone.extractor.unet") for n in frozen) and any("image_encoder" in n for n in frozen)
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        trainable = {id(p) for p in model.trainable_parameters()}
        assert not any(id(p) in trainable for p in model.backbone.extractor.parameters())
    finally:
        with torch.no_grad():
            model.captioner.gate.zero_()
            model.captioner.time_gate.zero_()
        model.zero_grad(set_to_none=True)


def test_masks_land_in_place_after_padding_and_resizing():
    # Overfit a bright square, then check that inference on a non-/32 input puts it back in place.
    torch.manual_seed(0)
    m = build_model("m2f-sd", "tiny", categories=CATS[:1], overrides={"loss": {"num_points": 1024}})
    h, w = 75, 85  # not multiples of 32: inference pads to 96x96 and crops
    x = torch.full((1, 3, h, w), 0.2)
    x[..., 20:50, 30:70] = 0.9
    mask = torch.zeros(1, 96, 96)
    mask[0, 20:50, 30:70] = 1
    xp = torch.nn.functional.pad(x, (0, 96 - w, 0, 96 - h))
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=3e-3)
    for _ in range(40):
        loss = m.loss(m(xp), [{"labels": torch.tensor([0]), "masks": mask}])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = m.inference(x, image_sizes=[(h, w)], output_sizes=[(2 * h, 2 * w)],
                      settings=m.config.inference.replace(object_mask_threshold=0.3))[0]
    sem = res["sem_seg"]
    assert sem.shape == (1, 2 * h, 2 * w)
    inside, outside = sem[0, 45:95, 65:135].mean(), torch.cat([sem[0, :30].flatten(), sem[0, 110:].flatten()]).mean()
    assert inside > 0.5 > outside
    ids, segs = res["panoptic_seg"]
    assert ids.shape == (2 * h, 2 * w) and segs and segs[0]["category_id"] == 1
    seg = ids == segs[0]["id"]
    ys, xs = seg.nonzero(as_tuple=True)
    assert abs(ys.float().mean() - 70) < 8 and abs(xs.float().mean() - 100) < 8
    inst = res["instances"]
    assert inst["masks"].shape[1:] == (2 * h, 2 * w) and inst["masks"].dtype == torch.bool


def test_loss_decreases_when_overfitting_two_images():
    torch.manual_seed(0)
    m = build_model("m-odise", "tiny", categories=CATS, overrides={"loss": {"num_points": 1024}})
    x, t = _images(), _targets(192, 224)
    x, t = x[..., :128, :128], [{"labels": d["labels"], "masks": d["masks"][:, :128, :128]} for d in t]
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = m.loss(m(x), t)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_checkpoint_has_only_trainables_and_round_trips(model, tmp_path):
    sd = model.trainable_state_dict()
    names = dict(model.named_parameters())
    assert sd and all(names[k].requires_grad for k in sd)
    assert not any(k.startswith(("backbone.extractor.", "captioner.image_encoder", "extras.")) for k in sd)
    assert sum(v.numel() for v in sd.values()) == model.parameter_counts()["trainable"]
    model.save_pretrained(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["categories.json", "config.yaml", "model.safetensors"]
    other = MODISE.from_pretrained(tmp_path / "run")
    assert [c.name for c in other.categories] == ["benign", "malignant"]
    assert other.config == model.config
    x = _images()
    model.eval(), other.eval()
    with torch.no_grad():
        a, b = model(x), other(x)
    assert torch.equal(a["pred_masks"], b["pred_masks"]) and torch.equal(a["pred_logits"], b["pred_logits"])
    other.load_trainable_state_dict(sd)  # also loads a plain trainable dict
    model.train()


def test_diffusers_parts_saved_to_a_folder_load_by_path(tmp_path):
    from modise.model.loading import load_sd_parts
    from modise.model.stable_diffusion import build_random_text_encoder, build_random_unet, build_random_vae

    vae, unet, text = build_random_vae("tiny"), build_random_unet("tiny"), build_random_text_encoder("tiny")
    vae.save_pretrained(tmp_path / "sd" / "vae")
    unet.save_pretrained(tmp_path / "sd" / "unet")
    text.save_pretrained(tmp_path / "sd" / "text_encoder")
    v2, u2, t2 = load_sd_parts(str(tmp_path / "sd"), "full", random_weights=False)
    for a, b in ((vae, v2), (unet, u2), (text, t2)):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    m = build_model("m2f-sd", "full", overrides={"diffusion": {"model_id": str(tmp_path / "sd"), "projection_dim": 32},
                                                 "hidden_dim": 64, "num_queries": 8, "dec_layers": 2, "enc_layers": 1,
                                                 "nheads": 4, "dim_feedforward": 64, "enc_feedforward": 64})
    assert m.backbone.extractor.tap_channels == [32, 32, 128, 96, 64, 64, 32, 32]  # read from the loaded (tiny) modules
    assert m(torch.rand(1, 3, 128, 128))["pred_masks"].shape == (1, 8, 32, 32)


def test_missing_hub_id_offline_is_one_sentence(tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        build_model("m2f-sd", "full", overrides={"diffusion": {"model_id": "nobody/no-such-model"}})
    msg = str(e.value)
    assert "nobody/no-such-model" in msg and msg.count(". ") == 0 and "\n" not in msg
    with pytest.raises(MissingWeightsError):
        build_model("odise", "full", random_weights=False,
                    overrides={"diffusion": {"model_id": str(tmp_path / "missing")}})
