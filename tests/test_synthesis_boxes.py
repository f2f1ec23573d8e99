"""Breast masks and lesion boxes on the real CDD-CESM sample."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modise.errors import ModiseError
from modise.synthesis.boxes import CDD_CESM_BOX_STATS, fit_box_stats, sample_box
from modise.synthesis.breast_mask import breast_mask


def _load(sample_dir, path):
    image = np.asarray(Image.open(path).convert("L"))
    lesion = np.asarray(Image.open(sample_dir / "masks" / path.name).convert("L")) >= 128
    return image, lesion


def test_breast_mask_covers_lesions_and_not_background(sample_dir, sample_images):
    for path in sample_images:
        image, lesion = _load(sample_dir, path)
        breast = breast_mask(image)
        assert (breast & lesion).sum() >= 0.97 * lesion.sum(), path.name
        assert image[~breast].mean() < 10, path.name  # what is left out is dark background
        assert 0.1 < breast.mean() < 0.8, path.name


def test_boxes_lie_wholly_inside_the_breast(sample_images):
    for k, path in enumerate(sample_images):
        breast = breast_mask(np.asarray(Image.open(path).convert("L")))
        rng = np.random.default_rng(k)
        for _ in range(20):
            x0, y0, x1, y1 = sample_box(breast, rng, max_side=126)
            assert 4 <= x1 - x0 <= 126 and 4 <= y1 - y0 <= 126
            assert breast[y0:y1, x0:x1].all(), path.name


def test_box_sizes_follow_the_statistics():
    breast = np.zeros((600, 600), bool)
    breast[50:550, 50:550] = True
    rng = np.random.default_rng(0)
    boxes = [sample_box(breast, rng) for _ in range(300)]
    log_area = np.log([(x1 - x0) * (y1 - y0) / breast.sum() for x0, y0, x1, y1 in boxes])
    # clipped to [min, max] area fraction, so the median is the robust check
    assert abs(np.median(log_area) - CDD_CESM_BOX_STATS.log_area_mean) < 0.35
    assert len(set(boxes)) > 250  # positions and sizes vary


def test_default_statistics_are_fitted_on_the_sample(sample_dir, sample_images):
    lesions, breasts = [], []
    for path in sample_images:
        image, lesion = _load(sample_dir, path)
        lesions.append(lesion)
        breasts.append(breast_mask(image))
    fitted = fit_box_stats(lesions, breasts)
    assert fitted.log_area_mean == pytest.approx(CDD_CESM_BOX_STATS.log_area_mean, abs=0.05)
    assert fitted.log_area_std == pytest.approx(CDD_CESM_BOX_STATS.log_area_std, abs=0.05)
    assert fitted.log_aspect_std == pytest.approx(CDD_CESM_BOX_STATS.log_aspect_std, abs=0.05)


def test_no_breast_is_a_clear_error():
    with pytest.raises(ModiseError, match="breast"):
        sample_box(np.zeros((64, 64), bool), np.random.default_rng(0))
