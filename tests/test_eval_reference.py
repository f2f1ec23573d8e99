"""The evaluator against the trusted references: MONAI's compute_panoptic_quality (per image
and class, summed over the set) and pycocotools' COCOeval with iouThrs=[t], on random cases
with overlapping segments, empty images, images with only false positives and a class that
never appears in the ground truth."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from modise.data.panoptic import Category
from modise.engine.evaluation import DEFAULT_THRESHOLDS, PanopticEvaluator

CATS = [Category(1, "benign"), Category(2, "malignant"), Category(7, "calcification")]


def _paint(rng, h, w, n, cat_ids, start_id=1):
    """Random overlapping ellipses painted in order; ids whose pixels were all covered are dropped."""
    ids = np.zeros((h, w), dtype=np.int64)
    yy, xx = np.mgrid[:h, :w]
    cats = {}
    for k in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, h / 3), rng.uniform(2, w / 3)
        sid = start_id + 3 * k  # non-contiguous ids on purpose
        ids[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = sid
        cats[sid] = int(rng.choice(cat_ids))
    present = set(np.unique(ids).tolist()) - {0}
    segs = [{"id": s, "category_id": c} for s, c in cats.items() if s in present]
    rng.shuffle(segs)  # listing order differs from id order
    return ids, segs


def _perturb(rng, gt, gt_segs, cat_ids):
    """A prediction: shifted / grown copies of GT segments, some wrong classes, extra FPs."""
    h, w = gt.shape
    pred = np.zeros_like(gt)
    segs = []
    for s in gt_segs:
        if rng.random() < 0.25:
            continue  # missed lesion
        m = gt == s["id"]
        m = np.roll(m, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        if rng.random() < 0.5:
            m = m | np.roll(m, 1, axis=0) | np.roll(m, 1, axis=1)
        if rng.random() < 0.3:  # split in two pieces
            pid = 1000 + s["id"]
            pred[m & (np.arange(w)[None, :] < w // 2)] = pid
            pred[m & (np.arange(w)[None, :] >= w // 2)] = pid + 1
            new = [pid, pid + 1]
        else:
            pred[m] = 1000 + s["id"]
            new = [1000 + s["id"]]
        for pid in new:
            cat = s["category_id"] if rng.random() < 0.8 else int(rng.choice(cat_ids))
            segs.append({"id": pid, "category_id": cat, "score": float(np.round(rng.random(), 1))})
    fp_ids, fp_segs = _paint(rng, h, w, int(rng.integers(0, 3)), cat_ids, start_id=5000)
    pred[fp_ids > 0] = fp_ids[fp_ids > 0]
    segs += [dict(s, score=float(np.round(rng.random(), 1))) for s in fp_segs]
    present = set(np.unique(pred).tolist()) - {0}
    return pred, [s for s in segs if s["id"] in present]


def random_dataset(seed: int, n_images: int = 12, h: int = 40, w: int = 36):
    rng = np.random.default_rng(seed)
    gt_cats = [1, 2]  # category 7 only ever predicted: a class never in GT
    items = []
    for i in range(n_images):
        kind = i % 6
        if kind == 0:  # empty image, empty prediction
            gt, gs = np.zeros((h, w), np.int64), []
            pred, ps = np.zeros((h, w), np.int64), []
        elif kind == 1:  # only false positives
            gt, gs = np.zeros((h, w), np.int64), []
            pred, ps = _paint(rng, h, w, 3, [1, 2, 7], start_id=20)
            ps = [dict(s, score=float(rng.random())) for s in ps]
        else:
            gt, gs = _paint(rng, h, w, int(rng.integers(1, 6)), gt_cats)
            pred, ps = _perturb(rng, gt, gs, [1, 2, 7])
        items.append((100 - i, gt, gs, pred, ps))  # ids not in processing order
    return items


def monai_sums(items, thresholds):
    """(T, C, 4) summed [tp, fp, fn, iou_sum] from MONAI, per image and class."""
    torch = pytest.importorskip("torch")
    pqm = pytest.importorskip("monai.metrics.panoptic_quality")
    out = np.zeros((len(thresholds), len(CATS), 4))
    for _, gt, gs, pred, ps in items:
        gcat = {s["id"]: s["category_id"] for s in gs}
        pcat = {s["id"]: s["category_id"] for s in ps}
        for ci, cat in enumerate(CATS):
            g = np.where(np.isin(gt, [k for k, v in gcat.items() if v == cat.id]), gt, 0)
            p = np.where(np.isin(pred, [k for k, v in pcat.items() if v == cat.id]), pred, 0)
            for ti, t in enumerate(thresholds):
                r = pqm.compute_panoptic_quality(torch.as_tensor(p), torch.as_tensor(g), match_iou_threshold=float(t), output_confusion_matrix=True)
                out[ti, ci] += r.double().numpy()
    return out


def coco_ap(items, t):
    """pycocotools COCOeval segm AP with iouThrs=[t] (stats[0]: all areas, 100 dets)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for image_id, gt, gs, pred, ps in items:
        images.append({"id": image_id, "height": gt.shape[0], "width": gt.shape[1]})
        for s in gs:
            rle = mask_utils.encode(np.asfortranarray((gt == s["id"]).astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": s["category_id"], "segmentation": rle,
                         "area": float(mask_utils.area(rle)), "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0})
        for s in ps:
            rle = mask_utils.encode(np.asfortranarray((pred == s["id"]).astype(np.uint8)))
            dets.append({"image_id": image_id, "category_id": s["category_id"], "segmentation": rle, "score": s["score"]})
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c.id, "name": c.name} for c in CATS]}
        cgt.createIndex()
        cdt = cgt.loadRes(dets) if dets else COCO()
        ev = COCOeval(cgt, cdt, "segm")
        ev.params.iouThrs = np.array([t])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


