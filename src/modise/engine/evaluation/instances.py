"""Instance predictions for AP, the way detectron2 scores Mask2Former / ODISE.

Mask2Former's ``instance_inference`` (mask2former/maskformer_model.py:344-380, inherited by
ODISE's odise/modeling/meta_arch/odise.py:365-369) keeps the top-100 (query, class) pairs of
an image, thing classes only when panoptic is on, each with its own binary mask (masks may
overlap) and score = class prob x mean mask prob inside the mask. ODISE turns it on
(configs/common/models/mask_generator_with_label.py:101-103: instance_on, test_topk_per_image
100) and scores it with detectron2's COCOEvaluator, tasks ("segm",)
(configs/common/data/coco_panoptic_semseg.py:79-83), which stores the instances as COCO
results (RLE ``segmentation``, ``score``, ``category_id``) and runs COCOeval on them. Here:

* :func:`modise.data.coco_records.instance_records` turns a prediction's instances into those
  records (what ``modise predict`` writes to ``instances.json``, a COCO results list, and what
  ``PanopticEvaluator.add`` takes as ``instances``);
* :func:`match_instances` makes COCOeval's per-image matches for every threshold from them,
  with COCOeval's IoU (``pycocotools.mask.iou`` on RLE, float64) against the GT segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modise.data.coco_records import encode_rle
from modise.data.panoptic import INSTANCES_JSON  # noqa: F401  (re-exported: the evaluation package names it)
from modise.errors import ModiseError

MAX_DETS = 100  # COCO maxDets[-1]; Mask2Former test_topk_per_image


def _rle(rec: dict[str, Any], shape: tuple[int, int], where: str) -> dict[str, Any]:
    """A record's ``segmentation`` (RLE, compressed or not) or ``mask`` -> compressed RLE."""
    from pycocotools import mask as mask_utils

    if "mask" in rec:
        m = np.asarray(rec["mask"])
        if m.shape != shape:
            raise ModiseError(f"{where}: an instance mask is {m.shape[0]}x{m.shape[1]} but the image is {shape[0]}x{shape[1]}.")
        return encode_rle(m)
    seg = rec.get("segmentation")
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise ModiseError(f"{where}: an instance has no RLE 'segmentation' ({{'size': [h, w], 'counts': ...}}); polygons are not supported.")
    try:
        h, w = (int(v) for v in seg["size"])
    except (TypeError, ValueError):
        raise ModiseError(f"{where}: an instance's segmentation 'size' is not [height, width].") from None
    if (h, w) != tuple(shape):
        raise ModiseError(f"{where}: an instance mask is {h}x{w} but the image is {shape[0]}x{shape[1]}.")
    counts = seg["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def match_instances(
    gt_index: np.ndarray,
    gt_cat: np.ndarray,
    instances: Sequence[dict[str, Any]],
    cat_index: dict[int, int],
    use_class: np.ndarray,
    thresholds: np.ndarray,
    where: str,
    froc: tuple[float, str] | None = None,
    gt_area: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray], tuple | None, dict[int, Any]]:
    """COCOeval's ``evaluateImg`` for one image, every threshold at once.

    ``gt_index``: (H, W) int, 0 = background, j + 1 = the j-th GT segment in listing order
    (COCO's GT order); ``gt_cat`` (G,) their category indices; ``instances``: records with ``category_id``,
    ``score`` and ``segmentation`` (COCO RLE) or ``mask``; ``use_class`` (C,) bool: classes
    that take part (things). Returns (GT count per class (C,), detection scores and (T, D)
    matched flags per class index), detections in COCO order: descending score, stable
    over listing order, at most 100 per class; with ``froc`` = (IoU threshold, hit rule), also
    the FROC matches of those detections against the lesions of the used classes in listing order
    (scores, class indices, then :func:`.froc.froc_match`'s four arrays), else None; last, per class
    index, the :class:`.coco_ap.AreaPairs` of AP by lesion size (``gt_area`` (G,): the GT segments'
    pixels in listing order, COCO's annotation ``area``; default: counted from ``gt_index``).
    """
    from pycocotools import mask as mask_utils

    from .coco_ap import AreaPairs, check_score, coco_greedy

    n_cls, shape = use_class.size, tuple(gt_index.shape)
    gt_cat = np.asarray(gt_cat, dtype=np.int64)
    n_gt = np.bincount(gt_cat[use_class[gt_cat]] if gt_cat.size else gt_cat, minlength=n_cls).astype(np.int64)
    by_class: dict[int, list[tuple[float, dict]]] = {}
    for rec in instances:
        if not isinstance(rec, dict):
            raise ModiseError(f"{where}: an instance is not an object ({rec!r}).")
        try:
            cid = int(rec["category_id"])
        except (KeyError, TypeError, ValueError):
            raise ModiseError(f"{where}: an instance lacks an integer 'category_id'.") from None
        if cid not in cat_index:
            raise ModiseError(f"{where}: an instance has unknown category_id {cid}.")
        c = cat_index[cid]
        if use_class[c]:
            by_class.setdefault(c, []).append((check_score(rec, f"{where}: an instance"), rec))
    scores_out: dict[int, np.ndarray] = {}
    matched_out: dict[int, np.ndarray] = {}
    coco_thr = np.minimum(thresholds, 1 - 1e-10)
    lesions = np.flatnonzero(use_class[gt_cat]) if gt_cat.size else np.zeros(0, np.int64)  # GT rows of used classes
    g_rles = [encode_rle(gt_index == j + 1) for j in lesions]
    kept = {c: np.argsort(-np.array([s for s, _ in dets], dtype=np.float64), kind="mergesort")[:MAX_DETS] for c, dets in by_class.items()}
    d_cls = np.concatenate([np.full(kept[c].size, c) for c in by_class] or [np.zeros(0, np.int64)]).astype(np.int64)
    d_recs = [by_class[c][i] for c in by_class for i in kept[c]]
    d_rles = [_rle(rec, shape, where) for _, rec in d_recs]
    if d_rles and g_rles:  # pairwise (each IoU on its own), so the per-class blocks equal per-class calls
        ious = np.asarray(mask_utils.iou(d_rles, g_rles, [0] * len(g_rles)), dtype=np.float64).reshape(len(d_rles), len(g_rles))
    else:
        ious = np.zeros((len(d_rles), len(g_rles)))
    l_cat = gt_cat[lesions]
    if gt_area is None:
        gt_area = np.bincount(gt_index.ravel(), minlength=gt_cat.size + 1)[1:]
    l_area = np.asarray(gt_area, dtype=np.int64)[lesions]
    d_area = np.asarray(mask_utils.area(d_rles), dtype=np.int64).reshape(-1) if d_rles else np.zeros(0, np.int64)  # loadRes' area
    pairs_out = {}
    for c in by_class:
        rows, cols = np.flatnonzero(d_cls == c), np.flatnonzero(l_cat == c)
        scores_out[c] = np.array([d_recs[r][0] for r in rows], dtype=np.float64)
        matched_out[c] = coco_greedy(ious[np.ix_(rows, cols)], coco_thr)
        pairs_out[c] = AreaPairs.of(ious[np.ix_(rows, cols)], d_area[rows], l_area[cols])
    froc_out = None
    if froc is not None:
        from .froc import centroid_hits, centroid_pixels, froc_match

        t, rule = froc
        if rule == "centroid":
            lesion_index = np.zeros(gt_cat.size + 1, np.int64)
            lesion_index[lesions + 1] = np.arange(1, len(lesions) + 1)  # GT row j + 1 -> lesion column + 1
            masks = [mask_utils.decode(r).astype(bool) for r in d_rles]
            hit = centroid_hits(centroid_pixels(masks), lesion_index[gt_index], len(lesions))
        else:
            hit = ious >= t
        d_scores = np.array([s for s, _ in d_recs], dtype=np.float64)
        froc_out = (d_scores, d_cls, *froc_match(d_scores, d_cls, l_cat, hit, ious))
    return n_gt, scores_out, matched_out, froc_out, pairs_out
