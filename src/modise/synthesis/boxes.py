"""Lesion boxes for inpainting, drawn from real lesion statistics and kept inside the breast.

A box's area is a log-normal fraction of the breast's area and its aspect (w/h) a
log-normal around 1, as fitted on radiologist masks (:func:`fit_box_stats`). The box
must lie wholly inside the breast mask (eroded by a skin margin).
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Fitted with fit_box_stats on the CDD-CESM sample (../shared/data/cdd_cesm_sample: 10
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
    from scipy import ndimage

    breast = np.asarray(breast, bool)
    skin = max(1, int(round(margin * max(breast.shape))))
    inner = ndimage.binary_erosion(breast, iterations=skin) if breast.any() else breast
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
