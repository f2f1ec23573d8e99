"""Dice per class over all pixels of the set: 2|P∩G| / (|P| + |G|)."""

from __future__ import annotations

import numpy as np


def dice_per_class(inter: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray) -> np.ndarray:
    """(C,) summed counts -> (C,) Dice as fractions; NaN where the class has no pixel at all."""
    denom = (pred_area + gt_area).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * inter / np.where(denom > 0, denom, 1), np.nan)
