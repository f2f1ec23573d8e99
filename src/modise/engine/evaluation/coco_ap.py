"""COCO segm AP at one IoU threshold, identical to pycocotools' ``COCOeval`` (accumulate +
summarize: 101 recall points, maxDets 100, area 'all').

Input comes from :mod:`matching` (per-image greedy matches already made for every
threshold), so no mask is re-read or re-encoded. Also COCOeval's greedy matching
(:func:`coco_greedy`) and the score check both matchers share, the matching under area ranges
(:func:`coco_greedy_ranges`, AP by lesion size) and the accumulate of detections counted with
image weights (:func:`weighted_ap`, the bootstrap's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modise.errors import ModiseError

REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


@dataclass
class AreaPairs:
    """One image and class's detections (COCO order, as ``det_scores``) against its GT (listing order):
    what COCOeval's area-range matching needs once the size bins are known. ``det_area`` (D,) and
    ``gt_area`` (G,) pixels; the IoUs (float64) of the pairs that overlap, sparse: ``rows``/``cols`` (K,)."""

    det_area: np.ndarray
    gt_area: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    iou: np.ndarray

    @classmethod
    def of(cls, iou: np.ndarray, det_area: np.ndarray, gt_area: np.ndarray) -> "AreaPairs":
        """From the dense (D, G) IoU matrix."""
        r, c = np.nonzero(iou > 0)
        return cls(np.asarray(det_area, np.int64), np.asarray(gt_area, np.int64), r.astype(np.int32), c.astype(np.int32), iou[r, c])

    def dense(self) -> np.ndarray:
        """(D, G) float64 IoU matrix."""
        out = np.zeros((self.det_area.size, self.gt_area.size))
        out[self.rows, self.cols] = self.iou
        return out


def class_precision(scores: Sequence[np.ndarray], matched: Sequence[np.ndarray], n_gt: int) -> np.ndarray | None:
    """Interpolated precision at the 101 recall points for one class and threshold.

    ``scores``/``matched``: per image (in ascending image-id order), the detections in COCO
    order and their TP flags. Returns None when the class has no GT (COCO's -1).
    """
    if n_gt == 0:
        return None
    q = np.zeros(REC_THRS.size)
    if not scores:
        return q
    dt_scores = np.concatenate(scores)
    inds = np.argsort(-dt_scores, kind="mergesort")
    tps = np.concatenate(matched)[inds]
    tp = np.cumsum(tps).astype(float)
    fp = np.cumsum(~tps).astype(float)
    nd = tp.size
    if nd == 0:
        return q
    rc = tp / n_gt
    pr = (tp / (fp + tp + np.spacing(1))).tolist()
    for i in range(nd - 1, 0, -1):  # same monotone envelope as COCOeval
        if pr[i] > pr[i - 1]:
            pr[i - 1] = pr[i]
    idx = np.searchsorted(rc, REC_THRS, side="left")
    q = q.tolist()
    for ri, pi in enumerate(idx):
        if pi >= nd:
            break
        q[ri] = pr[pi]
    return np.array(q)


def mean_ap(per_class: Sequence[np.ndarray | None]) -> float | None:
    """COCO summarize: mean over all recall points of classes with GT; None if none has GT."""
    cols = [np.full(REC_THRS.size, -1.0) if p is None else p for p in per_class]
    if not cols:
        return None
    s = np.stack(cols, axis=1)[None]  # (T=1, R, K) as COCOeval's precision[:, :, :, a, m]
    if not (s > -1).any():
        return None
    return float(np.mean(s[s > -1]))


def check_score(item: dict, who: str) -> float:
    """``item['score']`` as a finite float; ``who`` names the item in the error."""
    sc = item.get("score")
    if sc is None or isinstance(sc, bool):
        raise ModiseError(f"{who} has no 'score'.")
    try:
        sc = float(sc)
    except (TypeError, ValueError):
        raise ModiseError(f"{who} has a non-numeric score {sc!r}.") from None
    if not np.isfinite(sc):
        raise ModiseError(f"{who} has a non-finite score {sc}.")
    return sc


def coco_greedy(ious: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """COCO's greedy matching for all thresholds (area 'all': :func:`coco_greedy_ranges` with one threshold
    per row and no GT ignored). ``ious``: (D, G) float64, dets by score.

    Returns (T, D) bool: detection d is a true positive at threshold t.
    """
    return coco_greedy_ranges(ious, thr, None)[0]


def coco_greedy_ranges(ious: np.ndarray, thr: float | np.ndarray, gt_ignore: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's ``evaluateImg`` matching under area ranges (pycocotools 2.0.11 cocoeval.py:235-299), at
    threshold ``thr`` (already min(t, 1 - 1e-10), :276; a scalar, or (R,) one per row) for R rows at once
    (``gt_ignore`` None: no GT ignored, one row per threshold).

    ``ious``: (D, G) float64, detections in COCO order, GT in listing order; ``gt_ignore``: (R, G) bool,
    GT outside range r (:251). COCOeval sorts the GT with ignored ones last (stable, :257) and gives each
    detection the not-yet-matched GT of largest IoU >= thr, the later one on ties (:280, :286-290),
    stopping at the first ignored GT once it holds a non-ignored match (:283-284): a non-ignored GT is
    preferred, an ignored one taken only when no non-ignored one qualifies; the stable sort keeps each
    group's order, so "later" is the same in listing order. Returns (matched (R, D), matched to an ignored
    GT (R, D)); the caller ignores those (:294) and the unmatched detections outside the range (:298-299).
    """
    n_det, n_gt = ious.shape
    thr = np.asarray(thr, dtype=np.float64).reshape(-1, 1)  # (R or 1, 1)
    n_rng = gt_ignore.shape[0] if gt_ignore is not None else thr.shape[0]
    matched = np.zeros((n_rng, n_det), dtype=bool)
    on_ignored = np.zeros((n_rng, n_det), dtype=bool)
    if n_gt == 0:
        return matched, on_ignored
    taken = np.zeros((n_rng, n_gt), dtype=bool)
    rows = np.arange(n_rng)
    for d in np.flatnonzero((ious >= thr.min()).any(axis=1)):  # a detection with no IoU >= thr matches nothing
        use = (ious[d][None, :] >= thr) & ~taken  # (R, G) candidates
        if gt_ignore is not None:  # a non-ignored GT first, an ignored one only when none qualifies
            pref = use & ~gt_ignore
            use = np.where(pref.any(axis=1, keepdims=True), pref, use)
        cand = np.where(use, ious[d][None, :], -np.inf)
        best = n_gt - 1 - np.argmax(cand[:, ::-1], axis=1)  # last among equal maxima
        hit = use[rows, best]
        matched[hit, d] = True
        if gt_ignore is not None:
            on_ignored[hit, d] = gt_ignore[rows[hit], best[hit]]
        taken[rows[hit], best[hit]] = True
    return matched, on_ignored


