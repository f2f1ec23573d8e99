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

from .coco_ap import REC_THRS, mean_ap
from .dice import dice_per_class
from .froc import ALL, FROC_FPS, FROC_GRID, IGNORED, TP, froc_at, grouped_froc_curve, score_groups
from .matching import ImageResult, image_order_key
from .panoptic_quality import class_mean, pq_per_class

SIZE_BINS_MM = (10.0, 20.0)  # equivalent diameter: <= 10, 10-20, > 20 mm
SIZE_NAMES_MM = ("<=10 mm", "10-20 mm", ">20 mm")
SIZE_NAMES_TERCILE = ("small (area tercile 1)", "medium (area tercile 2)", "large (area tercile 3)")
FPS_INDEX = np.searchsorted(FROC_GRID, FROC_FPS)  # FROC_FPS are points of FROC_GRID


def _weighted_precision(matched: np.ndarray, w: np.ndarray, n_gt: float) -> np.ndarray:
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


class SizeBins:
    """Segment size -> bin 0/1/2 (small / medium / large).

    By equivalent diameter 2 sqrt(area / pi) x pixel spacing (mm): <= 10, 10-20, > 20 mm, when every
    image with lesions has its spacing; otherwise by terciles of the set's lesion pixel areas."""

    def __init__(self, results: Sequence[ImageResult], spacing: Sequence[float | None]) -> None:
        areas = [np.zeros(0) if r.froc is None else r.froc.gt_area.astype(np.float64) for r in results]
        self.spacing = list(spacing)
        self.mm = all(s for a, s in zip(areas, spacing) if a.size)
        if self.mm:
            self.names, self.how = SIZE_NAMES_MM, "equivalent diameter 2*sqrt(area/pi) x pixel spacing"
        else:
            flat = np.concatenate(areas) if areas else np.zeros(0)
            self.cuts = np.quantile(flat, [1 / 3, 2 / 3]) if flat.size else np.zeros(2)
            self.names, self.how = SIZE_NAMES_TERCILE, "pixel-area terciles of the set's lesions (pixel spacing unknown)"

    def __call__(self, areas: np.ndarray, image: int) -> np.ndarray:
        """(K,) pixel areas of segments of image number ``image`` -> (K,) bins."""
        areas = np.asarray(areas, dtype=np.float64)
        if self.mm:
            return np.digitize(2.0 * np.sqrt(areas / np.pi) * (self.spacing[image] or 1.0), SIZE_BINS_MM, right=True)
        return np.digitize(areas, self.cuts, right=True)


def lesion_size_bins(results: Sequence[ImageResult], spacing: Sequence[float | None]) -> tuple[list[np.ndarray], SizeBins]:
    """Each image's FROC lesions (:class:`.froc.FrocImage` order) -> size bin, and the binning."""
    sizes = SizeBins(results, spacing)
    return [np.zeros(0, np.int64) if r.froc is None else sizes(r.froc.gt_area, i) for i, r in enumerate(results)], sizes


def pq_counts_by_size(results: Sequence[ImageResult], threshold: float, sizes: SizeBins, n_cls: int) -> np.ndarray | None:
    """(3 bins, 4, C) TP, FP, FN, IoU sum at ``threshold``: a TP and a FN count in the bin of their GT
    segment's size, a FP in its predicted segment's; summed over bins they are the set's counts."""
    if any(r.segments is None for r in results):
        return None
    out = np.zeros((3, 4, n_cls))
    thr32 = np.float32(threshold)
    for i, r in enumerate(results):
        s = r.segments
        pairs, iou = (s.pairs_hi, s.iou_hi) if threshold >= 0.5 else (s.pairs_lo, s.iou_lo)
        keep = iou > thr32  # MONAI's float32 comparison, as the matching does
        pairs, iou = pairs[keep], iou[keep].astype(np.float64)
        gb, pb = sizes(s.g_area, i), sizes(s.p_area, i)
        g_tp = np.zeros(s.g_area.size, bool)
        p_tp = np.zeros(s.p_area.size, bool)
        g_tp[pairs[:, 0]] = True
        p_tp[pairs[:, 1]] = True
        np.add.at(out, (gb[pairs[:, 0]], 0, s.g_cat[pairs[:, 0]]), 1)
        np.add.at(out, (gb[pairs[:, 0]], 3, s.g_cat[pairs[:, 0]]), iou)
        np.add.at(out, (pb[~p_tp], 1, s.p_cat[~p_tp]), 1)
        np.add.at(out, (gb[~g_tp], 2, s.g_cat[~g_tp]), 1)
    return out


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
        self.pq_by_size: np.ndarray | None = None  # (3, 4, C) pq_counts_by_size, likewise
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

    def metrics(self, w: np.ndarray | None = None, size_bin: int | None = None) -> dict[str, float | np.ndarray | None]:
        """The set's metrics under image weights ``w`` (N,) (default 1): fractions "pq", "rq", "sq",
        "ap", "dice" (NaN / None when undefined) and, with FROC, "froc:<name>" (len(FROC_GRID),)
        sensitivities and "cpm:<name>" for each lesion class and "all". ``size_bin``: FROC only."""
        w = np.ones(self.n_images) if w is None else np.asarray(w, dtype=np.float64)
        out: dict[str, float | np.ndarray | None] = {}
        if size_bin is None:
            tp = w @ self.tp
            fp = w @ (self.n_pred - self.tp)
            fn = w @ (self.n_gt - self.tp)
            pq_c, rq_c, sq_c = pq_per_class(tp[None], fp[None], fn[None], (w @ self.iou_sum)[None])
            occurs = (w @ (self.n_gt + self.n_pred)) > 0
            for key, v in (("pq", pq_c), ("rq", rq_c), ("sq", sq_c)):
                out[key] = float(class_mean(v, occurs)[0])
            n_gt = w @ self.ap_n_gt
            per_class = []
            for k, dets in enumerate(self.ap_dets):
                if dets is None or n_gt[k] == 0:
                    per_class.append(None)
                    continue
                matched, img = dets
                per_class.append(_weighted_precision(matched, w[img], float(n_gt[k])))
            out["ap"] = mean_ap(per_class)
            dice_c = dice_per_class(w @ self.inter, w @ self.pred_area, w @ self.gt_area)
            use = self.dice_classes & ~np.isnan(dice_c)
            out["dice"] = float(dice_c[use].mean()) if use.any() else float("nan")
        if self.has_froc:
            for name in self.froc_names:
                curve = self.froc_curve(name, w, size_bin)
                sens = None if curve is None else froc_at(*curve, FROC_GRID)
                out[f"froc:{name}"] = sens
                out[f"cpm:{name}"] = None if sens is None else float(np.mean(sens[FPS_INDEX]))
        return out
