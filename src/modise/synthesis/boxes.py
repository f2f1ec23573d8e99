"""Lesion boxes for inpainting, drawn from real lesion statistics and kept inside the breast.

A box's area is a log-normal fraction of the breast's area and its aspect (w/h) a
log-normal around 1, as fitted on radiologist masks (:func:`fit_box_stats`). The box
must lie wholly inside the breast mask (eroded by a skin margin).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modise.errors import ModiseError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


@dataclass(frozen=True)
class LesionBoxStats:
    """Log-normal box statistics: ln(box area / breast area) and ln(width / height)."""

    log_area_mean: float
    log_area_std: float
    log_aspect_mean: float
    log_aspect_std: float
    min_area_frac: float = 0.003
    max_area_frac: float = 0.15


# Fitted with fit_box_stats on the CDD-CESM sample (src/modise/assets/samples: 10
# images, their lesion components, radiologist masks); see tests/test_synthesis_boxes.py.
CDD_CESM_BOX_STATS = LesionBoxStats(log_area_mean=-3.24, log_area_std=1.61, log_aspect_mean=0.05, log_aspect_std=0.35)


def fit_box_stats(lesion_masks, breast_masks, min_fill: float = 0.1, min_pixels: int = 30) -> LesionBoxStats:
    """Fit :class:`LesionBoxStats` on lesion masks (one or more components each) and breast masks.

    Components filling less than ``min_fill`` of their box are annotation strokes (e.g. a
    line along the skin), not lesions, and are skipped.
    """
    from scipy import ndimage

    log_area, log_aspect = [], []
    for lesion, breast in zip(lesion_masks, breast_masks, strict=True):
        labels, _ = ndimage.label(np.asarray(lesion, bool))
        breast_area = max(int(np.asarray(breast, bool).sum()), 1)
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            if h * w < min_pixels or (labels[sl] == i).sum() < min_fill * h * w:
                continue
            log_area.append(np.log(h * w / breast_area))
            log_aspect.append(np.log(w / h))
    if len(log_area) < 2:
        raise ModiseError("Need at least two lesions to fit box statistics.")
    return LesionBoxStats(
        float(np.mean(log_area)), float(np.std(log_area)), float(np.mean(log_aspect)), float(np.std(log_aspect))
    )


def _valid_corners(integral: np.ndarray, w: int, h: int) -> np.ndarray:
    """(N, 2) array of (y0, x0) where an h x w box lies wholly in the mask (summed-area table)."""
    inside = integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]
    return np.argwhere(inside == w * h)


def sample_box(
    breast: np.ndarray,
    rng: np.random.Generator,
    stats: LesionBoxStats = CDD_CESM_BOX_STATS,
    max_side: int | None = None,
    margin: float = 0.02,
    draws: int = 20,
) -> Box:
    """Draw a lesion box wholly inside ``breast`` (H, W bool), at most ``max_side`` per side.

    Size and aspect come from ``stats``; the position is uniform over all places the box
    fits (so large boxes are not rejected more often than small ones). A size that fits
    nowhere is shrunk until it does.
    """
    from modise.synthesis.breast_mask import inner_breast

    breast = np.asarray(breast, bool)
    inner = inner_breast(breast, margin)
    if inner.sum() < 16:
        raise ModiseError("The breast region is too small (or not found) to place a lesion box.")
    area = int(breast.sum())
    integral = np.pad(inner.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    H, W = breast.shape
    max_side = min(max_side or max(H, W), H, W)
    for _ in range(draws):
        frac = float(np.exp(rng.normal(stats.log_area_mean, stats.log_area_std)))
        frac = float(np.clip(frac, stats.min_area_frac, stats.max_area_frac))
        aspect = float(np.exp(rng.normal(stats.log_aspect_mean, stats.log_aspect_std)))
        w = int(np.clip(round(np.sqrt(frac * area * aspect)), 4, max_side))
        h = int(np.clip(round(np.sqrt(frac * area / aspect)), 4, max_side))
        while w >= 4 and h >= 4:
            corners = _valid_corners(integral, w, h)
            if len(corners):
                y0, x0 = (int(v) for v in corners[int(rng.integers(len(corners)))])
                return (x0, y0, x0 + w, y0 + h)
            w, h = int(w * 0.85), int(h * 0.85)
    raise ModiseError("Could not place a lesion box inside the breast; the breast region is too small.")


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """(H, W) bool mask that is True inside ``box``."""
    m = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


@dataclass(frozen=True)
class MameBoxStats:
    """MAM-E's lesion-box statistics in the 512 frame (``generation/inpainting/siemens_inpainting.py:52-127``).

    ``area_q25``-``area_q75``: 25th-75th percentile of the training masks' areas (px of a
    ``side`` x ``side`` frame); ``ratio_mean`` +- ``ratio_std``: of the annotation boxes'
    height / width.
    """

    area_q25: float
    area_q75: float
    ratio_mean: float
    ratio_std: float
    side: int = 512

    def scaled(self, side: int) -> "MameBoxStats":
        """The same statistics for a frame of ``side`` px (areas scale with the side squared)."""
        k = (side / self.side) ** 2
        return MameBoxStats(self.area_q25 * k, self.area_q75 * k, self.ratio_mean, self.ratio_std, side)


# Fitted with fit_mame_box_stats on the CDD-CESM sample's radiologist masks (22 lesions, one bounding box per
# lesion, mapped into the 512 frame as `mame prepare --inpainting` does); VinDr's own Mass boxes,
# which MAM-E used, are not public without a licence: `mame prepare --inpainting` writes
# box_stats.json from your data and `modise inpaint --model RUN` reads it from the run folder.
CDD_CESM_MAME_BOX_STATS = MameBoxStats(area_q25=760.0, area_q75=14790.0, ratio_mean=1.03, ratio_std=0.47)


def fit_mame_box_stats(masks, side: int = 512) -> MameBoxStats:
    """MAM-E's statistics from (side, side) training masks, one filled box each (or any lesion mask).

    Area: the percentiles of mask pixel counts (siemens_inpainting.py:58-72); ratio: height /
    width of each mask's bounding box (MAM-E took it from the annotation boxes, l.74-97).
    """
    areas, ratios = [], []
    for m in masks:
        m = np.asarray(m, bool)
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        areas.append(float(m.sum()))
        ratios.append((ys.max() - ys.min() + 1) / (xs.max() - xs.min() + 1))
    if len(areas) < 2:
        raise ModiseError("Need at least two lesion masks to fit box statistics.")
    return MameBoxStats(float(np.percentile(areas, 25)), float(np.percentile(areas, 75)),
                        float(np.mean(ratios)), float(np.std(ratios)), side)


def sample_mame_box(breast: np.ndarray, rng: np.random.Generator, stats: MameBoxStats,
                    tries: int = 20000) -> Box:
    """MAM-E's box draw (siemens_inpainting.py:134-161): a corner uniform in the breast's bounding
    box, area uniform in [q25, q75), ratio uniform in mean +- std, width sqrt(area * ratio) and
    height sqrt(area / ratio) (as the original: ``ratio`` is height / width there too); kept
    only when the whole box lies in the breast, else drawn again.
    """
    breast = np.asarray(breast, bool)
    if breast.sum() < 16:
        raise ModiseError("The breast region is too small (or not found) to place a lesion box.")
    ys, xs = np.nonzero(breast)
    integral = np.pad(breast.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    H, W = breast.shape
    lo, hi = int(stats.area_q25), max(int(stats.area_q75), int(stats.area_q25) + 1)
    r_lo, r_hi = stats.ratio_mean - stats.ratio_std, stats.ratio_mean + stats.ratio_std
    for _ in range(tries):
        x0 = int(rng.integers(xs.min(), xs.max() + 1))
        y0 = int(rng.integers(ys.min(), ys.max() + 1))
        area = int(rng.integers(lo, hi))
        ratio = max(float(rng.uniform(r_lo, r_hi)), 0.05)
        w, h = int(np.sqrt(area * ratio)), int(np.sqrt(area / ratio))
        x1, y1 = x0 + w, y0 + h
        if w < 1 or h < 1 or x1 > W or y1 > H:
            continue
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        if inside == w * h:
            return (x0, y0, x1, y1)
    raise ModiseError("Could not place a lesion box inside the breast; the breast region is too small for the "
                      "box statistics.")


BOX_STATS_FILE = "box_stats.json"


def save_box_stats(stats: MameBoxStats, folder: Path) -> Path:
    """Write ``folder/box_stats.json`` (``mame prepare --inpainting`` and the inpainting run folder)."""
    import json
    from dataclasses import asdict

    path = Path(folder) / BOX_STATS_FILE
    path.write_text(json.dumps(asdict(stats), indent=2))
    return path


def load_box_stats(folder: str | Path | None) -> MameBoxStats | None:
    """The box statistics saved beside a prepared folder or an inpainting run, or None."""
    import json

    path = Path(folder).expanduser() / BOX_STATS_FILE if folder else None
    if path is None or not path.is_file():
        return None
    try:
        return MameBoxStats(**json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise ModiseError(f"{path}: not a box statistics file ({e}).") from None
