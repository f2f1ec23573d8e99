"""Every metric by lesion size: the size bins, and each image's PQ, Dice and AP statistics per bin.

The bins (:class:`SizeBins`) are known only once every image is matched (terciles need all lesion
areas), so matching keeps per image what the split needs (segment areas and overlaps, and for AP
the detections x GT IoUs with their areas, :class:`.coco_ap.AreaPairs`) and :class:`SizeStats`
splits them afterwards, at the selected IoU threshold, never re-reading a mask:

* PQ/RQ/SQ: a TP and a FN count in the bin of their GT segment, a FP in its own segment's bin.
* Dice (lesion classes, pooled pixels as the set's Dice): per bin, |P ∩ G| / (|P| + |G|) with G the
  pixels of that bin's GT lesions, P ∩ G the predicted pixels of the class inside them, and P those
  plus the predicted pixels outside every lesion of the class that belong to a segment whose largest
  overlap is a lesion of that bin (a segment overlapping no lesion: in its own size's bin). Each pixel
  counts in one bin, so the bins' counts add up to the set's.
* AP: COCOeval with the bin as its area range (``params.areaRng``): GT outside the bin ignored, a
  detection matched to one ignored, an unmatched detection outside the bin ignored
  (:func:`.coco_ap.coco_greedy_ranges`), then accumulate as for the whole set. Lesion classes only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .coco_ap import coco_greedy_ranges, weighted_ap
from .dice import dice_per_class
from .matching import ImageResult
from .panoptic_quality import count_means, masked_mean

SIZE_BINS_MM = (10.0, 20.0)  # equivalent diameter: <= 10, 10-20, > 20 mm
SIZE_NAMES_MM = ("<=10 mm", "10-20 mm", ">20 mm")
SIZE_NAMES_TERCILE = ("small (area tercile 1)", "medium (area tercile 2)", "large (area tercile 3)")
N_BINS = 3


class SizeBins:
    """Segment size -> bin 0/1/2 (small / medium / large).

    By equivalent diameter 2 sqrt(area / pi) x pixel spacing (mm): <= 10, 10-20, > 20 mm, when every
    image with lesions has its spacing; otherwise by terciles of the set's lesion pixel areas. Bins are
    (lo, hi] (the first [0, hi]); in pixels of an image, the mm edges are the areas pi (d / 2 spacing)^2."""

    def __init__(self, results: Sequence[ImageResult], spacing: Sequence[float | None]) -> None:
        areas = [np.zeros(0) if r.froc is None else r.froc.gt_area.astype(np.float64) for r in results]
        self.spacing = list(spacing)
        self._scale = np.array([s or 1.0 for s in self.spacing], dtype=np.float64)  # mm per pixel, by image number
        self.mm = all(s for a, s in zip(areas, spacing) if a.size)
        if self.mm:
            self.names, self.how = SIZE_NAMES_MM, "equivalent diameter 2*sqrt(area/pi) x pixel spacing"
        else:
            flat = np.concatenate(areas) if areas else np.zeros(0)
            self.cuts = np.quantile(flat, [1 / 3, 2 / 3]) if flat.size else np.zeros(2)
            self.names, self.how = SIZE_NAMES_TERCILE, "pixel-area terciles of the set's lesions (pixel spacing unknown)"

    def __call__(self, areas: np.ndarray, image: int | np.ndarray) -> np.ndarray:
        """(K,) pixel areas of segments of image number ``image`` (an int, or (K,) image numbers) -> (K,) bins."""
        areas = np.asarray(areas, dtype=np.float64)
        if self.mm:
            return np.digitize(2.0 * np.sqrt(areas / np.pi) * self._scale[image], SIZE_BINS_MM, right=True)
        return np.digitize(areas, self.cuts, right=True)


def lesion_size_bins(results: Sequence[ImageResult], spacing: Sequence[float | None]) -> tuple[list[np.ndarray], SizeBins]:
    """Each image's FROC lesions (:class:`.froc.FrocImage` order) -> size bin, and the binning."""
    sizes = SizeBins(results, spacing)
    return [np.zeros(0, np.int64) if r.froc is None else sizes(r.froc.gt_area, i) for i, r in enumerate(results)], sizes


