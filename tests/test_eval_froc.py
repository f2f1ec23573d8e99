"""FROC (per lesion class and over all lesions) equals MONAI's compute_froc_curve_data /
compute_froc_score on detections matched by a plain re-statement of the rule; the weighted
curve and AP (the bootstrap's) equal the unweighted ones on explicit copies; the sufficient
statistics give the evaluator's own PQ/RQ/SQ/AP/Dice at weight 1 (AP = COCOeval)."""

from __future__ import annotations

import numpy as np
import pytest
from monai.metrics.froc import compute_froc_curve_data, compute_froc_score
from test_eval_instances_ap import CATS, _evaluator, _panoptic_of, pycocotools_ap, random_case

from modise.engine.evaluation import PanopticEvaluator
from modise.engine.evaluation.cad import evaluator_stats
from modise.engine.evaluation.coco_ap import class_precision
from modise.engine.evaluation.froc import FROC_FPS, froc_at, froc_curve
from modise.engine.evaluation.coco_ap import weighted_precision
from modise.errors import ModiseError

THING_IDX = {c.id: i for i, c in enumerate(sorted(CATS, key=lambda c: c.id)) if c.isthing}


def reference_froc(items, iou_t=0.1, class_id=None, panoptic=False, centroid=False):
    """fp_probs, tp_probs, num_targets for one class id (None: all lesions), matched as the issue states it."""
    fp, tp, targets = [], [], 0
    for _, gt, segs, inst in items:
        if panoptic:
            ids, psegs = _panoptic_of(inst, gt.shape)
            dets = [{"category_id": s["category_id"], "score": s["score"], "mask": ids == s["id"]} for s in psegs]
        else:
            dets = []
            for cid in THING_IDX:  # top 100 per class, as AP keeps them
                mine = [d for d in inst if d["category_id"] == cid]
                order = sorted(range(len(mine)), key=lambda k: -mine[k]["score"])[:100]
                dets += [mine[k] for k in order]
        dets = [d for d in dets if d["category_id"] in THING_IDX]
        lesions = [s for s in segs if s["category_id"] in THING_IDX]
        if class_id is not None:
            lesions = [s for s in lesions if s["category_id"] == class_id]
        targets += len(lesions)
        taken = set()
        for d in sorted(dets, key=lambda d: -d["score"]):
            if class_id is not None and d["category_id"] != class_id:
                continue
            best, hit_any = None, False
            for j, s in enumerate(lesions):
                g = gt == s["id"]
                inter, union = (d["mask"] & g).sum(), (d["mask"] | g).sum()
                iou = inter / union if union else 0.0
                if centroid:
                    ys, xs = np.nonzero(d["mask"])
                    hit = ys.size > 0 and g[int(np.round(ys.mean())), int(np.round(xs.mean()))]
                else:
                    hit = iou >= iou_t
                if hit:
                    hit_any = True
                    if j not in taken and (best is None or iou > best[1]):
                        best = (j, iou)
            if best is not None:
                taken.add(best[0])
                tp.append(d["score"])
            elif not hit_any:
                fp.append(d["score"])
    return np.array(fp), np.array(tp), targets


@pytest.mark.parametrize("seed,panoptic,centroid", [(0, False, False), (1, False, False), (2, True, False), (3, False, True)])
def test_froc_equals_monai(seed, panoptic, centroid):
    items = random_case(seed, n_images=12)
    kw = {"froc_hit": "centroid"} if centroid else {}
    if panoptic:
        ev = PanopticEvaluator(CATS, **kw)
        for image_id, gt, segs, inst in items:
            ev.add(image_id, gt, segs, *_panoptic_of(inst, gt.shape))
    else:
        ev = _evaluator(items, **kw)
    m = ev.compute()
    assert m["froc_protocol"]["detections"] == ("panoptic" if panoptic else "instances")
    names = {c.id: c.name for c in CATS}
    checked = 0
    for cid in [*THING_IDX, None]:
        fp, tp, targets = reference_froc(items, class_id=cid, panoptic=panoptic, centroid=centroid)
        got = m["froc"][names[cid] if cid else "all"]
        if targets == 0:
            assert got["sensitivity"] is None and got["cpm"] is None
            continue
        fps, sens = compute_froc_curve_data(fp, tp, targets, len(items))
        assert np.allclose(got["sensitivity"], np.interp(FROC_FPS, fps[::-1], sens[::-1]), rtol=0, atol=1e-12)
        assert abs(got["cpm"] - compute_froc_score(fps, sens, FROC_FPS)) < 1e-12
        ours = froc_curve(np.r_[fp, tp], np.r_[np.zeros(fp.size, bool), np.ones(tp.size, bool)], targets, len(items))
        assert np.allclose(ours[0], fps, atol=1e-12) and np.allclose(ours[1], sens, atol=1e-12)
        checked += 1
    assert checked >= 2


def test_weighted_froc_and_ap_equal_explicit_copies():
    rng = np.random.default_rng(5)
    scores = rng.random(60)
    is_tp = rng.random(60) < 0.4
    w = rng.integers(0, 4, 60)
    fps, sens = froc_curve(scores, is_tp, 30, 7, w)
    rep = np.repeat(np.arange(60), w)
    ref = compute_froc_curve_data(np.repeat(scores[~is_tp], w[~is_tp]), np.repeat(scores[is_tp], w[is_tp]), 30, 7)
    assert np.allclose(fps, ref[0], atol=1e-12) and np.allclose(sens, ref[1], atol=1e-12)
    assert np.allclose(froc_at(fps, sens), np.interp(FROC_FPS, ref[0][::-1], ref[1][::-1]), atol=1e-12)
    # AP: copies next to each other in score order (distinct scores)
    order = np.argsort(-scores, kind="mergesort")
    q = weighted_precision(is_tp[order], w[order].astype(float), 25.0)
    rep = np.repeat(order, w[order])
    assert np.allclose(q, class_precision([scores[rep]], [is_tp[rep]], 25), atol=1e-12)


@pytest.mark.parametrize("panoptic", [False, True])
def test_sufficient_statistics_give_the_evaluators_numbers(panoptic):
    items = random_case(4, n_images=12)
    ev = _evaluator(items, ap_source="panoptic" if panoptic else "instances")
    m = ev.compute()
    for ti in (0, 3, 9):
        s = evaluator_stats(ev, ti, m["ap_source"]).metrics()
        ap, _ = ev.average_precision(ti)
        assert abs(s["ap"] - ap) < 1e-12
        if not panoptic:  # AP at weight 1 = COCOeval
            assert abs(s["ap"] - pycocotools_ap(items, ev.thresholds[ti])) < 1e-12
        for k in ("pq", "rq", "sq"):
            assert abs(100 * s[k] - m[k][ti]) < 1e-9
        assert abs(100 * s["dice"] - m["dice"]) < 1e-9


def test_froc_options_are_checked():
    with pytest.raises(ModiseError, match="hit rule"):
        PanopticEvaluator(CATS, froc_hit="box")
    with pytest.raises(ModiseError, match="FROC IoU"):
        PanopticEvaluator(CATS, froc_iou=0)
