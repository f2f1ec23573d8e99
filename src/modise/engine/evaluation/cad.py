"""The CAD-study numbers of one evaluation, beside the paper's: FROC per lesion class and over all
lesions, patient-level bootstrap intervals, breakdowns by lesion size and by image attribute.

All come from :class:`.stats.SetStats` at the selected (best-PQ) IoU threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .bootstrap import CI_LEVEL, count_replicates, patient_index, percentile_ci, replicates
from .froc import ALL, FROC_FPS, FROC_GRID
from .matching import image_order_key
from .by_size import SizeStats, lesion_size_bins
from .stats import FPS_INDEX, SetStats

ATTRIBUTES = ("breast_density", "view", "laterality", "manufacturer", "modality")  # breakdown keys of panoptic.json images
SCALARS = ("pq", "rq", "sq", "ap", "dice")
BREAKDOWN_CI = ("pq", "rq", "sq", "dice")  # sums of per-image counts: all replicates in a few matrix products
LABELS = {"pq": "PQ", "rq": "RQ", "sq": "SQ", "ap": "AP", "dice": "Dice", "cpm": "CPM"}  # as the paper writes them
UNKNOWN = "unknown"


def _pct(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(100.0 * v)


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def evaluator_stats(ev: Any, t_index: int, source: str, spacing: Sequence[float | None] | None = None,
                    by_size: bool = True) -> SetStats:
    """:class:`SetStats` of a :class:`~.evaluator.PanopticEvaluator`'s images at ``thresholds[t_index]``
    (``by_size``: with the PQ/Dice/AP statistics of each lesion size bin)."""
    results = sorted(ev.results, key=lambda r: image_order_key(r.image_id))
    lesion = np.array([c.isthing == 1 for c in ev.categories])
    if not lesion.any():
        lesion[:] = True
    bins = lesion_size_bins(results, spacing or [None] * len(results)) if results and results[0].froc is not None else None
    stats = SetStats(results, [c.name for c in ev.categories], t_index, source, ev.instance_classes, lesion,
                     None if bins is None else bins[0])
    stats.sizes = None if bins is None else bins[1]
    if by_size and bins is not None and all(r.segments is not None for r in results):
        stats.by_size = SizeStats(results, bins[1], float(ev.thresholds[t_index]), source == "instances", lesion)
    return stats


def froc_block(stats: SetStats, point: dict[str, Any], reps: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """metrics.json's ``froc``: per lesion class and "all", sensitivity at FROC_FPS, CPM, CIs and the
    curve on FROC_GRID (fractions)."""
    out = {}
    for name in stats.froc_names:
        sens = point[f"froc:{name}"]
        lesions = stats.lesions(name)
        entry: dict[str, Any] = {"fps": list(FROC_FPS), "lesions": lesions,
                                 "sensitivity": None if sens is None else [float(v) for v in sens[FPS_INDEX]],
                                 "cpm": _num(point[f"cpm:{name}"])}
        grid_ci, entry["ci"] = None, None  # no bootstrap: no interval
        if reps is not None:
            entry["ci"] = percentile_ci(reps[f"cpm:{name}"])
            grid_ci = percentile_ci(reps[f"froc:{name}"])
            entry["sensitivity_ci"] = [grid_ci[i] for i in FPS_INDEX]
        entry["curve"] = {"fps": [float(v) for v in FROC_GRID], "sensitivity": None if sens is None else [float(v) for v in sens],
                          **({"ci": grid_ci} if grid_ci is not None else {})}
        out[name] = entry
    return out


def _scalars(m: dict[str, Any], stats: SetStats) -> dict[str, Any]:
    row = {k: _pct(m.get(k)) for k in SCALARS if k in m}
    if stats.has_froc:
        row["cpm"] = {name: _num(m[f"cpm:{name}"]) for name in stats.froc_names}
    return row


def _segments(stats: SetStats, b: int) -> dict[str, int]:
    """Size bin ``b``'s PQ segment counts at the selected threshold."""
    tp, fp, fn, _ = stats.by_size.counts(b, np.ones(stats.n_images))
    return {"tp": int(tp.sum()), "fp": int(fp.sum()), "fn": int(fn.sum())}


