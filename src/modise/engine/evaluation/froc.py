"""FROC, as CAD studies report it: lesion sensitivity against mean false positives per image.

Matching, per image (:func:`froc_match`): detections by descending score (stable over their
listing order); a detection *hits* a GT lesion when their mask IoU >= ``iou`` (``hit="iou"``) or
when the detection mask's centroid pixel lies inside the lesion (``hit="centroid"``). It takes
the not-yet-taken lesion it hits with the largest IoU (the first on ties) and is a TP; a detection
all of whose hit lesions are already taken is ignored (neither TP nor FP, as a second mark on
one lesion); one that hits nothing is a FP. Per class the detection's class must equal the
lesion's; ``all`` is class-agnostic.

The curve (:func:`froc_curve`) is MONAI's ``compute_froc_curve_data`` (CAMELYON16's code): one
operating point per distinct detection score except the lowest, plus (0, 0); the score at some
FP rates (:func:`froc_at`) is its ``compute_froc_score`` interpolation. Both take optional
integer weights per detection (an image drawn k times by the bootstrap counts k times).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FROC_FPS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # CPM's FP rates
FROC_GRID = 2.0 ** np.arange(-3.0, 3.0 + 1e-9, 0.25)  # 1/8 .. 8 FP/image, log-spaced, holds FROC_FPS exactly
FROC_HITS = ("iou", "centroid")
DEFAULT_FROC_IOU = 0.1
ALL = "all"  # the class-agnostic curve's key

TP, FP, IGNORED = 1, 0, -1


@dataclass
class FrocImage:
    """One image's FROC detections (D kept detections, lesion classes only) and G lesions.

    ``status_class`` / ``status_all``: (D,) int8, TP=1, FP=0, ignored=-1, matched within the
    detection's class / against any lesion; ``target_class`` / ``target_all``: (D,) int64, the
    lesion a TP took (-1 otherwise). ``n_gt``: (C,) lesions per class index; ``gt_cls`` (G,) and
    ``gt_area`` (G,) pixels of each lesion (size breakdowns)."""

    scores: np.ndarray
    cls: np.ndarray
    status_class: np.ndarray
    status_all: np.ndarray
    target_class: np.ndarray
    target_all: np.ndarray
    n_gt: np.ndarray
    gt_cls: np.ndarray
    gt_area: np.ndarray


def _greedy(scores: np.ndarray, hit: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(D,) statuses and (D,) taken lesion (-1: none) of detections; ``hit``/``iou``: (D, G)."""
    status = np.full(scores.size, FP, dtype=np.int8)
    target = np.full(scores.size, -1, dtype=np.int64)
    taken = np.zeros(hit.shape[1], dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    for d in order[hit[order].any(axis=1)] if hit.size else ():  # a detection hitting nothing stays a FP
        h = hit[d]
        free = h & ~taken
        if free.any():
            g = int(np.argmax(np.where(free, iou[d], -np.inf)))
            taken[g] = True
            status[d], target[d] = TP, g
        else:
            status[d] = IGNORED
    return status, target


def froc_match(scores: np.ndarray, det_cls: np.ndarray, gt_cls: np.ndarray, hit: np.ndarray,
               iou: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Statuses (TP=1, FP=0, ignored=-1) of D detections against G lesions, per class and class-agnostic.

    ``scores`` (D,), ``det_cls`` (D,), ``gt_cls`` (G,); ``hit`` (D, G) bool (IoU >= t, or centroid
    inside); ``iou`` (D, G) float64 picks among several free hit lesions. Returns (status per class,
    status all, lesion taken per class, lesion taken all), each (D,)."""
    scores = np.asarray(scores, dtype=np.float64)
    det_cls, gt_cls = np.asarray(det_cls), np.asarray(gt_cls)
    same = det_cls[:, None] == gt_cls[None, :]
    status_class, target_class = _greedy(scores, hit & same, iou)
    status_all, target_all = _greedy(scores, hit, iou)
    return status_class, status_all, target_class, target_all


def centroid_pixels(masks: list[np.ndarray]) -> list[tuple[int, int] | None]:
    """Each (H, W) bool mask's centroid rounded to a pixel (row, col); None for an empty mask."""
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append(None if ys.size == 0 else (int(np.round(ys.mean())), int(np.round(xs.mean()))))
    return out


def centroid_hits(centroids: list[tuple[int, int] | None], gt_index: np.ndarray, n_gt: int) -> np.ndarray:
    """(D, G) bool: detection d's centroid lies in lesion g; ``gt_index`` (H, W): 0 background,
    j + 1 lesion j."""
    hit = np.zeros((len(centroids), n_gt), dtype=bool)
    for d, c in enumerate(centroids):
        if c is not None:
            j = int(gt_index[c]) - 1
            if 0 <= j < n_gt:
                hit[d, j] = True
    return hit


def froc_curve(scores: np.ndarray, is_tp: np.ndarray, num_targets: float, num_images: float,
               weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MONAI ``compute_froc_curve_data(fp_probs, tp_probs, num_targets, num_images)`` with the TP
    and FP detections given together (``scores`` (D,), ``is_tp`` (D,) bool) and optional integer
    ``weights`` (D,) (a detection of weight k counts as k copies; 0 drops it).

    Returns (fps per image, sensitivity), both (K + 1,) in MONAI's order (ascending threshold)."""
    u, group = score_groups(scores)
    return grouped_froc_curve(group, u.size, is_tp, num_targets, num_images, weights)


def score_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct scores ascending (U,), each detection's index among them (D,)): computed once per set."""
    u, group = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    return u, group.reshape(-1)


def grouped_froc_curve(group: np.ndarray, n_groups: int, is_tp: np.ndarray, num_targets: float, num_images: float,
                       weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`froc_curve` on detections already grouped by distinct score (:func:`score_groups`)."""
    is_tp = np.asarray(is_tp, dtype=bool)
    w = np.ones(group.size) if weights is None else np.asarray(weights, dtype=np.float64)
    fp = np.bincount(group, weights=w * ~is_tp, minlength=n_groups)
    tp = np.bincount(group, weights=w * is_tp, minlength=n_groups)
    present = (fp + tp) > 0  # MONAI: sorted(set(fp_probs + tp_probs)) of the detections there are
    fp, tp = fp[present], tp[present]
    # counts with score >= each distinct score but the lowest (MONAI skips it), then (0, 0)
    fps = np.append(np.cumsum(fp[::-1])[::-1][1:], 0.0)
    tps = np.append(np.cumsum(tp[::-1])[::-1][1:], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return fps / float(num_images), tps / float(num_targets)


def froc_at(fps: np.ndarray, sensitivity: np.ndarray, at: np.ndarray | tuple = FROC_FPS) -> np.ndarray:
    """Sensitivity at FP rates ``at``: MONAI ``compute_froc_score``'s interpolation (its mean is the CPM)."""
    return np.interp(np.asarray(at, dtype=np.float64), fps[::-1], sensitivity[::-1])
