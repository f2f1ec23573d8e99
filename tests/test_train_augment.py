"""LSJ + intensity jitter keep image and masks aligned; the ODISE schedule has the right shape."""

import random

import pytest
import torch

from modise.engine.training.augment import LSJ, IntensityJitter, build_train_transform
from modise.engine.training.schedule import warmup_step_decay


def _sample(h=96, w=64):
    img = torch.zeros(1, h, w)
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 60:90, 40:60] = True
    img[0][masks[0]] = 0.9
    img[0][masks[1]] = 0.5
    return {"image": img, "masks": masks, "labels": torch.tensor([0, 1]), "segment_ids": torch.tensor([5, 7]), "image_id": 1}


@pytest.mark.parametrize("seed", range(8))
def test_lsj_fixed_size_and_aligned(seed):
    out = LSJ(size=64, min_scale=0.1, max_scale=2.0)(_sample(), random.Random(seed))
    assert out["image"].shape == (1, 64, 64)
    assert out["masks"].shape[1:] == (64, 64)
    assert len(out["labels"]) == len(out["masks"]) == len(out["segment_ids"])
    for m, sid in zip(out["masks"], out["segment_ids"].tolist()):
        assert m.any()  # empty masks are dropped
        # the mask still covers pixels of its own intensity (nearest/bilinear agree in the interior)
        expected = 0.9 if sid == 5 else 0.5
        assert abs(out["image"][0][m].median().item() - expected) < 0.2


def test_lsj_drops_lesions_cropped_away():
    # scale 2 on a 64 crop of a 96x64 image: some crops must lose the small top lesion
    counts = {len(LSJ(size=32, min_scale=2.0, max_scale=2.0)(_sample(), random.Random(s))["labels"]) for s in range(30)}
    assert min(counts) < 2


def test_intensity_jitter_range_and_change():
    s = _sample()
    s["image"] = torch.linspace(0, 1, 96 * 64).reshape(1, 96, 64)
    out = IntensityJitter(prob=1.0)(s, random.Random(0))
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    assert not torch.allclose(out["image"], s["image"])
    assert torch.equal(out["masks"], s["masks"])


def test_compose_is_reproducible():
    a = build_train_transform(64, seed=3)(_sample())
    b = build_train_transform(64, seed=3)(_sample())
    assert torch.equal(a["image"], b["image"])


def test_schedule_warmup_and_step_decay():
    f = lambda s: warmup_step_decay(s, 1000, 250)  # noqa: E731
    assert f(0) == pytest.approx(0.067)  # ODISE's warmup_factor (odise_label_coco_50e.py:42)
    assert f(50) < f(99) < 1.0  # warm-up capped at a tenth of the run (100 steps)
    assert f(100) == 1.0 and f(888) == 1.0
    assert f(889) == pytest.approx(0.1)
    assert f(963) == pytest.approx(0.01)