def breakdowns(stats: SetStats, attributes: Sequence[dict[str, Any]] | None,
               boot: tuple[np.ndarray, int, int] | None = None) -> dict[str, Any]:
    """``by``: every metric by lesion size (:mod:`.by_size`) and by each image attribute present. ``boot``:
    (patient index (N,), replicates, seed) gives each row the 95 % intervals of the metrics that are sums
    of per-image counts (PQ, RQ, SQ, Dice), over the resamples of the set's own intervals."""
    by: dict[str, Any] = {}
    rows: list[tuple[dict[str, Any], Any]] = []  # each row and its count metrics under a (B, N) weighting
    if stats.has_froc and stats.size_bins is not None:
        sizes: dict[str, Any] = {"how": stats.sizes.how, "bins": {}}
        for b, name in enumerate(stats.sizes.names):
            m = stats.metrics(size_bin=b)
            row: dict[str, Any] = {"lesions": int(sum(int((bins == b).sum()) for bins in stats.size_bins))}
            if stats.by_size is not None:
                row["segments"] = _segments(stats, b)
                rows.append((row, lambda weights, b=b: stats.by_size.count_metrics(b, weights)))
            row.update(_scalars(m, stats))
            row["sensitivity"] = {k: None if m[f"froc:{k}"] is None else [float(v) for v in m[f"froc:{k}"][FPS_INDEX]]
                                  for k in stats.froc_names}
            sizes["bins"][name] = row
        by["lesion_size"] = sizes
    if attributes:
        for key in ATTRIBUTES:
            values = [str(a.get(key) or "").strip() or UNKNOWN for a in attributes]
            if all(v == UNKNOWN for v in values):
                continue
            groups = {}
            for v in sorted(set(values)):
                w = np.array([x == v for x in values], dtype=np.float64)
                groups[v] = {"images": int(w.sum()), **_scalars(stats.metrics(w), stats)}
                rows.append((groups[v], lambda weights, w=w: stats.count_metrics(weights * w)))
            by[key] = groups
    if boot is not None and rows:
        for (row, _), reps in zip(rows, count_replicates([fn for _, fn in rows], *boot)):
            row["ci"] = {k: [_pct(x) for x in percentile_ci(reps[k])] for k in BREAKDOWN_CI}
    return by


def cad_metrics(ev: Any, t_index: int, source: str, bootstrap: int = 0, seed: int = 0,
                images: dict[Any, dict[str, Any]] | None = None) -> dict[str, Any]:
    """FROC, bootstrap CIs and breakdowns of an evaluator's images at ``thresholds[t_index]``.

    ``images``: image id -> its panoptic.json record (``patient_id``, ``pixel_spacing`` in mm, attributes)."""
    images = images or {}
    ids = sorted((r.image_id for r in ev.results), key=image_order_key)
    recs = [images.get(i, {}) for i in ids]
    spacing = [_spacing(r) for r in recs]
    stats = evaluator_stats(ev, t_index, source, spacing)
    point = stats.metrics()
    out: dict[str, Any] = {}
    reps = boot = None
    if bootstrap and stats.n_images:
        pidx, n_pat, note = patient_index(ids, {i: r.get("patient_id") for i, r in zip(ids, recs)})
        reps = replicates([stats], pidx, bootstrap, seed)[0]
        boot = (pidx, int(bootstrap), int(seed))
        out["ci"] = {k: [_pct(v) for v in percentile_ci(reps[k])] for k in SCALARS}
        out["bootstrap"] = {"replicates": int(bootstrap), "seed": int(seed), "level": CI_LEVEL, "patients": n_pat,
                            "images": stats.n_images, "method": "95 % percentile interval over patient-level resamples",
                            "breakdowns": "rows have intervals of PQ, RQ, SQ and Dice (the same resamples); none of AP "
                                          "or CPM, each of which would cost as much as all the set's replicates",
                            **({"note": note} if note else {})}
    else:
        out["bootstrap"] = {"replicates": 0, "seed": int(seed)}
    if stats.has_froc:
        hit_iou, hit = ev.froc
        out["froc"] = froc_block(stats, point, reps)
        out["froc_protocol"] = {"hit": hit, **({"iou": hit_iou} if hit == "iou" else {}), "detections": source,
                                "units": "sensitivity as a fraction of lesions; fps = mean false positives per image"}
    out["by"] = breakdowns(stats, recs if any(recs) else None, boot)
    return out


def _spacing(rec: dict[str, Any]) -> float | None:
    """A panoptic.json image's pixel spacing in mm (``pixel_spacing``: a number or [row, col])."""
    v = rec.get("pixel_spacing")
    try:
        v = float(np.mean([float(x) for x in v])) if isinstance(v, (list, tuple)) else (float(v) if v is not None else None)
    except (TypeError, ValueError):
        return None
    return v if v and v > 0 else None


__all__ = ["ALL", "ATTRIBUTES", "cad_metrics", "evaluator_stats"]