def _evaluate(items, thresholds=None):
    ev = PanopticEvaluator(CATS, thresholds)
    for image_id, gt, gs, pred, ps in items:
        ev.add(image_id, gt, gs, pred, ps)
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pq_counts_match_monai(seed):
    items = random_dataset(seed)
    ev = _evaluate(items)
    ref = monai_sums(items, DEFAULT_THRESHOLDS)
    np.testing.assert_array_equal(ev.tp, ref[..., 0])
    np.testing.assert_array_equal(ev.fp, ref[..., 1])
    np.testing.assert_array_equal(ev.fn, ref[..., 2])
    np.testing.assert_allclose(ev.iou_sum, ref[..., 3], rtol=1e-6, atol=1e-6)
    # the DESIGN's aggregation from MONAI's sums
    m = ev.compute()
    tp, fp, fn, iou = (ref[..., k] for k in range(4))
    occurs = (tp + fp + fn)[0] > 0
    assert occurs[2] and (ev.n_gt[2] == 0)  # class 7 only predicted, still counted
    rq = tp / (tp + fp / 2 + fn / 2)
    sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0)
    np.testing.assert_allclose(m["pq"], 100 * (rq * sq)[:, occurs].mean(1), atol=1e-6)
    np.testing.assert_allclose(m["rq"], 100 * rq[:, occurs].mean(1), atol=1e-6)
    np.testing.assert_allclose(m["sq"], 100 * sq[:, occurs].mean(1), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_ap_matches_pycocotools(seed):
    items = random_dataset(seed)
    ev = _evaluate(items)
    for ti in (0, 3, 9, 17):  # 0.05, 0.2, 0.5, 0.9
        ours, _ = ev.average_precision(ti)
        ref = coco_ap(items, ev.thresholds[ti])
        assert ours is not None
        assert abs(100 * ours - 100 * ref) < 1e-6


def test_many_detections_and_score_ties_match_pycocotools():
    """More than 100 detections in one image (maxDets cut) and tied scores across images."""
    rng = np.random.default_rng(5)
    items = []
    for i in range(3):
        gt = np.zeros((30, 40), np.int64)
        gt[:15, :] = (np.arange(15 * 40).reshape(15, 40) // 4) + 1  # 150 GT segments
        gs = [{"id": int(k), "category_id": 1} for k in np.unique(gt) if k]
        pred = np.zeros_like(gt)
        pred[: 15 + i] = (np.arange((15 + i) * 40).reshape(15 + i, 40) // 5) + 1
        ps = [{"id": int(k), "category_id": 1, "score": float(rng.integers(0, 3)) / 2} for k in np.unique(pred) if k]
        items.append((i + 1, gt, gs, pred, ps))
    ev = _evaluate(items, [0.3, 0.5])
    for ti in range(2):
        ours, _ = ev.average_precision(ti)
        assert abs(ours - coco_ap(items, ev.thresholds[ti])) < 1e-8


def test_hand_worked_case():
    """One GT lesion (16 px), one prediction overlapping 8 px of it with 8 px outside: IoU = 8/24.
    A second prediction elsewhere is a false positive; a second GT lesion is missed."""
    gt = np.zeros((10, 10), np.int64)
    gt[0:4, 0:4] = 1  # 16 px, benign
    gt[8:10, 8:10] = 2  # 4 px, benign, missed
    pred = np.zeros_like(gt)
    pred[2:6, 0:4] = 5  # 16 px, 8 px overlap -> IoU 1/3
    pred[6:7, 6:7] = 9  # 1 px false positive
    gs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}]
    ps = [{"id": 5, "category_id": 1, "score": 0.9}, {"id": 9, "category_id": 1, "score": 0.5}]
    ev = PanopticEvaluator([Category(1, "benign")], [0.3, 0.5])
    ev.add(1, gt, gs, pred, ps)
    m = ev.compute()
    # t=0.3: TP 1, FP 1, FN 1 -> RQ = 1/2, SQ = 1/3, PQ = 1/6
    assert m["rq"][0] == pytest.approx(50.0)
    assert m["sq"][0] == pytest.approx(100 / 3, abs=1e-5)
    assert m["pq"][0] == pytest.approx(100 / 6, abs=1e-5)
    # t=0.5: nothing matches -> all zero; best is t=0.3
    assert m["pq"][1] == 0 and m["rq"][1] == 0
    assert m["best"]["threshold"] == 0.3
    # AP at 0.3: first detection TP (precision 1 up to recall 0.5), then FP -> 51 of 101 recall points at 1
    assert m["best"]["ap"] == pytest.approx(100 * 51 / 101)
    # Dice: 2*8 / (17 + 20)
    assert m["dice"] == pytest.approx(100 * 16 / 37)


def test_ties_pick_smallest_threshold_and_empty_set_is_undefined():
    gt = np.zeros((6, 6), np.int64)
    gt[:3, :3] = 1
    ev = PanopticEvaluator([Category(1, "a")], [0.2, 0.4, 0.6])
    ev.add("x", gt, [{"id": 1, "category_id": 1}], gt.copy(), [{"id": 1, "category_id": 1, "score": 1.0}])
    m = ev.compute()
    assert m["pq"] == [100.0, 100.0, 100.0] and m["best"]["threshold"] == 0.2
    empty = PanopticEvaluator([Category(1, "a")]).compute()
    assert empty["best"]["pq"] is None and empty["best"]["ap"] is None and empty["dice"] is None


def test_coco_tie_takes_the_last_gt_like_pycocotools():
    """A detection with equal IoU (2/6) to two GTs takes the later one, so the next detection,
    which only overlaps that GT, becomes a false positive: AP = 51/101 at t = 0.3."""
    gt = np.zeros((3, 4), np.int64)
    gt[0:2, 0:2], gt[0:2, 2:4] = 1, 2
    pred = np.zeros_like(gt)
    pred[0:2, 1:3], pred[0:2, 3] = 5, 6
    gs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}]
    ps = [{"id": 5, "category_id": 1, "score": 0.9}, {"id": 6, "category_id": 1, "score": 0.8}]
    items = [(1, gt, gs, pred, ps)]
    ev = _evaluate(items, [0.3])
    ours, _ = ev.average_precision(0)
    assert ours == pytest.approx(51 / 101) and ours == pytest.approx(coco_ap(items, 0.3))