def weighted_precision(matched: np.ndarray, w: np.ndarray, n_gt: float) -> np.ndarray:
    """COCOeval's interpolated precision (101 recall points) of detections in score order,
    ``matched`` (D,) bool, counted ``w`` (D,) times each; :func:`.coco_ap.class_precision` at w = 1."""
    keep = w > 0
    tps, w = matched[keep], w[keep]
    nd = tps.size
    if nd == 0:
        return np.zeros(REC_THRS.size)
    tp = np.cumsum(w * tps)
    fp = np.cumsum(w * ~tps)
    rc = tp / n_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]  # COCOeval's right-to-left envelope
    idx = np.searchsorted(rc, REC_THRS, side="left")
    return np.where(idx < nd, pr[np.minimum(idx, nd - 1)], 0.0)


def weighted_ap(dets: Sequence[tuple[np.ndarray, np.ndarray] | None], w: np.ndarray, n_gt: np.ndarray) -> float | None:
    """COCO AP (fraction) under image weights ``w`` (N,): per class, ``dets[k]`` = (TP flags (D,), image
    index (D,)) of its detections in accumulate order (None: not scored), ``n_gt`` (C,) its weighted GT."""
    per_class = []
    for k, d in enumerate(dets):
        per_class.append(None if d is None or n_gt[k] == 0 else weighted_precision(d[0], w[d[1]], float(n_gt[k])))
    return mean_ap(per_class)
