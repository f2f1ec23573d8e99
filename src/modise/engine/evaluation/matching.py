"""Per-image overlap statistics and segment matching for every IoU threshold at once.

One pass over the pixels (a ``bincount`` of the combined GT/prediction index) gives the
whole intersection matrix of an image; every threshold is then swept from it. The
matching rules reproduce the reference implementations bit for bit:

* PQ (MONAI ``compute_panoptic_quality``): IoU in float32, compared with the threshold
  in float32; for t >= 0.5 every pair with IoU > t, for t < 0.5 the summed-IoU
  Hungarian assignment (``linear_sum_assignment`` on the same float32 matrix, rows =
  GT ids ascending, columns = predicted ids ascending) keeping pairs with IoU > t.
  The assignment does not depend on t, so it is solved once per image and class.
* AP (pycocotools ``COCOeval.evaluateImg``): float64 IoU; detections by descending
  score (stable), at most 100; each takes the still-free GT with the largest IoU
  (the last one on ties) if that IoU >= min(t, 1 - 1e-10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from modise.errors import ModiseError

from .coco_ap import AreaPairs, check_score, coco_greedy
from .froc import DEFAULT_FROC_IOU, FrocImage

MAX_DETS = 100  # COCO maxDets[-1]
_LUT_MAX_ID = 1 << 22  # ids below this are mapped with a lookup table (fast path)


@dataclass
class ImageResult:
    """Everything the dataset-level metrics need from one image (small, picklable).

    Shapes: T thresholds, C categories (in the evaluator's category order).
    """

    image_id: object
    tp: np.ndarray  # (T, C) int64 matched pairs
    iou_sum: np.ndarray  # (T, C) float64 sum of matched IoUs (float32 values, as MONAI)
    n_gt: np.ndarray  # (C,) int64 GT segments
    n_pred: np.ndarray  # (C,) int64 predicted segments
    inter: np.ndarray  # (C,) int64 pixels predicted c that are GT c (Dice)
    gt_area: np.ndarray  # (C,) int64
    pred_area: np.ndarray  # (C,) int64
    # COCO: per category index, detection scores (COCO order) and matched flags (T, D)
    det_scores: dict[int, np.ndarray] = field(default_factory=dict)
    det_matched: dict[int, np.ndarray] = field(default_factory=dict)
    # the same from instance predictions (None: the image came without instances)
    inst_n_gt: np.ndarray | None = None  # (C,) GT segments of the classes instance AP uses
    inst_scores: dict[int, np.ndarray] | None = None
    inst_matched: dict[int, np.ndarray] | None = None
    froc: FrocImage | None = None  # FROC matches (instances when given, else panoptic segments)
    segments: "SegmentPairs | None" = None  # PQ's pairs and segment sizes (breakdown by lesion size)
    # AP by lesion size: per category index, the IoUs and areas COCOeval's area ranges need
    det_pairs: dict[int, AreaPairs] = field(default_factory=dict)
    inst_pairs: dict[int, AreaPairs] | None = None


@dataclass
class SegmentPairs:
    """PQ's candidate pairs of one image, to split its counts by segment size afterwards.

    ``pairs_hi`` (K, 2): (GT, predicted) segment positions of every same-class pair with IoU > 0 (for
    t >= 0.5 those above t are the matches); ``pairs_lo`` (L, 2): the summed-IoU assignment's pairs
    (for t < 0.5); ``iou_hi`` / ``iou_lo``: their float32 IoUs. Segment areas and class indices
    in ascending-id positions; ``inter_hi`` (K,): the pixels each ``pairs_hi`` pair shares (Dice by size)."""

    pairs_hi: np.ndarray
    iou_hi: np.ndarray
    inter_hi: np.ndarray
    pairs_lo: np.ndarray
    iou_lo: np.ndarray
    g_area: np.ndarray
    g_cat: np.ndarray
    p_area: np.ndarray
    p_cat: np.ndarray


def image_order_key(image_id: object) -> tuple:
    """COCOeval's image order: ascending ids (integers before strings)."""
    return (0, image_id, "") if isinstance(image_id, (int, np.integer)) else (1, 0, str(image_id))


def _compact_ids(ids: np.ndarray, seg_ids: np.ndarray, where: str, what: str, strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Map a segment-id map to 0 (background) / 1..S (index into ``seg_ids``) + areas.

    Raises when the map holds an id the segment list lacks, or (``strict``) a listed id has
    no pixel; otherwise such segments get area 0 and are dropped by the caller.
    Returns (index map (H*W,) int64, areas (S,) int64).
    """
    flat = ids.ravel()
    if flat.dtype.kind not in "ui":
        raise ModiseError(f"{where}: the {what} map is not an integer array.")
    if flat.dtype == np.uint64:
        flat = flat.astype(np.int64)
    if flat.dtype.kind == "i" and flat.size and flat.min() < 0:
        raise ModiseError(f"{where}: the {what} map has negative segment ids.")
    top = int(flat.max()) if flat.size else 0
    if seg_ids.size and seg_ids.min() <= 0:
        raise ModiseError(f"{where}: {what} segments_info lists segment id {int(seg_ids.min())}; ids must be >= 1 (0 is background).")
    if top < _LUT_MAX_ID and (seg_ids.size == 0 or seg_ids.max() < _LUT_MAX_ID):
        counts = np.bincount(flat, minlength=max(top, int(seg_ids.max()) if seg_ids.size else 0) + 1)
        lut = np.zeros(counts.size, dtype=np.intp)
        lut[seg_ids] = np.arange(1, seg_ids.size + 1)
        unknown = np.flatnonzero((counts > 0) & (lut == 0))
        unknown = unknown[unknown != 0]
        index = lut[flat]
        seg_counts = counts[seg_ids]
    else:  # huge ids (e.g. colour-derived): sort-based path
        present, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        pos = np.minimum(np.searchsorted(seg_ids, present), max(seg_ids.size - 1, 0))
        known = (seg_ids[pos] == present) if seg_ids.size else np.zeros(present.size, bool)
        index = np.where(known, pos + 1, 0)[inverse.ravel()]
        seg_counts = np.zeros(seg_ids.size, dtype=np.int64)
        seg_counts[pos[known]] = counts[known]
        unknown = present[~known & (present != 0)]
    if unknown.size:
        raise ModiseError(f"{where}: the {what} PNG has segment id {int(unknown[0])} that segments_info does not list.")
    if strict and seg_ids.size and (seg_counts == 0).any():
        missing = int(seg_ids[np.flatnonzero(seg_counts == 0)[0]])
        raise ModiseError(f"{where}: {what} segments_info lists segment id {missing} but the PNG has no pixel with that id.")
    return index, seg_counts.astype(np.int64)


def _segment_table(segments: Sequence[dict], cat_index: dict[int, int], where: str, what: str, need_score: bool):
    """segments_info -> (ids ascending, category index per id, scores, listing order)."""
    ids, cats, scores = [], [], []
    for s in segments:
        try:
            sid = int(s["id"])
            cid = int(s["category_id"])
        except (KeyError, TypeError, ValueError):
            raise ModiseError(f"{where}: a {what} segment lacks an integer 'id' or 'category_id' ({s!r}).") from None
        if cid not in cat_index:
            raise ModiseError(f"{where}: {what} segment {sid} has unknown category_id {cid}.")
        if need_score:
            scores.append(check_score(s, f"{where}: predicted segment {sid}"))
        ids.append(sid)
        cats.append(cat_index[cid])
    ids_a = np.asarray(ids, dtype=np.int64)
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ModiseError(f"{where}: {what} segments_info lists segment id {dup} twice.")
    order = np.argsort(ids_a, kind="stable")  # position in ascending-id order -> listing index
    return ids_a[order], np.asarray(cats, dtype=np.int64)[order], np.asarray(scores, dtype=np.float64)[order] if need_score else None, order


def match_image(
    image_id: object,
    gt_ids: np.ndarray,
    gt_segments: Sequence[dict],
    pred_ids: np.ndarray,
    pred_segments: Sequence[dict],
    cat_index: dict[int, int],
    thresholds: np.ndarray,
    where: str | None = None,
    strict: bool = True,
    instances: Sequence[dict] | None = None,
    instance_classes: np.ndarray | None = None,
    froc: tuple[float, str] | None = (DEFAULT_FROC_IOU, "iou"),
) -> ImageResult:
    """Match one image for all thresholds. ``gt_ids``/``pred_ids``: (H, W) int segment ids.

    ``strict``: a segment listed in ``segments_info`` without any pixel is an error
    (otherwise it is ignored). ``instances``: the image's instance predictions (COCO result
    records, masks may overlap, see :mod:`.instances`) for AP on instances; they are scored
    for the classes ``instance_classes`` (C,) bool marks (default all), the lesion classes of FROC.
    ``froc``: (IoU threshold, "iou" | "centroid") of the FROC matching (:mod:`.froc`), None: none."""
    where = where or f"image {image_id}"
    gt_ids = np.asarray(gt_ids)
    pred_ids = np.asarray(pred_ids)
    if gt_ids.shape != pred_ids.shape:
        raise ModiseError(f"{where}: ground truth is {'x'.join(map(str, gt_ids.shape))} but the prediction is {'x'.join(map(str, pred_ids.shape))}.")
    n_cls, n_thr = len(cat_index), len(thresholds)
    g_sid, g_cat, _, g_order = _segment_table(gt_segments, cat_index, where, "ground-truth", need_score=False)
    p_sid, p_cat, p_score, p_order = _segment_table(pred_segments, cat_index, where, "predicted", need_score=True)
    g_idx, g_area = _compact_ids(gt_ids, g_sid, where, "ground-truth", strict)
    p_idx, p_area = _compact_ids(pred_ids, p_sid, where, "predicted", strict)
    if not strict:  # listed segments without pixels are invisible (as to MONAI): drop them
        g_idx, g_area, g_sid, g_cat, g_order, _ = _drop_empty(g_idx, g_area, g_sid, g_cat, g_order, None)
        p_idx, p_area, p_sid, p_cat, p_order, p_score = _drop_empty(p_idx, p_area, p_sid, p_cat, p_order, p_score)
    ng, npd = g_sid.size, p_sid.size
    joint = np.bincount(g_idx * (npd + 1) + p_idx, minlength=(ng + 1) * (npd + 1)).reshape(ng + 1, npd + 1)
    inter = joint[1:, 1:]  # (G, P) pixel intersections, ids ascending
    union = g_area[:, None] + p_area[None, :] - inter
    # MONAI: int / int in torch -> float32 division; COCO: double division
    iou32 = np.where(inter > 0, inter.astype(np.float32) / np.maximum(union, 1).astype(np.float32), np.float32(0))
    iou64 = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)

    thr32 = thresholds.astype(np.float32)
    hi = thresholds >= 0.5
    tp = np.zeros((n_thr, n_cls), dtype=np.int64)
    iou_sum = np.zeros((n_thr, n_cls), dtype=np.float64)
    res = ImageResult(
        image_id=image_id, tp=tp, iou_sum=iou_sum,
        n_gt=np.bincount(g_cat, minlength=n_cls).astype(np.int64),
        n_pred=np.bincount(p_cat, minlength=n_cls).astype(np.int64),
        inter=np.zeros(n_cls, dtype=np.int64),
        gt_area=np.bincount(g_cat, weights=g_area, minlength=n_cls).astype(np.int64),
        pred_area=np.bincount(p_cat, weights=p_area, minlength=n_cls).astype(np.int64),
    )
    coco_thr = np.minimum(thresholds, 1 - 1e-10)
    pairs_hi: list[np.ndarray] = []
    pairs_lo: list[np.ndarray] = []
    for c in np.union1d(g_cat, p_cat):
        gr = np.flatnonzero(g_cat == c)
        pc = np.flatnonzero(p_cat == c)
        if gr.size and pc.size:
            m32 = iou32[np.ix_(gr, pc)]
            res.inter[c] = int(inter[np.ix_(gr, pc)].sum())
            lr, lc = _pq_sweep(m32, thr32, hi, tp[:, c], iou_sum[:, c])
            hr, hc = np.nonzero(m32 > 0)
            pairs_hi.append(np.stack([gr[hr], pc[hc]], 1))
            pairs_lo.append(np.stack([gr[lr], pc[lc]], 1))
        if pc.size:
            # COCO: GT in listing order, detections by descending score (stable over listing order)
            g_list = gr[np.argsort(g_order[gr], kind="stable")]
            p_list = pc[np.argsort(p_order[pc], kind="stable")]
            p_list = p_list[np.argsort(-p_score[p_list], kind="mergesort")][:MAX_DETS]
            res.det_scores[int(c)] = p_score[p_list]
            det_iou = iou64[np.ix_(g_list, p_list)].T
            res.det_matched[int(c)] = coco_greedy(det_iou, coco_thr)
            res.det_pairs[int(c)] = AreaPairs.of(det_iou, p_area[p_list], g_area[g_list])
    res.segments = _segment_pairs(pairs_hi, pairs_lo, iou32, inter, g_area, g_cat, p_area, p_cat)
    use = np.ones(n_cls, dtype=bool) if instance_classes is None else np.asarray(instance_classes, dtype=bool)
    listing = np.argsort(g_order, kind="stable")  # ascending-id positions in listing order
    lesions = listing[use[g_cat[listing]]]  # lesion GT (FROC), listing order
    froc_dets = None
    if instances is not None:
        from .instances import match_instances

        rank = np.empty(ng, dtype=np.int64)
        rank[listing] = np.arange(ng)
        gt_index = np.concatenate([[0], rank + 1])[g_idx].reshape(gt_ids.shape)
        res.inst_n_gt, res.inst_scores, res.inst_matched, froc_dets, res.inst_pairs = match_instances(
            gt_index, g_cat[listing], instances, cat_index, use, thresholds, where, froc, g_area[listing])
    elif froc is not None:  # FROC on the panoptic segments of lesion classes
        froc_dets = _froc_panoptic(froc, lesions, g_cat, g_idx, p_idx, p_area, p_cat, p_score, p_order, iou64, use, gt_ids.shape)
    if froc is not None:
        res.froc = FrocImage(*froc_dets, n_gt=np.bincount(g_cat[lesions], minlength=n_cls).astype(np.int64),
                             gt_cls=g_cat[lesions], gt_area=g_area[lesions].astype(np.int64))
    return res


def _froc_panoptic(froc, lesions, g_cat, g_idx, p_idx, p_area, p_cat, p_score, p_order, iou64, use, shape):
    """FROC matches of the predicted segments of lesion classes (listing order) against ``lesions``."""
    from .froc import centroid_hits, froc_match

    dets = np.flatnonzero(use[p_cat])
    dets = dets[np.argsort(p_order[dets], kind="stable")]
    iou = iou64[np.ix_(lesions, dets)].T  # (D, G)
    t, rule = froc
    if rule == "centroid":
        w = shape[1]
        pos = np.arange(p_idx.size)
        area = np.maximum(p_area, 1)
        cy = np.bincount(p_idx, weights=pos // w, minlength=p_area.size + 1)[1:] / area
        cx = np.bincount(p_idx, weights=pos % w, minlength=p_area.size + 1)[1:] / area
        cents = [None if p_area[d] == 0 else (int(np.round(cy[d])), int(np.round(cx[d]))) for d in dets]
        column = np.zeros(g_cat.size + 1, np.int64)  # GT position + 1 -> lesion column + 1
        column[lesions + 1] = np.arange(1, lesions.size + 1)
        hit = centroid_hits(cents, column[g_idx].reshape(shape), lesions.size)
    else:
        hit = iou >= t
    return (p_score[dets], p_cat[dets], *froc_match(p_score[dets], p_cat[dets], g_cat[lesions], hit, iou))


def _segment_pairs(pairs_hi, pairs_lo, iou32, inter, g_area, g_cat, p_area, p_cat) -> "SegmentPairs":
    def cat(pairs):
        p = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        return p, iou32[p[:, 0], p[:, 1]] if p.size else np.zeros(0, np.float32)

    (hi, iou_hi), (lo, iou_lo) = cat(pairs_hi), cat(pairs_lo)
    inter_hi = inter[hi[:, 0], hi[:, 1]].astype(np.int64) if hi.size else np.zeros(0, np.int64)
    return SegmentPairs(hi, iou_hi, inter_hi, lo, iou_lo, g_area.astype(np.int64), g_cat, p_area.astype(np.int64), p_cat)


def _drop_empty(idx, area, sid, cat, order, score):
    keep = area > 0
    if keep.all():
        return idx, area, sid, cat, order, score
    remap = np.concatenate([[0], np.where(keep, np.cumsum(keep), 0)])
    return remap[idx], area[keep], sid[keep], cat[keep], order[keep], None if score is None else score[keep]


def _pq_sweep(m32: np.ndarray, thr32: np.ndarray, hi: np.ndarray, tp_out: np.ndarray, iou_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill TP count and IoU sum per threshold for one class of one image (MONAI rule); return the
    pairs (rows, cols of ``m32``) that thresholds below 0.5 choose among."""
    rows = cols = np.zeros(0, np.int64)
    if hi.any():
        vals = m32[m32 > 0]
        sel = vals[None, :] > thr32[hi, None]
        tp_out[hi] = sel.sum(1)
        iou_out[hi] = (sel * vals[None, :].astype(np.float64)).sum(1)
    lo = ~hi
    if lo.any():
        nz = m32 > 0
        if (nz.sum(0) <= 1).all() and (nz.sum(1) <= 1).all():
            # overlaps form a matching: every optimal assignment holds all of them (and
            # zero-IoU pairs never pass t > 0), so the solver is not needed
            rows, cols = np.nonzero(nz)
            vals = m32[nz]
        else:
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(-m32)
            vals = m32[rows, cols]
        sel = vals[None, :] > thr32[lo, None]
        tp_out[lo] = sel.sum(1)
        iou_out[lo] = (sel * vals[None, :].astype(np.float64)).sum(1)
    return rows, cols