def test_low_threshold_uses_hungarian_like_monai():
    """IoUs A-P 0.45, A-Q 0.4, B-P 0.4: greedy would pair A-P only; the summed-IoU assignment
    pairs A-Q and B-P (2 TPs at t=0.3), as MONAI does. Checked on random dense float32 matrices."""
    torch = pytest.importorskip("torch")
    pqm = pytest.importorskip("monai.metrics.panoptic_quality")
    from modise.engine.evaluation.matching import _pq_sweep

    thr = np.asarray(DEFAULT_THRESHOLDS)
    hand = np.array([[0.45, 0.4], [0.4, 0.0]], np.float32)
    rng = np.random.default_rng(0)
    mats = [hand] + [(rng.random((rng.integers(1, 6), rng.integers(1, 6))) * (rng.random() < 0.5 or 0.6)).astype(np.float32) for _ in range(40)]
    for m in mats:
        m[m < 0.1] = 0
        tp, iou = np.zeros(thr.size, np.int64), np.zeros(thr.size)
        _pq_sweep(m, thr.astype(np.float32), thr >= 0.5, tp, iou)
        for ti, t in enumerate(thr):
            piou, ptrue, _ = pqm._get_paired_iou(torch.as_tensor(m.copy()), float(t))
            assert tp[ti] == len(ptrue)
            assert iou[ti] == pytest.approx(float(np.asarray(piou, dtype=np.float64).sum()), abs=1e-6)
    tp, iou = np.zeros(1, np.int64), np.zeros(1)
    _pq_sweep(hand, np.float32([0.3]), np.array([False]), tp, iou)
    assert tp[0] == 2


def test_listed_segment_without_pixels_is_ignored_in_memory_but_strict_refuses():
    from modise.errors import ModiseError

    gt = np.zeros((8, 8), np.int64)
    gt[:4, :4] = 3
    pred = gt.copy()
    gs = [{"id": 3, "category_id": 1}, {"id": 4, "category_id": 2}]  # 4 vanished (e.g. resized away)
    ps = [{"id": 9, "category_id": 1, "score": 0.2}, {"id": 3, "category_id": 1, "score": 0.9}]
    ev = PanopticEvaluator(CATS)
    ev.add(1, gt, gs, pred, ps)
    m = ev.compute()
    assert m["pq"][0] == 100.0 and m["best"]["ap"] == pytest.approx(100.0)
    assert ev.n_gt.tolist() == [1, 0, 0]
    with pytest.raises(ModiseError, match="image 1: ground-truth segments_info lists segment id 4 but the PNG has no pixel"):
        PanopticEvaluator(CATS, strict=True).add(1, gt, gs, pred, ps)
