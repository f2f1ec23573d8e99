"""ModisePipeline: the one owner of a trained model's inference (resize, pad, forward, Mask2Former's
post-processing order, PanopticResult written through the panoptic writer), and batched ``predict``."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modise.data.panoptic import Category, PanopticFolderWriter, read_id_png
from modise.errors import ModiseError
from modise.model.config import PRESETS, InferenceConfig
from modise.model.inference import postprocess, to_output_size
from modise.pipeline import ModisePipeline, PanopticResult, resized_shape

CATS = [Category(1, "benign", 1), Category(2, "malignant", 1)]


def _settings(object_mask_threshold: float, overlap_threshold: float, topk: int) -> InferenceConfig:
    return InferenceConfig(object_mask_threshold=object_mask_threshold, overlap_threshold=overlap_threshold,
                           instances_per_image=topk)


# Reference versions: literal ports of Mask2Former's three inferences on all Q masks at once
# (facebookresearch/Mask2Former mask2former/maskformer_model.py:280-284, 286-342, 344-380), what
# ``postprocess`` must equal without holding the Q full-size masks.
def semantic_inference(cls: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """maskformer_model.py:280-284: cls [Q,K+1], masks [Q,H,W] logits -> [K,H,W]."""
    return torch.einsum("qc,qhw->chw", cls.softmax(-1)[..., :-1], masks.sigmoid())


def panoptic_inference(cls, masks, categories, object_mask_threshold, overlap_threshold):
    """maskformer_model.py:286-342 -> (segment ids [H,W] long, [{id, label, score, isthing}])."""
    scores, labels = cls.softmax(-1).max(-1)
    prob = masks.sigmoid()
    keep = labels.ne(cls.shape[-1] - 1) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], prob[keep]
    pan = torch.zeros(masks.shape[-2:], dtype=torch.long)
    segments, stuff = [], {}
    if cur_masks.shape[0] == 0:
        return pan, segments
    cur_mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    for k in range(cur_classes.shape[0]):
        label = int(cur_classes[k])
        isthing = bool(categories[label].isthing)
        mask_area = int((cur_mask_ids == k).sum())
        original_area = int((cur_masks[k] >= 0.5).sum())
        mask = (cur_mask_ids == k) & (cur_masks[k] >= 0.5)
        if mask_area > 0 and original_area > 0 and int(mask.sum()) > 0:
            if mask_area / original_area < overlap_threshold:
                continue
            if not isthing:
                if label in stuff:
                    pan[mask] = stuff[label]
                    continue
                stuff[label] = len(segments) + 1
            pan[mask] = len(segments) + 1
            segments.append({"id": len(segments) + 1, "label": label, "score": float(cur_scores[k]), "isthing": isthing})
    return pan, segments


def instance_inference(cls, masks, categories, topk):
    """maskformer_model.py:344-380 (panoptic on: things only) -> masks [N,H,W] bool, labels, scores, best first."""
    q, k = cls.shape[0], cls.shape[-1] - 1
    scores = cls.softmax(-1)[:, :-1]
    labels = torch.arange(k).unsqueeze(0).repeat(q, 1).flatten(0, 1)
    top, idx = scores.flatten(0, 1).topk(min(topk, q * k), sorted=False)
    labels, m = labels[idx], masks[idx // k]
    thing = torch.tensor([bool(categories[int(lab)].isthing) for lab in labels], dtype=torch.bool)
    top, labels, m = top[thing], labels[thing], m[thing]
    binm = (m > 0).float()
    final = top * (m.sigmoid().flatten(1) * binm.flatten(1)).sum(1) / (binm.flatten(1).sum(1) + 1e-6)
    order = final.argsort(descending=True)
    return {"masks": (m > 0)[order], "labels": labels[order], "scores": final[order]}


def test_resize_follows_resize_shortest_edge():
    # detectron2 ResizeShortestEdge(1024, max_size=2560), ODISE's test resize
    assert resized_shape(2000, 1000, 1024, 2560) == (2048, 1024)
    assert resized_shape(3000, 1000, 1024, 2560) == (2560, 853)  # longest capped: scale 2560/3000
    assert resized_shape(100, 100, 128, 320) == (128, 128)


def test_masks_go_to_the_original_size_before_panoptic_inference():
    """Mask2Former (maskformer_model.py:239-242): crop + resize the mask logits, then infer. A one-pixel
    wide low-res stripe becomes a full stripe at the output size, not a nearest-upsampled id map."""
    torch.manual_seed(0)
    q, k = 3, len(CATS)
    cls = torch.full((q, k + 1), -5.0)
    cls[0, 0] = cls[1, 1] = 5.0  # queries 0, 1 confident; query 2 void
    masks = torch.full((q, 8, 8), -6.0)  # logits at 1/4 of a 32x32 padded input
    masks[0, :, :3] = 6.0
    masks[1, :, 3:5] = 6.0
    out = postprocess(cls, masks, (32, 32), (20, 24), (50, 60), CATS, _settings(0.5, 0.8, 100))
    pan, segs = out["panoptic_seg"]
    assert pan.shape == (50, 60) and out["sem_seg"].shape == (k, 50, 60)
    assert out["instances"]["masks"].shape[1:] == (50, 60)
    want = to_output_size(masks, (32, 32), (20, 24), (50, 60))
    assert want.shape == (q, 50, 60)
    ref_ids = (want[:2].sigmoid() * 1.0).argmax(0)  # both scores ~1: the argmax of the resized masks
    for s in segs:
        q_idx = s["label"]
        assert torch.equal(pan == s["id"], (ref_ids == q_idx) & (want[q_idx].sigmoid() >= 0.5))
        assert s["area"] == int((pan == s["id"]).sum()) > 0
    # random logits: inference at the network size resized afterwards (modise before) differs from this order
    rnd = torch.randn(q, 8, 8) * 4
    early = postprocess(cls, rnd, (32, 32), (20, 24), (47, 61), CATS, _settings(0.5, 0.0, 100))["panoptic_seg"][0]
    crop = F.interpolate(rnd[None], (32, 32), mode="bilinear", align_corners=False)[0, :, :20, :24]
    late = panoptic_inference(cls, crop, CATS, 0.5, 0.0)[0]
    late = F.interpolate(late[None, None].float(), (47, 61), mode="nearest")[0, 0].long()
    assert early.shape == late.shape and not torch.equal(early, late)


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_chunked_postprocess_equals_the_three_inferences_on_all_masks(chunk):
    """postprocess never holds all Q full-size masks, yet gives what semantic / panoptic / instance
    inference give on all of them (Mask2Former's functions, applied to the resized masks)."""
    g = torch.Generator().manual_seed(1)
    q, k = 7, len(CATS)
    cls = torch.randn(q, k + 1, generator=g) * 3
    masks = torch.randn(q, 8, 10, generator=g) * 4
    sizes = ((32, 40), (30, 37), (61, 75))
    out = postprocess(cls, masks, *sizes, CATS, _settings(0.3, 0.5, 5), chunk=chunk)
    full = to_output_size(masks, *sizes)
    assert torch.allclose(out["sem_seg"], semantic_inference(cls, full), atol=1e-5)
    pan, segs = panoptic_inference(cls, full, CATS, 0.3, 0.5)
    assert torch.equal(out["panoptic_seg"][0], pan)
    assert [(s["id"], s["label"], s["score"]) for s in out["panoptic_seg"][1]] == [(s["id"], s["label"], s["score"]) for s in segs]
    inst = instance_inference(cls, full, CATS, 5)
    assert torch.equal(out["instances"]["labels"], inst["labels"]) and torch.equal(out["instances"]["masks"], inst["masks"])
    assert torch.allclose(out["instances"]["scores"], inst["scores"], atol=1e-6)
    none = postprocess(torch.full((q, k + 1), -9.0).index_fill(1, torch.tensor([k]), 9.0), masks, *sizes, CATS, _settings(0.3, 0.5, 5))
    assert none["panoptic_seg"][1] == [] and none["panoptic_seg"][0].shape == (61, 75)  # every query void


def test_panoptic_with_more_queries_than_a_byte_holds():
    """Over 256 kept queries the running argmax ids leave uint8 for int32: the same map as Mask2Former's."""
    g = torch.Generator().manual_seed(5)
    q, k = 300, len(CATS)
    cls = torch.randn(q, k + 1, generator=g) * 3
    cls[:, k] = -9.0  # no query void: all 300 kept
    masks = torch.randn(q, 8, 10, generator=g) * 4
    sizes = ((32, 40), (30, 37), (45, 52))
    out = postprocess(cls, masks, *sizes, CATS, _settings(0.0, 0.0, 5))
    pan, segs = panoptic_inference(cls, to_output_size(masks, *sizes), CATS, 0.0, 0.0)
    assert len(segs) > 0 and torch.equal(out["panoptic_seg"][0], pan)
    assert [(s["id"], s["label"]) for s in out["panoptic_seg"][1]] == [(s["id"], s["label"]) for s in segs]


@pytest.fixture(scope="module")
def pipe():
    from modise.model import build_model

    torch.manual_seed(0)
    model = build_model("m-odise", "tiny", categories=CATS)
    p = ModisePipeline(model, device="cpu")
    p.set_inference(object_mask_threshold=0.0, overlap_threshold=0.0)  # keep segments of an untrained model
    return p


def test_pipeline_reads_input_size_and_returns_original_size(pipe):
    assert pipe.config.input_size == 128  # tiny preset; what prediction reads
    s = pipe.settings()
    assert (s.image_size, s.max_size) == (128, 320)
    rng = np.random.default_rng(0)
    px = rng.random((90, 60)).astype(np.float32)
    (res,) = pipe([px])
    assert isinstance(res, PanopticResult)
    assert res.ids.shape == (90, 60) and res.sem_seg.shape == (2, 90, 60)
    assert res.instances.masks.shape[1:] == (90, 60)
    assert res.settings.object_mask_threshold == 0.0
    assert pipe([px], object_mask_threshold=0.9)[0].settings.object_mask_threshold == 0.9
    with pytest.raises(ModiseError, match="Unknown inference setting"):
        pipe([px], window_size=3)
    with pytest.raises(ModiseError, match="Invalid inference"):
        pipe.set_inference(object_mask_threshold="x")


def test_batch_does_not_change_results(pipe):
    rng = np.random.default_rng(1)
    images = [rng.random((128, 128)).astype(np.float32), rng.random((100, 140)).astype(np.float32),
              rng.random((128, 128)).astype(np.float32)]
    one = [pipe([im])[0] for im in images]
    three = pipe(images)
    for a, b in zip(one, three):
        np.testing.assert_allclose(a.sem_seg, b.sem_seg, atol=1e-4)
        assert (a.ids != b.ids).mean() < 1e-3


def test_save_load_and_write(pipe, tmp_path):
    pipe.set_inference(image_size=96)
    pipe.save_pretrained(tmp_path / "model")
    loaded = ModisePipeline.from_pretrained(tmp_path / "model", device="cpu", overlap_threshold=0.1)
    assert loaded.settings().image_size == 96 and loaded.config.inference.overlap_threshold == 0.1
    pipe.model.config = pipe.config.model_copy(update={"inference": pipe.config.inference.model_copy(update={"image_size": None})})
    px = np.random.default_rng(2).random((64, 80)).astype(np.float32)
    res = loaded([px])[0]
    writer = PanopticFolderWriter(tmp_path / "out", loaded.categories)
    ann = res.write(writer, {"id": 7, "file_name": "a.png"})
    writer.finish()
    pj = json.loads((tmp_path / "out" / "panoptic.json").read_text())
    assert pj["images"][0]["height"] == 64 and pj["images"][0]["width"] == 80
    assert np.array_equal(read_id_png(tmp_path / "out" / "panoptic" / ann["file_name"]), res.ids)
    with pytest.raises(ModiseError, match="does not exist"):
        ModisePipeline.from_pretrained(tmp_path / "nope")


def test_instance_scores_are_mask2formers_formula():
    """maskformer_model.py:344-380 gathers the top-k pairs' masks, then score = class prob x mean sigmoid
    inside the binary mask; things only. postprocess gathers per-query quality instead: the same numbers
    (masks given at the padded = image = output size, so no resize changes them)."""
    torch.manual_seed(3)
    cats = [Category(1, "a", 1), Category(2, "stuff", 0), Category(3, "b", 1)]
    cls, masks = torch.randn(5, 4), torch.randn(5, 9, 7) * 3
    out = postprocess(cls, masks, (9, 7), (9, 7), (9, 7), cats, _settings(0.8, 0.8, 6))["instances"]
    probs = cls.softmax(-1)[:, :-1]
    top, idx = probs.flatten().topk(6)
    ref = []
    for sc, i in zip(top.tolist(), idx.tolist()):
        q, lab = divmod(i, 3)
        if cats[lab].isthing:
            m = masks[q]
            b = (m > 0).float()
            ref.append((sc * float((m.sigmoid() * b).sum() / (b.sum() + 1e-6)), lab, m > 0))
    ref.sort(key=lambda r: -r[0])
    assert out["labels"].tolist() == [r[1] for r in ref]
    torch.testing.assert_close(out["scores"], torch.tensor([r[0] for r in ref]))
    assert all(torch.equal(a, r[2]) for a, r in zip(out["masks"], ref))


@pytest.fixture(scope="module")
def phantom_data(tmp_path_factory):
    from modise.data.phantoms import prepare_synthetic

    root = tmp_path_factory.mktemp("phantoms") / "data"
    prepare_synthetic(root, n=10, seed=0, size=64, quiet=True)
    return root


@pytest.mark.parametrize("preset", PRESETS)
def test_full_trains_and_tests_at_1024_tiny_stays_small(preset, phantom_data):
    """ODISE: 1024 LSJ crops, test shortest edge 1024, max 2560 (configs/common/data/coco_panoptic_semseg.py:46-71)."""
    from modise.engine.training.checks import check_train_config
    from modise.engine.training.config import TrainConfig
    from modise.model import load_preset

    assert load_preset(preset, "full").input_size == 1024 and load_preset(preset, "tiny").input_size == 128
    # the model config a run resolves: its input_size is the LSJ crop trained at
    assert check_train_config(TrainConfig(preset=preset, size="full", data=str(phantom_data), batch_size=1)).input_size == 1024
    assert check_train_config(TrainConfig(preset=preset, size="tiny", data=str(phantom_data), batch_size=1)).input_size == 128
    s = load_preset(preset, "full").inference_settings()  # what the pipeline reads (no full model is built)
    assert (s.image_size, s.max_size) == (1024, 2560)
