"""``PanopticEvaluator``: stream images in, get the paper's metrics out.

Per image only small count arrays are kept (:class:`~.matching.ImageResult` minus the
pixels), so memory stays flat; the heavy per-pixel work happens once per image in
:func:`~.matching.match_image` and can run in worker processes (``add_result``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modise.data.panoptic import Category
from modise.errors import ModiseError

from .coco_ap import class_precision, mean_ap
from .dice import dice_per_class
from .matching import ImageResult, match_image
from .panoptic_quality import best_index, class_mean, pq_per_class

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 19))  # 0.05 .. 0.90


def check_thresholds(thresholds: Sequence[float] | None) -> np.ndarray:
    """Validate thresholds (each in (0, 1]) and return them sorted, unique, float64."""
    if thresholds is None:
        thresholds = DEFAULT_THRESHOLDS
    vals = []
    for t in thresholds:
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise ModiseError(f"IoU threshold {t!r} is not a number.") from None
        if not (0.0 < t <= 1.0) or math.isnan(t):
            raise ModiseError(f"IoU threshold {t} is outside (0, 1].")
        vals.append(t)
    if not vals:
        raise ModiseError("No IoU threshold given.")
    return np.unique(np.asarray(vals, dtype=np.float64))


def parse_thresholds(spec: str | None) -> np.ndarray:
    """'0.05:0.9:0.05' (start:stop:step, stop included) or '0.1,0.5' -> thresholds."""
    if spec is None or not spec.strip():
        return check_thresholds(None)
    spec = spec.strip()
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0:
                raise ModiseError(f"Threshold step in '{spec}' must be positive.")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            vals = [round(start + i * step, 10) for i in range(max(n, 0))]
        else:
            vals = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ModiseError(f"Cannot read thresholds '{spec}'; use start:stop:step (e.g. 0.05:0.9:0.05) or a comma list.") from None
    return check_thresholds(vals)


def _pct(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(100.0 * x)


def _pct_list(a: np.ndarray) -> list[float | None]:
    return [_pct(float(v)) for v in a]


def _sort_key(image_id: object) -> tuple:
    return (0, image_id, "") if isinstance(image_id, (int, np.integer)) else (1, 0, str(image_id))


class PanopticEvaluator:
    """Accumulates PQ/RQ/SQ (every threshold), COCO AP and Dice over a set of images.

    Args:
        categories: the dataset's classes; segment ``category_id`` values refer to them.
        thresholds: IoU thresholds in (0, 1]; default 0.05 .. 0.90 step 0.05.
        strict: a listed segment without pixels is an error (folder evaluation); by default
            it is ignored, as it is invisible to MONAI too (e.g. a lesion lost in resizing).
    """

    def __init__(self, categories: Sequence[Category], thresholds: Sequence[float] | None = None, strict: bool = False) -> None:
        if not categories:
            raise ModiseError("The dataset defines no categories.")
        self.categories = sorted(categories, key=lambda c: c.id)  # COCOeval uses sorted catIds
        self.cat_index = {c.id: i for i, c in enumerate(self.categories)}
        self.thresholds = check_thresholds(thresholds)
        self.strict = strict
        self.reset()

    def reset(self) -> None:
        T, C = len(self.thresholds), len(self.categories)
        self.tp = np.zeros((T, C), dtype=np.int64)
        self.fp = np.zeros((T, C), dtype=np.int64)
        self.fn = np.zeros((T, C), dtype=np.int64)
        self.iou_sum = np.zeros((T, C), dtype=np.float64)
        self.inter = np.zeros(C, dtype=np.int64)
        self.gt_area = np.zeros(C, dtype=np.int64)
        self.pred_area = np.zeros(C, dtype=np.int64)
        self.n_gt = np.zeros(C, dtype=np.int64)
        self._dets: list[tuple[tuple, dict[int, np.ndarray], dict[int, np.ndarray]]] = []
        self._seen: set = set()

    def add(
        self,
        image_id: object,
        gt_ids: np.ndarray,
        gt_segments: Sequence[dict],
        pred_ids: np.ndarray,
        pred_segments: Sequence[dict],
    ) -> None:
        """Score one image. ``gt_ids``/``pred_ids``: (H, W) int segment-id maps (0 = background);
        segments: dicts with ``id``, ``category_id`` (+ ``score`` for predictions)."""
        self.add_result(match_image(image_id, gt_ids, gt_segments, pred_ids, pred_segments, self.cat_index, self.thresholds, strict=self.strict))

    def add_result(self, r: ImageResult) -> None:
        """Fold in a result computed elsewhere (e.g. by a worker process)."""
        if r.image_id in self._seen:
            raise ModiseError(f"image {r.image_id}: added twice to the evaluation.")
        self._seen.add(r.image_id)
        self.tp += r.tp
        self.iou_sum += r.iou_sum
        self.fp += r.n_pred[None, :] - r.tp
        self.fn += r.n_gt[None, :] - r.tp
        self.n_gt += r.n_gt
        self.inter += r.inter
        self.gt_area += r.gt_area
        self.pred_area += r.pred_area
        if r.det_scores or r.n_gt.any():
            self._dets.append((_sort_key(r.image_id), r.det_scores, r.det_matched))

    @property
    def num_images(self) -> int:
        return len(self._seen)

    def average_precision(self, t_index: int) -> tuple[float | None, list[float | None]]:
        """COCO AP (fraction) at ``thresholds[t_index]`` and per class."""
        dets = sorted(self._dets, key=lambda d: d[0])  # COCOeval walks images by ascending id
        per_class = []
        for c in range(len(self.categories)):
            scores = [s[c] for _, s, _ in dets if c in s]
            matched = [m[c][t_index] for _, s, m in dets if c in s]
            per_class.append(class_precision(scores, matched, int(self.n_gt[c])))
        ap_c = [None if p is None else float(np.mean(p)) for p in per_class]
        return mean_ap(per_class), ap_c

    def compute(self) -> dict[str, Any]:
        """The metrics.json structure (percentages): thresholds, pq, rq, sq, best, dice, per_class."""
        pq_c, rq_c, sq_c = pq_per_class(self.tp, self.fp, self.fn, self.iou_sum)
        occurs = (self.n_gt + (self.tp[0] + self.fp[0])) > 0  # in GT or prediction
        pq, rq, sq = (class_mean(v, occurs) for v in (pq_c, rq_c, sq_c))
        b = best_index(pq)
        ap, ap_c = self.average_precision(b)
        dice_c = dice_per_class(self.inter, self.pred_area, self.gt_area)
        lesion = np.array([c.isthing == 1 for c in self.categories])
        if not lesion.any():
            lesion[:] = True
        dice_use = lesion & ~np.isnan(dice_c)
        dice = float(dice_c[dice_use].mean()) if dice_use.any() else float("nan")
        per_class = {}
        for i, cat in enumerate(self.categories):
            per_class[cat.name] = {
                "id": cat.id,
                "isthing": cat.isthing,
                "occurs": bool(occurs[i]),
                "pq": _pct_list(pq_c[:, i]),
                "rq": _pct_list(rq_c[:, i]),
                "sq": _pct_list(sq_c[:, i]),
                "tp": self.tp[:, i].tolist(),
                "fp": self.fp[:, i].tolist(),
                "fn": self.fn[:, i].tolist(),
                "iou_sum": self.iou_sum[:, i].tolist(),
                "ap": _pct(ap_c[i]),
                "dice": _pct(float(dice_c[i])),
                "gt_segments": int(self.n_gt[i]),
            }
        t_best = float(self.thresholds[b])
        return {
            "thresholds": [float(t) for t in self.thresholds],
            "pq": _pct_list(pq),
            "rq": _pct_list(rq),
            "sq": _pct_list(sq),
            "best": {"threshold": t_best, "pq": _pct(float(pq[b])), "rq": _pct(float(rq[b])), "sq": _pct(float(sq[b])), "ap": _pct(ap)},
            "dice": _pct(dice),
            "per_class": per_class,
        }
