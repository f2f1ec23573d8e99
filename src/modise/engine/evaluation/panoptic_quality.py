"""Dataset-level PQ / RQ / SQ from summed per-class counts.

RQ_c = TP / (TP + FP/2 + FN/2), SQ_c = IoU sum / TP, PQ_c = RQ_c * SQ_c, then the mean
over classes that occur in the ground truth or the prediction. No smoothing term (MONAI
adds 1e-6; here an undefined value is simply absent).
"""

from __future__ import annotations

import numpy as np


def pq_per_class(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, C) counts -> (T, C) PQ, RQ, SQ as fractions; NaN where a class does not occur."""
    tp = tp.astype(np.float64)
    denom = tp + 0.5 * fp + 0.5 * fn
    with np.errstate(invalid="ignore", divide="ignore"):
        rq = np.where(denom > 0, tp / denom, np.nan)
        sq = np.where(tp > 0, iou_sum / np.where(tp > 0, tp, 1), np.where(denom > 0, 0.0, np.nan))
    return rq * sq, rq, sq


def class_mean(values: np.ndarray, occurs: np.ndarray) -> np.ndarray:
    """(T, C) per-class values -> (T,) mean over occurring classes (NaN if none occurs)."""
    return masked_mean(values, np.broadcast_to(occurs, values.shape))


def count_means(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou_sum: np.ndarray, occurs: np.ndarray) -> dict[str, np.ndarray]:
    """(B, C) counts of B weightings -> "pq", "rq", "sq" (B,): each row's mean over its occurring classes
    (``occurs`` (B, C) bool; NaN where none occurs)."""
    pq_c, rq_c, sq_c = pq_per_class(tp, fp, fn, iou_sum)
    return {k: masked_mean(v, occurs) for k, v in (("pq", pq_c), ("rq", rq_c), ("sq", sq_c))}


def masked_mean(values: np.ndarray, use: np.ndarray) -> np.ndarray:
    """(B, C) values -> (B,) mean of each row over its ``use`` (B, C) columns; NaN where there is none."""
    n = use.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(use, values, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)


def best_index(pq: np.ndarray) -> int:
    """Index of the best PQ; the smallest threshold on ties (thresholds ascending)."""
    if np.all(np.isnan(pq)):
        return 0
    return int(np.nanargmax(pq))  # argmax returns the first maximum
