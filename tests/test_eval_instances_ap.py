"""AP on instance predictions (detectron2's protocol for Mask2Former / ODISE): overlapping
masks, top-100 per image, thing classes only, must equal pycocotools' COCOeval (iouThrs=[t],
100 dets, all areas) on the same instances; the folder format (PRED/instances.json) and the
``--ap-source`` switch with its fallback."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modise.data.panoptic import Category, write_id_png
from modise.engine.evaluation import PanopticEvaluator, evaluate_folders
from modise.data.coco_records import Instances, encode_rle, instance_records
from modise.engine.evaluation.instances import INSTANCES_JSON
from modise.errors import ModiseError

# 3 is stuff (not in the instance GT), 7 a thing never in the GT
CATS = [Category(1, "benign"), Category(2, "malignant"), Category(3, "tissue", isthing=0), Category(7, "calcification")]
THINGS = [1, 2, 7]


def _ellipse(rng, h, w):
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def random_case(seed: int, n_images: int = 10, h: int = 40, w: int = 36):
    """GT panoptic maps (thing lesions + a stuff segment) and, per image, instance predictions
    whose masks overlap each other: shifted/grown copies of GT lesions (several per lesion),
    wrong classes, false positives, empty masks, tied scores; one image has 150 instances."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_images):
        gt = np.zeros((h, w), np.int64)
        segs = []
        if i % 5 != 0:  # every fifth image has no GT
            for k in range(int(rng.integers(1, 5))):
                sid = 2 + 3 * k
                gt[_ellipse(rng, h, w)] = sid
                segs.append({"id": sid, "category_id": int(rng.choice([1, 2, 3]))})
        present = set(np.unique(gt).tolist())
        segs = [s for s in segs if s["id"] in present]
        rng.shuffle(segs)
        inst = []
        for s in segs:
            for _ in range(int(rng.integers(0, 4))):  # overlapping duplicates of one lesion
                m = np.roll(gt == s["id"], (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
                if rng.random() < 0.4:
                    m = m | np.roll(m, 2, axis=0)
                cat = s["category_id"] if rng.random() < 0.8 else int(rng.choice(THINGS + [3]))
                inst.append({"category_id": cat, "score": float(np.round(rng.random(), 1)), "mask": m})
        for _ in range(150 if i == 3 else int(rng.integers(0, 4))):  # false positives (overlapping)
            m = _ellipse(rng, h, w) if rng.random() < 0.9 else np.zeros((h, w), bool)
            inst.append({"category_id": int(rng.choice(THINGS)), "score": float(np.round(rng.random(), 2)), "mask": m})
        items.append((50 - i, gt, segs, inst))
    return items


def _coco_eval(items, t: float, area_rng=None):
    """COCOeval segm with iouThrs=[t] (and ``params.areaRng``), evaluated and accumulated. The instance
    GT holds thing segments only, as detectron2's instance annotations do; a GT's ``area`` is its pixel
    count (what COCOeval's area ranges read), a detection's is its mask's (``loadRes``)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    things = {c.id for c in CATS if c.isthing}
    images, anns, dets = [], [], []
    for image_id, gt, segs, inst in items:
        images.append({"id": image_id, "height": gt.shape[0], "width": gt.shape[1]})
        for s in segs:
            if s["category_id"] in things:
                rle = mask_utils.encode(np.asfortranarray((gt == s["id"]).astype(np.uint8)))
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": s["category_id"], "segmentation": rle,
                             "area": float(mask_utils.area(rle)), "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
        for d in inst:
            dets.append({"image_id": image_id, "category_id": d["category_id"], "score": d["score"], "segmentation": encode_rle(d["mask"])})
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in sorted(things)]}
        cgt.createIndex()
        ev = COCOeval(cgt, cgt.loadRes(dets), "segm")
        ev.params.iouThrs = np.array([t])
        if area_rng is not None:
            ev.params.areaRng = [list(r) for r in area_rng]
            ev.params.areaRngLbl = [f"range{k}" for k in range(len(area_rng))]
        ev.evaluate()
        ev.accumulate()
    return ev


def pycocotools_ap(items, t: float) -> float:
    """COCOeval segm with iouThrs=[t]: stats[0] (all areas, 100 dets)."""
    ev = _coco_eval(items, t)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    return float(ev.stats[0])


def pycocotools_ap_by_area(items, t: float, area_rng) -> list[float | None]:
    """COCOeval's AP (100 dets) for each area range [lo, hi] of ``area_rng``, as summarize averages it; None: -1."""
    prec = _coco_eval(items, t, area_rng).eval["precision"]  # (T, R, K, A, M)
    out = []
    for a in range(len(area_rng)):
        s = prec[:, :, :, a, -1]
        out.append(float(np.mean(s[s > -1])) if (s > -1).any() else None)
    return out


def _panoptic_of(inst, shape):
    """A panoptic map from the instances (what the panoptic output would keep): first wins."""
    ids = np.zeros(shape, np.int64)
    segs = []
    for k, d in enumerate(inst[:5]):
        free = d["mask"] & (ids == 0)
        if free.any():
            ids[free] = k + 1
            segs.append({"id": k + 1, "category_id": d["category_id"], "score": d["score"]})
    return ids, segs


def _evaluator(items, as_rle: bool = False, **kw) -> PanopticEvaluator:
    ev = PanopticEvaluator(CATS, **kw)
    for image_id, gt, segs, inst in items:
        pred, psegs = _panoptic_of(inst, gt.shape)
        recs = [{"category_id": d["category_id"], "score": d["score"], "segmentation": encode_rle(d["mask"])} for d in inst] if as_rle else inst
        ev.add(image_id, gt, segs, pred, psegs, instances=recs)
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instance_ap_equals_pycocotools_on_overlapping_masks(seed):
    items = random_case(seed)
    overlap = [(d1["mask"] & d2["mask"]).any() for *_, inst in items for d1, d2 in zip(inst, inst[1:])]
    assert any(overlap)  # the case really has overlapping instance masks
    ev = _evaluator(items)
    ev_rle = _evaluator(items, as_rle=True)
    for ti in (0, 3, 9, 17):  # t = 0.05, 0.2, 0.5, 0.9
        ours, per_class = ev.average_precision(ti, "instances")
        assert abs(ours - pycocotools_ap(items, ev.thresholds[ti])) < 1e-12
        assert ev_rle.average_precision(ti, "instances")[0] == ours  # mask and RLE inputs agree
        assert per_class[2] is None  # stuff: not in the instance GT
    m = ev.compute()
    assert m["ap_source"] == "instances" and "ap_source_note" not in m
    b = m["thresholds"].index(m["best"]["threshold"])
    assert m["best"]["ap"] == pytest.approx(100 * pycocotools_ap(items, m["best"]["threshold"]), abs=1e-9)
    assert m["ap"][b] == m["best"]["ap"] and len(m["ap"]) == 18
    assert set(m["best"]["ap_by_source"]) == {"instances", "panoptic"}


@pytest.mark.parametrize("seed,spacing", [(0, None), (1, None), (2, 1.1), (4, 1.1)])
def test_ap_by_lesion_size_equals_pycocotools_area_ranges(seed, spacing):
    """AP per size bin = COCOeval with params.areaRng set to the bin's pixel-area range: terciles of the
    lesion areas (no spacing), or the 10 / 20 mm equivalent diameters at one spacing for every image."""
    from modise.engine.evaluation.cad import evaluator_stats

    items = random_case(seed, n_images=20)
    ev = _evaluator(items)
    stats = evaluator_stats(ev, 0, "instances", [spacing] * len(items))
    if spacing is None:
        lo, hi = stats.sizes.cuts
        assert not stats.sizes.mm
    else:
        lo, hi = (np.pi * (d / (2 * spacing)) ** 2 for d in (10.0, 20.0))  # equivalent diameter d mm in pixels
        assert stats.sizes.mm
    # bins are (lo, hi]; COCOeval's ranges are closed, so on integer pixel areas (lo, hi] = [floor(lo) + 1, hi]
    ranges = [[0, lo], [np.floor(lo) + 1, hi], [np.floor(hi) + 1, 1e10]]
    lesions_per_bin = [sum(int((b == k).sum()) for b in stats.size_bins) for k in range(3)]
    assert min(lesions_per_bin) >= 2, lesions_per_bin  # every bin holds lesions
    checked = 0
    for ti in (0, 3, 9, 17):  # t = 0.05, 0.2, 0.5, 0.9
        stats = evaluator_stats(ev, ti, "instances", [spacing] * len(items))
        ref = pycocotools_ap_by_area(items, ev.thresholds[ti], [[0, 1e10], *ranges])
        assert abs(stats.metrics()["ap"] - ref[0]) < 1e-12  # the whole range: the set's AP
        for b in range(3):
            ours = stats.metrics(size_bin=b)["ap"]
            assert (ours is None) == (ref[1 + b] is None), (ti, b, ours, ref)
            if ours is not None:
                assert abs(ours - ref[1 + b]) < 1e-12, (ti, b, ours, ref[1 + b])
                checked += ours > 0
    assert checked >= 6  # not all zero


def test_hand_worked_overlapping_instances():
    """Two instances of one lesion overlap each other: the better-scored one matches, the
    duplicate is a false positive; on the panoptic map the duplicate could not exist."""
    gt = np.zeros((10, 10), np.int64)
    gt[0:4, 0:4] = 1  # 16 px
    a = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True  # IoU 1
    b = np.zeros((10, 10), bool)
    b[0:4, 0:3] = True  # IoU 12/16, overlaps a
    ev = PanopticEvaluator([Category(1, "benign")], [0.5])
    ev.add(1, gt, [{"id": 1, "category_id": 1}], gt.copy(), [{"id": 1, "category_id": 1, "score": 0.9}],
           instances=[{"category_id": 1, "score": 0.6, "mask": b}, {"category_id": 1, "score": 0.9, "mask": a}])
    assert ev.average_precision(0, "instances")[0] == pytest.approx(1.0)  # TP first: precision 1 at every recall
    ev2 = PanopticEvaluator([Category(1, "benign")], [0.5])
    ev2.add(1, gt, [{"id": 1, "category_id": 1}], gt.copy(), [{"id": 1, "category_id": 1, "score": 0.5}],
            instances=[{"category_id": 1, "score": 0.9, "mask": b}, {"category_id": 1, "score": 0.6, "mask": a}])
    assert ev2.average_precision(0, "instances")[0] == pytest.approx(1.0)  # b (IoU .75) matches first
    ev3 = PanopticEvaluator([Category(1, "benign")], [0.8])
    ev3.add(1, gt, [{"id": 1, "category_id": 1}], gt.copy(), [{"id": 1, "category_id": 1, "score": 0.5}],
            instances=[{"category_id": 1, "score": 0.9, "mask": b}, {"category_id": 1, "score": 0.6, "mask": a}])
    # at t=0.8 the first (b) is a FP, a is TP at precision 1/2 -> 0.5 at all 101 recall points
    assert ev3.average_precision(0, "instances")[0] == pytest.approx(0.5)


def test_without_instances_falls_back_and_mixing_is_refused():
    items = random_case(4, n_images=3)
    ev = PanopticEvaluator(CATS)
    for image_id, gt, segs, inst in items:
        ev.add(image_id, gt, segs, *_panoptic_of(inst, gt.shape))
    m = ev.compute()
    assert m["ap_source"] == "panoptic" and "panoptic segments" in m["ap_source_note"]
    forced = _evaluator(items, ap_source="panoptic").compute()
    assert forced["ap_source"] == "panoptic" and "ap_source_note" not in forced and forced["best"]["ap"] == m["best"]["ap"]
    mixed = PanopticEvaluator(CATS)
    (i0, g0, s0, in0), (i1, g1, s1, in1) = items[:2]
    mixed.add(i0, g0, s0, *_panoptic_of(in0, g0.shape), instances=in0)
    mixed.add(i1, g1, s1, *_panoptic_of(in1, g1.shape))
    with pytest.raises(ModiseError, match="1 of 2 images"):
        mixed.compute()
    with pytest.raises(ModiseError, match="AP source"):
        PanopticEvaluator(CATS, ap_source="boxes")
    bad = PanopticEvaluator(CATS)
    with pytest.raises(ModiseError, match="is 3x3 but the image is 40x36"):
        bad.add(1, g0, s0, *_panoptic_of(in0, g0.shape), instances=[{"category_id": 1, "score": 0.5, "segmentation": encode_rle(np.ones((3, 3), bool))}])


def test_instance_records_from_a_model_result():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4], masks[1, 2:6], masks[2, 6:] = True, True, True  # 0 and 1 overlap
    inst = Instances(labels=np.array([1, 0, 1]), scores=np.array([0.9, 0.5, 0.2], np.float32), masks=masks.numpy())
    cats = [Category(4, "benign"), Category(9, "malignant")]
    recs = instance_records(inst, cats, image_id=12)
    assert [r["category_id"] for r in recs] == [9, 4, 9] and recs[0]["image_id"] == 12
    assert recs[1]["score"] == pytest.approx(0.5) and isinstance(recs[0]["segmentation"]["counts"], str)
    from pycocotools import mask as mask_utils

    back = mask_utils.decode({"size": recs[1]["segmentation"]["size"], "counts": recs[1]["segmentation"]["counts"].encode()})
    np.testing.assert_array_equal(back.astype(bool), masks[1].numpy())
    json.dumps(recs)  # JSON-ready


def _write_folder(root: Path, items, pred: bool, with_instances: bool = True) -> None:
    (root / "panoptic").mkdir(parents=True)
    images, anns, recs = [], [], []
    for image_id, gt, segs, inst in items:
        ids, s = _panoptic_of(inst, gt.shape) if pred else (gt, segs)
        name = f"im{image_id}.png"
        write_id_png(root / "panoptic" / name, ids)
        images.append({"id": image_id, "file_name": name, "height": gt.shape[0], "width": gt.shape[1]})
        anns.append({"image_id": image_id, "file_name": name, "segments_info": s})
        recs += [{"image_id": image_id, "category_id": d["category_id"], "score": d["score"], "segmentation": encode_rle(d["mask"])} for d in inst]
    (root / "panoptic.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [c.to_json() for c in CATS]}))
    if pred and with_instances:
        (root / INSTANCES_JSON).write_text(json.dumps(recs))


def test_folder_evaluation_reads_instances_json_and_ap_source(tmp_path):
    items = random_case(5, n_images=6)
    _write_folder(tmp_path / "gt", items, pred=False)
    _write_folder(tmp_path / "pred", items, pred=True)
    m = evaluate_folders(tmp_path / "gt", tmp_path / "pred", tmp_path / "E")
    assert m == json.loads(json.dumps(_evaluator(items).compute()))  # folder == in-memory
    assert m["ap_source"] == "instances"
    assert m["best"]["ap"] == pytest.approx(100 * pycocotools_ap(items, m["best"]["threshold"]), abs=1e-9)
    saved = json.loads((tmp_path / "E" / "metrics.json").read_text())
    assert saved["ap_source"] == "instances" and "AP on instances" in (tmp_path / "E" / "metrics.md").read_text()
    # --ap-source panoptic through the CLI
    from modise.cli import app

    res = CliRunner().invoke(app, ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--out",
                                   str(tmp_path / "P"), "--ap-source", "panoptic", "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads((tmp_path / "P" / "metrics.json").read_text())
    assert p["ap_source"] == "panoptic" and p["pq"] == m["pq"] and p["best"]["ap"] == m["best"]["ap_by_source"]["panoptic"]
    res = CliRunner().invoke(app, ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--out",
                                   str(tmp_path / "X"), "--ap-source", "boxes"])
    assert res.exit_code == 2 and not (tmp_path / "X").exists()
    # a PRED without instances.json: panoptic, and said so
    _write_folder(tmp_path / "pred2", items, pred=True, with_instances=False)
    m2 = evaluate_folders(tmp_path / "gt", tmp_path / "pred2", tmp_path / "E2")
    assert m2["ap_source"] == "panoptic" and m2["ap_source_note"] and m2["best"]["ap"] == p["best"]["ap"]
    # an instance pointing at an unknown image is named
    (tmp_path / "pred2" / INSTANCES_JSON).write_text(json.dumps([{"image_id": 999, "category_id": 1, "score": 1.0, "segmentation": {}}]))
    with pytest.raises(ModiseError, match="image_id 999"):
        evaluate_folders(tmp_path / "gt", tmp_path / "pred2", tmp_path / "E3")
    assert not (tmp_path / "E3").exists()
