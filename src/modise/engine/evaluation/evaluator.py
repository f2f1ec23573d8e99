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
from .cad import cad_metrics
from .froc import DEFAULT_FROC_IOU, FROC_HITS
from .matching import ImageResult, image_order_key, match_image
from .panoptic_quality import best_index, class_mean, pq_per_class

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 19))  # 0.05 .. 0.90
AP_SOURCES = ("instances", "panoptic")
MAX_THRESHOLDS = 1000  # each is a full PQ pass


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
            if n > MAX_THRESHOLDS:
                raise ModiseError(f"'{spec}' gives {n:,} thresholds, more than {MAX_THRESHOLDS}; use a larger step.")
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


_sort_key = image_order_key


class PanopticEvaluator:
    """Accumulates PQ/RQ/SQ (every threshold), COCO AP and Dice over a set of images.

    Args:
        categories: the dataset's classes; segment ``category_id`` values refer to them.
        thresholds: IoU thresholds in (0, 1]; default 0.05 .. 0.90 step 0.05.
        strict: a listed segment without pixels is an error (folder evaluation); by default
            it is ignored, as it is invisible to MONAI too (e.g. a lesion lost in resizing).
        ap_source: ``"instances"`` (default, detectron2's protocol for Mask2Former/ODISE: AP on
            the top-100 possibly overlapping instances of each image, thing classes only) or
            ``"panoptic"`` (AP on the non-overlapping panoptic segments, all classes). Without
            any instances added, ``"instances"`` falls back to panoptic and says so in
            ``compute()["ap_source_note"]``.
        froc_iou, froc_hit: FROC's hit rule (:mod:`.froc`): mask IoU >= ``froc_iou`` ("iou") or the
            detection's centroid inside the lesion ("centroid"); FROC uses the instances AP uses
            (else the panoptic segments with their scores) and the lesion (thing) classes.
    """

    def __init__(
        self, categories: Sequence[Category], thresholds: Sequence[float] | None = None, strict: bool = False,
        ap_source: str = "instances", froc_iou: float = DEFAULT_FROC_IOU, froc_hit: str = "iou",
    ) -> None:
        if not categories:
            raise ModiseError("The dataset defines no categories.")
        if ap_source not in AP_SOURCES:
            raise ModiseError(f"AP source '{ap_source}' is not one of {', '.join(AP_SOURCES)}.")
        self.categories = sorted(categories, key=lambda c: c.id)  # COCOeval uses sorted catIds
        self.cat_index = {c.id: i for i, c in enumerate(self.categories)}
        self.thresholds = check_thresholds(thresholds)
        self.strict = strict
        self.ap_source = ap_source
        if froc_hit not in FROC_HITS:
            raise ModiseError(f"FROC hit rule '{froc_hit}' is not one of {', '.join(FROC_HITS)}.")
        if not (0.0 < float(froc_iou) <= 1.0):
            raise ModiseError(f"FROC IoU {froc_iou} is outside (0, 1].")
        self.froc = (float(froc_iou), froc_hit)
        # detectron2's instance GT holds thing classes only (all classes if none is a thing)
        things = np.array([c.isthing == 1 for c in self.categories])
        self.instance_classes = things if things.any() else np.ones_like(things)
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
        self.inst_n_gt = np.zeros(C, dtype=np.int64)
        self._inst_dets: list[tuple[tuple, dict[int, np.ndarray], dict[int, np.ndarray]]] = []
        self._with_instances = 0
        self._seen: set = set()
        self._results: list[ImageResult] = []  # per image: the bootstrap's sufficient statistics

    def add(
        self,
        image_id: object,
        gt_ids: np.ndarray,
        gt_segments: Sequence[dict],
        pred_ids: np.ndarray,
        pred_segments: Sequence[dict],
        instances: Sequence[dict] | None = None,
    ) -> None:
        """Score one image. ``gt_ids``/``pred_ids``: (H, W) int segment-id maps (0 = background);
        segments: dicts with ``id``, ``category_id`` (+ ``score`` for predictions).
        ``instances``: the image's instance predictions for AP, dicts with ``category_id``,
        ``score`` and ``segmentation`` (COCO RLE) or ``mask`` ((H, W) bool); masks may overlap
        (:func:`~.instances.instance_records` makes them from a model result)."""
        self.add_result(match_image(image_id, gt_ids, gt_segments, pred_ids, pred_segments, self.cat_index, self.thresholds,
                                    strict=self.strict, instances=instances, instance_classes=self.instance_classes,
                                    froc=self.froc))

    def add_result(self, r: ImageResult) -> None:
        """Fold in a result computed elsewhere (e.g. by a worker process)."""
        if r.image_id in self._seen:
            raise ModiseError(f"image {r.image_id}: added twice to the evaluation.")
        self._seen.add(r.image_id)
        self._results.append(r)
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
        if r.inst_scores is not None:
            self._with_instances += 1
            self.inst_n_gt += r.inst_n_gt
            if r.inst_scores or r.inst_n_gt.any():
                self._inst_dets.append((_sort_key(r.image_id), r.inst_scores, r.inst_matched))

    @property
    def results(self) -> list[ImageResult]:
        """Every image's result as added (the sufficient statistics of :mod:`.stats`)."""
        return self._results

    @property
    def num_images(self) -> int:
        return len(self._seen)

    def resolved_ap_source(self) -> tuple[str, str | None]:
        """(source AP is computed on, note when the requested one could not be used)."""
        if self.ap_source == "panoptic":
            return "panoptic", None
        if self._with_instances == 0 and self.num_images:
            return "panoptic", "no image came with instance predictions, so AP is computed on the panoptic segments"
        if 0 < self._with_instances < self.num_images:
            raise ModiseError(f"Instance predictions came with {self._with_instances} of {self.num_images} images; "
                              "give them for every image or for none.")
        return "instances", None

    def average_precision(self, t_index: int, source: str | None = None) -> tuple[float | None, list[float | None]]:
        """COCO AP (fraction) at ``thresholds[t_index]`` and per class, on ``source``
        (default: :meth:`resolved_ap_source`)."""
        source = source or self.resolved_ap_source()[0]
        dets, n_gt = (self._inst_dets, self.inst_n_gt) if source == "instances" else (self._dets, self.n_gt)
        dets = sorted(dets, key=lambda d: d[0])  # COCOeval walks images by ascending id
        per_class = []
        for c in range(len(self.categories)):
            if source == "instances" and not self.instance_classes[c]:
                per_class.append(None)  # not in the instance GT (a stuff class)
                continue
            scores = [s[c] for _, s, _ in dets if c in s]
            matched = [m[c][t_index] for _, s, m in dets if c in s]
            per_class.append(class_precision(scores, matched, int(n_gt[c])))
        ap_c = [None if p is None else float(np.mean(p)) for p in per_class]
        return mean_ap(per_class), ap_c

    def compute(self, bootstrap: int = 0, seed: int = 0, images: dict[Any, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The metrics.json structure (percentages): thresholds, pq, rq, sq, ap (per threshold), ap_source
        (+ ap_source_note when it fell back), best (AP at the best-PQ threshold), dice, per_class; and
        (:mod:`.cad`) froc, froc_protocol, by (breakdowns), bootstrap and, with ``bootstrap`` replicates,
        ci (patient-level 95 % intervals at the best threshold). ``images``: image id -> panoptic.json
        image record (patient_id, pixel_spacing, attributes)."""
        pq_c, rq_c, sq_c = pq_per_class(self.tp, self.fp, self.fn, self.iou_sum)
        occurs = (self.n_gt + (self.tp[0] + self.fp[0])) > 0  # in GT or prediction
        pq, rq, sq = (class_mean(v, occurs) for v in (pq_c, rq_c, sq_c))
        b = best_index(pq)
        source, note = self.resolved_ap_source()
        ap_all = [self.average_precision(i, source) for i in range(len(self.thresholds))]
        ap, ap_c = ap_all[b]
        ap_by_source = {source: _pct(ap)}
        if source == "instances":
            ap_by_source["panoptic"] = _pct(self.average_precision(b, "panoptic")[0])
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
        cad = cad_metrics(self, b, source, bootstrap, seed, images)
        if note and "froc_protocol" in cad:
            cad["froc_protocol"]["note"] = "no instance predictions, so FROC uses the panoptic segments with their scores"
        return {
            "thresholds": [float(t) for t in self.thresholds],
            "pq": _pct_list(pq),
            "rq": _pct_list(rq),
            "sq": _pct_list(sq),
            "ap": [_pct(a) for a, _ in ap_all],
            "ap_source": source,
            **({"ap_source_note": note} if note else {}),
            "best": {"threshold": t_best, "pq": _pct(float(pq[b])), "rq": _pct(float(rq[b])), "sq": _pct(float(sq[b])), "ap": _pct(ap),
                     "ap_by_source": ap_by_source},
            "dice": _pct(dice),
            "per_class": per_class,
            **cad,
        }