def _pq_counts(r: ImageResult, gb: np.ndarray, pb: np.ndarray, thr32: np.float32, hi: bool, out: np.ndarray) -> None:
    """Add image ``r``'s TP, FP, FN, IoU sum to ``out`` (bins, 4, C) (MONAI's float32 comparison); ``gb``/``pb``:
    its GT / predicted segments' bins."""
    s = r.segments
    pairs, iou = (s.pairs_hi, s.iou_hi) if hi else (s.pairs_lo, s.iou_lo)
    keep = iou > thr32
    pairs, iou = pairs[keep], iou[keep].astype(np.float64)
    g_tp = np.zeros(s.g_area.size, bool)
    p_tp = np.zeros(s.p_area.size, bool)
    g_tp[pairs[:, 0]] = True
    p_tp[pairs[:, 1]] = True
    np.add.at(out, (gb[pairs[:, 0]], 0, s.g_cat[pairs[:, 0]]), 1)
    np.add.at(out, (gb[pairs[:, 0]], 3, s.g_cat[pairs[:, 0]]), iou)
    np.add.at(out, (pb[~p_tp], 1, s.p_cat[~p_tp]), 1)
    np.add.at(out, (gb[~g_tp], 2, s.g_cat[~g_tp]), 1)


def _dice_counts(r: ImageResult, gb: np.ndarray, pb: np.ndarray, out: np.ndarray) -> None:
    """Add image ``r``'s Dice pixels to ``out`` (bins, 3: intersection, predicted, GT, C) (module docstring)."""
    s = r.segments
    g, p, px = s.pairs_hi[:, 0], s.pairs_hi[:, 1], s.inter_hi.astype(np.float64)  # same-class overlaps
    np.add.at(out, (gb, 2, s.g_cat), s.g_area)
    np.add.at(out, (gb[g], 0, s.g_cat[g]), px)
    np.add.at(out, (gb[g], 1, s.g_cat[g]), px)  # predicted pixels inside a lesion of their class
    outside = s.p_area - np.bincount(p, weights=px, minlength=s.p_area.size)
    home = pb.copy()  # a segment overlapping no lesion of its class: its own size
    if g.size:
        first = np.lexsort((g, -px, p))  # per segment, its largest overlap first (lowest GT position on ties)
        lead = first[np.r_[True, p[first][1:] != p[first][:-1]]]
        home[p[lead]] = gb[g[lead]]
    np.add.at(out, (home, 1, s.p_cat), outside)


