"""Per-image sufficient statistics of one evaluation, and its metrics under image weights.

Matching happens once per image (:mod:`.matching`); what the set-level metrics need from an
image at the selected IoU threshold is kept here as arrays over images: PQ's TP/FP/FN counts and
IoU sums per class, Dice's intersections and areas, AP's matched detections (score order, flag,
image) and FROC's TP/FP detections. A weight per image (1 = as evaluated, k = drawn k times by
the bootstrap, 0 = left out, a 0/1 mask for a breakdown) then gives the metrics of that set
without re-matching:

* PQ/RQ/SQ and Dice: weighted sums of the counts, then the usual formulas.
* AP: COCOeval's accumulate on the detections in its order (all images' detections sorted by
  descending score, stable over ascending image id), each detection counted w times at its place
  (an image drawn twice has its detections next to their copies). At weights 1 this is
  exactly COCOeval's number (tests check it against pycocotools).
* FROC: :func:`.froc.froc_curve` with the detections' weights (MONAI's curve on the copies).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .by_size import SizeBins, SizeStats
from .coco_ap import weighted_ap
from .dice import dice_per_class
from .froc import ALL, FROC_FPS, FROC_GRID, IGNORED, TP, froc_at, grouped_froc_curve, score_groups
from .matching import ImageResult, image_order_key
from .panoptic_quality import count_means, masked_mean

FPS_INDEX = np.searchsorted(FROC_GRID, FROC_FPS)  # FROC_FPS are points of FROC_GRID


class SetStats:
    """Sufficient statistics of N images at threshold index ``t_index`` (images in COCO order).

    ``categories``: names in the evaluator's order; ``ap_source``: "instances" | "panoptic";
    ``instance_classes`` (C,) bool: lesion / instance classes; ``dice_classes`` (C,) bool: the
    classes Dice averages. ``size_bins``: per image, (G,) size bin of each lesion (optional)."""

    def __init__(self, results: Sequence[ImageResult], categories: Sequence[str], t_index: int, ap_source: str,
                 instance_classes: np.ndarray, dice_classes: np.ndarray, size_bins: Sequence[np.ndarray] | None = None) -> None:
        results = sorted(results, key=lambda r: image_order_key(r.image_id))  # COCOeval's image order
        self.image_ids = [r.image_id for r in results]
        self.categories = list(categories)
        n, c = len(results), len(self.categories)
        self.n_images = n
        b = t_index
        z = np.zeros((0, c))
        self.tp = np.array([r.tp[b] for r in results]).reshape(n, c)
        self.iou_sum = np.array([r.iou_sum[b] for r in results]).reshape(n, c)
        self.n_gt = np.array([r.n_gt for r in results] or z).reshape(n, c)
        self.n_pred = np.array([r.n_pred for r in results] or z).reshape(n, c)
        self.inter = np.array([r.inter for r in results] or z).reshape(n, c)
        self.gt_area = np.array([r.gt_area for r in results] or z).reshape(n, c)
        self.pred_area = np.array([r.pred_area for r in results] or z).reshape(n, c)
        self.dice_classes = np.asarray(dice_classes, dtype=bool)
        inst = ap_source == "instances"
        self.ap_classes = np.asarray(instance_classes, dtype=bool) if inst else np.ones(c, dtype=bool)
        self.ap_n_gt = np.array([(r.inst_n_gt if inst else r.n_gt) for r in results] or z).reshape(n, c)
        self.ap_dets: list[tuple[np.ndarray, np.ndarray] | None] = []
        for k in range(c):
            if not self.ap_classes[k]:
                self.ap_dets.append(None)
                continue
            scores, matched, img = [], [], []
            for i, r in enumerate(results):
                sc, mt = (r.inst_scores, r.inst_matched) if inst else (r.det_scores, r.det_matched)
                if k in sc:
                    scores.append(sc[k])
                    matched.append(mt[k][b])
                    img.append(np.full(sc[k].size, i))
            if scores:
                order = np.argsort(-np.concatenate(scores), kind="mergesort")
                self.ap_dets.append((np.concatenate(matched)[order], np.concatenate(img)[order]))
            else:
                self.ap_dets.append((np.zeros(0, bool), np.zeros(0, np.int64)))
        self.has_froc = all(r.froc is not None for r in results) and n > 0
        self.froc_names = [self.categories[k] for k in np.flatnonzero(instance_classes)] + [ALL]
        self.size_bins = size_bins
        self.sizes: SizeBins | None = None  # set by the caller that binned the lesions (cad.evaluator_stats)
        self.by_size: SizeStats | None = None  # PQ/Dice/AP per size bin, likewise
        self._froc: dict[str, tuple] = {}
        if self.has_froc:
            for k in [*np.flatnonzero(instance_classes), None]:
                name = ALL if k is None else self.categories[k]
                sc, tp, img, tbin = [], [], [], []
                n_t = np.zeros((n, 4))  # lesions per image: all, then per size bin
                for i, r in enumerate(results):
                    f = r.froc
                    status, target = (f.status_all, f.target_all) if k is None else (f.status_class, f.target_class)
                    use = status != IGNORED if k is None else (status != IGNORED) & (f.cls == k)
                    sc.append(f.scores[use])
                    tp.append(status[use] == TP)
                    img.append(np.full(int(use.sum()), i))
                    lesion = np.ones(f.gt_cls.size, bool) if k is None else f.gt_cls == k
                    n_t[i, 0] = lesion.sum()
                    lb = size_bins[i] if size_bins is not None else np.zeros(f.gt_cls.size, np.int64)
                    n_t[i, 1:] = np.bincount(lb[lesion], minlength=3)[:3]
                    tbin.append(np.where(target[use] >= 0, lb[np.maximum(target[use], 0)] if lb.size else -1, -1))
                u, group = score_groups(np.concatenate(sc))  # sorted once, not per replicate
                self._froc[name] = (group, u.size, np.concatenate(tp), np.concatenate(img).astype(np.int64),
                                    np.concatenate(tbin).astype(np.int64), n_t)

    @property
    def pq_by_size(self) -> np.ndarray | None:
        """(bins, 4, C) TP, FP, FN, IoU sum per size bin over the set (summed over bins: the set's counts)."""
        return None if self.by_size is None else self.by_size.pq.sum(axis=0)

    def lesions(self, name: str) -> int:
        """GT lesions of ``name`` (a lesion class or "all") over the set."""
        return int(self._froc[name][-1][:, 0].sum())

    def froc_curve(self, name: str, w: np.ndarray | None = None, size_bin: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """MONAI's FROC curve (fps per image, sensitivity) of ``name`` (a lesion class or "all") under image
        weights ``w`` (N,); ``size_bin``: lesions of that size only (TPs on other lesions ignored, every FP kept).
        None when there is no lesion."""
        w = np.ones(self.n_images) if w is None else np.asarray(w, dtype=np.float64)
        group, n_groups, is_tp, img, tbin, n_t = self._froc[name]
        col = 0 if size_bin is None else 1 + size_bin
        targets = float(w @ n_t[:, col])
        if targets == 0:
            return None
        dw = w[img]
        if size_bin is not None:
            dw = np.where(is_tp & (tbin != size_bin), 0.0, dw)
        return grouped_froc_curve(group, n_groups, is_tp, targets, float(w.sum()), dw)

    def count_metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """"pq", "rq", "sq", "dice" (B,) (fractions, NaN when undefined) under B image weightings
        ``weights`` (B, N) at once: the metrics that are sums of per-image counts."""
        tp = weights @ self.tp
        out = count_means(tp, weights @ self.n_pred - tp, weights @ self.n_gt - tp, weights @ self.iou_sum,
                          weights @ (self.n_gt + self.n_pred) > 0)
        dice_c = dice_per_class(weights @ self.inter, weights @ self.pred_area, weights @ self.gt_area)
        out["dice"] = masked_mean(dice_c, self.dice_classes[None] & ~np.isnan(dice_c))
        return out

    def metrics(self, w: np.ndarray | None = None, size_bin: int | None = None) -> dict[str, float | np.ndarray | None]:
        """The set's metrics under image weights ``w`` (N,) (default 1): fractions "pq", "rq", "sq",
        "ap", "dice" (NaN / None when undefined) and, with FROC, "froc:<name>" (len(FROC_GRID),)
        sensitivities and "cpm:<name>" for each lesion class and "all". ``size_bin``: of the lesions of
        that size (:mod:`.by_size`; FROC: TPs on them, every FP)."""
        w = np.ones(self.n_images) if w is None else np.asarray(w, dtype=np.float64)
        out: dict[str, float | np.ndarray | None] = {}
        if size_bin is not None and self.by_size is not None:
            out.update(self.by_size.metrics(size_bin, w))
        elif size_bin is None:
            out.update({k: float(v[0]) for k, v in self.count_metrics(w[None]).items()})
            out["ap"] = weighted_ap(self.ap_dets, w, w @ self.ap_n_gt)
        if self.has_froc:
            for name in self.froc_names:
                curve = self.froc_curve(name, w, size_bin)
                sens = None if curve is None else froc_at(*curve, FROC_GRID)
                out[f"froc:{name}"] = sens
                out[f"cpm:{name}"] = None if sens is None else float(np.mean(sens[FPS_INDEX]))
        return out
