"""COCO segm AP at one IoU threshold, identical to pycocotools' ``COCOeval`` (accumulate +
summarize: 101 recall points, maxDets 100, area 'all').

Input comes from :mod:`matching` (per-image greedy matches already made for every
threshold), so no mask is re-read or re-encoded. Also COCOeval's greedy matching
(:func:`coco_greedy`) and the score check both matchers share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modise.errors import ModiseError

REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


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
    """COCO's greedy matching for all thresholds. ``ious``: (D, G) float64, dets by score.

    Returns (T, D) bool: detection d is a true positive at threshold t.
    """
    n_det, n_gt = ious.shape
    matched = np.zeros((thr.size, n_det), dtype=bool)
    if n_gt == 0:
        return matched
    taken = np.zeros((thr.size, n_gt), dtype=bool)
    rows = np.arange(thr.size)
    for d in range(n_det):
        cand = np.where(taken, -np.inf, ious[d][None, :])
        best = n_gt - 1 - np.argmax(cand[:, ::-1], axis=1)  # last index among equal maxima
        ok = cand[rows, best] >= thr
        matched[ok, d] = True
        taken[rows[ok], best[ok]] = True
    return matched