class SizeStats:
    """Per image and size bin, the PQ, Dice and AP statistics at IoU threshold ``threshold`` of N images
    (COCO order), to be weighted like :class:`.stats.SetStats`'s.

    ``inst``: AP on the instance predictions (else the panoptic segments); ``lesion`` (C,) bool: the
    lesion classes AP and Dice use. Shapes: ``pq`` (N, bins, 4, C) TP/FP/FN/IoU sum; ``dice`` (N, bins,
    3, C) intersection/predicted/GT pixels; ``ap_n_gt`` (N, bins, C); ``ap_dets[b][k]``: (TP flag, image)
    of the detections class k keeps in bin b, in COCOeval's accumulate order, or None."""

    def __init__(self, results: Sequence[ImageResult], sizes: SizeBins, threshold: float, inst: bool, lesion: np.ndarray) -> None:
        n, c = len(results), lesion.size
        self.lesion = np.asarray(lesion, dtype=bool)
        self.pq = np.zeros((n, N_BINS, 4, c))
        self.dice = np.zeros((n, N_BINS, 3, c))
        self.ap_n_gt = np.zeros((n, N_BINS, c))
        thr32, hi = np.float32(threshold), threshold >= 0.5
        coco_thr = min(threshold, 1 - 1e-10)
        bins = np.arange(N_BINS)[:, None]
        kept: list[list[tuple]] = [[] for _ in range(c)]  # per class: (scores, image, TP (bins, D), matched (bins, D), areas)
        for i, r in enumerate(results):
            s = r.segments
            gb, pb = sizes(s.g_area, i), sizes(s.p_area, i)
            _pq_counts(r, gb, pb, thr32, hi, self.pq[i])
            _dice_counts(r, gb, pb, self.dice[i])
            use = self.lesion[s.g_cat]
            np.add.at(self.ap_n_gt[i], (gb[use], s.g_cat[use]), 1)
            scores, pairs = (r.inst_scores, r.inst_pairs) if inst else (r.det_scores, r.det_pairs)
            for k, ap in (pairs or {}).items():
                if not self.lesion[k]:
                    continue
                if ap.iou.size and ap.iou.max() >= coco_thr:
                    gt_ignore = sizes(ap.gt_area, i)[None, :] != bins  # (bins, G)
                    matched, on_ignored = coco_greedy_ranges(ap.dense(), coco_thr, gt_ignore)
                    tp = matched & ~on_ignored
                else:  # nothing reaches the threshold: every detection unmatched in every bin
                    matched = tp = np.zeros((N_BINS, ap.det_area.size), bool)
                kept[k].append((scores[k], np.full(ap.det_area.size, i), tp, matched, ap.det_area))
        self.ap_dets: list[list[tuple[np.ndarray, np.ndarray] | None]] = [[None] * c for _ in range(N_BINS)]
        for k in np.flatnonzero(self.lesion):
            none = np.zeros((N_BINS, 0), bool)
            parts = list(zip(*kept[k])) or [[np.zeros(0)], [np.zeros(0, np.int64)], [none], [none], [np.zeros(0)]]
            sc, img, tp, matched, area = (np.concatenate(x, axis=-1) for x in parts)
            keep = tp | (~matched & (sizes(area, img)[None, :] == bins))  # ignored detections drop out
            order = np.argsort(-sc, kind="mergesort")  # COCOeval's accumulate (stable over image order)
            for b in range(N_BINS):
                sel = order[keep[b][order]]
                self.ap_dets[b][k] = (tp[b][sel], img[sel].astype(np.int64))

    def counts(self, b: int, w: np.ndarray) -> np.ndarray:
        """(4, C) TP, FP, FN, IoU sum of bin ``b`` under image weights ``w`` (N,)."""
        return np.tensordot(w, self.pq[:, b], axes=1)

    def count_metrics(self, b: int, weights: np.ndarray) -> dict[str, np.ndarray]:
        """"pq", "rq", "sq", "dice" (B,) of bin ``b`` under B image weightings ``weights`` (B, N) at once:
        PQ family over the classes occurring in the bin, Dice over the lesion classes with pixels in it."""
        tp, fp, fn, iou = np.moveaxis(np.tensordot(weights, self.pq[:, b], axes=1), 1, 0)  # 4 x (B, C)
        out = count_means(tp, fp, fn, iou, (tp + fp + fn) > 0)
        inter, pred, gt = np.moveaxis(np.tensordot(weights, self.dice[:, b], axes=1), 1, 0)
        dice_c = dice_per_class(inter, pred, gt)
        out["dice"] = masked_mean(dice_c, self.lesion[None] & ~np.isnan(dice_c))
        return out

    def metrics(self, b: int, w: np.ndarray) -> dict[str, float | None]:
        """Fractions "pq", "rq", "sq", "ap", "dice" of bin ``b`` under image weights ``w`` (N,) (NaN / None
        when undefined); AP over the lesion classes with GT in the bin."""
        out: dict[str, float | None] = {k: float(v[0]) for k, v in self.count_metrics(b, w[None]).items()}
        out["ap"] = weighted_ap(self.ap_dets[b], w, w @ self.ap_n_gt[:, b])
        return out
