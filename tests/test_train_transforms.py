"""LSJ + intensity jitter keep image and masks aligned; LSJ follows detectron2's arithmetic; the ODISE
schedule has the right shape."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import SAMPLE_DIR
from modise.data.dataset import masks_from_ids
from modise.engine.training.train_transforms import (LSJ, PAD_VALUE, IntensityJitter, build_train_transform, nearest_source_index,
                                                     resize_image)
from modise.engine.training.schedule import warmup_step_decay


def _sample(h=96, w=64):
    img = torch.zeros(1, h, w)
    ids = torch.zeros(h, w, dtype=torch.uint8)
    ids[10:30, 10:30], ids[60:90, 40:60] = 5, 7
    img[0][ids == 5] = 0.9
    img[0][ids == 7] = 0.5
    return {"image": img, "ids": ids, "masks": masks_from_ids(ids, torch.tensor([5, 7])), "labels": torch.tensor([0, 1]),
            "segment_ids": torch.tensor([5, 7]), "image_id": 1}


@pytest.mark.parametrize("seed", range(8))
def test_lsj_fixed_size_and_aligned(seed):
    out = LSJ(size=64, min_scale=0.1, max_scale=2.0)(_sample(), random.Random(seed))
    assert out["image"].shape == (1, 64, 64)
    assert out["masks"].shape[1:] == (64, 64)
    assert len(out["labels"]) == len(out["masks"]) == len(out["segment_ids"])
    for m, sid in zip(out["masks"], out["segment_ids"].tolist()):
        if not m.any():
            continue  # cropped away: kept as an empty target
        # the mask still covers pixels of its own intensity (nearest/bilinear agree in the interior)
        expected = 0.9 if sid == 5 else 0.5
        assert abs(out["image"][0][m].median().item() - expected) < 0.2


def test_lsj_keeps_lesions_cropped_away_as_empty_targets():
    """ODISE/Mask2Former's panoptic mapper keeps every non-crowd segment, also one the crop emptied
    (ODISE dataset_mapper.py:122-142): same labels, an all-False mask."""
    outs = [LSJ(size=32, min_scale=2.0, max_scale=2.0)(_sample(), random.Random(s)) for s in range(30)]
    assert all(o["labels"].tolist() == [0, 1] and o["segment_ids"].tolist() == [5, 7] for o in outs)
    assert any(not m.any() for o in outs for m in o["masks"])  # some crops lose a lesion, which stays


def _detectron2_lsj(img_u8: np.ndarray, ids: np.ndarray, size: int, rng: random.Random, lo=0.1, hi=2.0):
    """The ODISE train augmentation in detectron2's terms (RandomFlip, ResizeScale, FixedSizeCrop;
    augmentation_impl.py:203-370, transform.py:94-156) on a uint8 image and an id map, drawing the
    same numbers in the same order as modise's LSJ."""
    if rng.random() < 0.5:
        img_u8, ids = img_u8[:, ::-1], ids[:, ::-1]
    h, w = img_u8.shape
    s = rng.uniform(lo, hi)
    out_scale = min(size * s / h, size * s / w)
    nh, nw = (int(v) for v in np.round(np.multiply((h, w), out_scale)))
    img = np.asarray(Image.fromarray(np.ascontiguousarray(img_u8)).resize((nw, nh), Image.BILINEAR))
    ids = np.asarray(Image.fromarray(np.ascontiguousarray(ids)).resize((nw, nh), Image.NEAREST))
    off = np.round(np.maximum(np.subtract((nh, nw), (size, size)), 0) * rng.uniform(0.0, 1.0)).astype(int)
    img, ids = img[off[0] : off[0] + size, off[1] : off[1] + size], ids[off[0] : off[0] + size, off[1] : off[1] + size]
    ph, pw = size - img.shape[0], size - img.shape[1]
    return np.pad(img, ((0, ph), (0, pw)), constant_values=128), np.pad(ids, ((0, ph), (0, pw)), constant_values=255)


@pytest.mark.parametrize("seed", range(6))
def test_lsj_equals_detectron2_on_a_real_mammogram(seed):
    """Flip, scale, PIL-filter resize (antialiased when shrinking), one-draw crop offset and grey-128
    padding as detectron2 does them, on a real sample: <= 1 grey level (PIL rounds to uint8); masks
    equal but where a pixel centre falls exactly on a source pixel edge (PIL's 16.16 fixed point
    and torch's float round such ties differently), i.e. only on the reference mask's border."""
    img_u8 = np.asarray(Image.open(SAMPLE_DIR / "images" / "flipped_P150_L_DM_CC.jpg").convert("L"))[:, :400]
    ids = np.zeros(img_u8.shape, np.uint8)
    ids[100:220, 150:300], ids[300:330, 20:90] = 1, 2
    sample = {"image": torch.from_numpy(img_u8.astype(np.float32) / 255)[None], "ids": torch.from_numpy(ids),
              "segment_ids": torch.tensor([1, 2]), "labels": torch.tensor([0, 1])}
    out = LSJ(size=96, min_scale=0.1, max_scale=2.0)(sample, random.Random(seed))
    ref_img, ref_ids = _detectron2_lsj(img_u8, ids, 96, random.Random(seed))
    assert np.abs(out["image"][0].numpy() * 255 - ref_img).max() <= 1.01
    for k, m in enumerate(out["masks"], start=1):
        ref = torch.from_numpy(ref_ids == k)[None, None].float()
        border = (F.max_pool2d(ref, 3, 1, 1) - -F.max_pool2d(-ref, 3, 1, 1))[0, 0] > 0
        differ = m != ref[0, 0].bool()
        assert not (differ & ~border).any() and differ.sum() <= 96
    assert out["labels"].tolist() == [0, 1]


def test_downscaling_is_antialiased_like_pil():
    """A 2000x1600 image shrunk to 128 px: PIL's bilinear (detectron2's resize of uint8 images)
    within a grey level; plain bilinear sampling (no antialias) would be far off on fine texture."""
    rng = np.random.default_rng(0)
    img_u8 = (rng.random((2000, 1600)) * 255).astype(np.uint8)
    ref = np.asarray(Image.fromarray(img_u8).resize((102, 128), Image.BILINEAR)).astype(np.float32)
    out = resize_image(torch.from_numpy(img_u8 / 255.0).float()[None], 128, 102)[0].numpy() * 255
    assert np.abs(out - ref).max() <= 1.0


def test_lsj_pads_right_and_bottom_with_grey_128():
    """FixedSizeCrop(pad_value=128.0) on 0-255 images; masks have no segment in the padding."""
    out = LSJ(size=64, min_scale=0.5, max_scale=0.5, flip_prob=0.0)(_sample(96, 64), random.Random(0))
    assert PAD_VALUE == pytest.approx(128 / 255)
    assert torch.all(out["image"][:, :, 21:] == PAD_VALUE)  # 96x64 -> 32x21, padded to 64x64
    assert torch.all(out["image"][:, 32:, :] == PAD_VALUE)
    assert not out["masks"][:, 32:, :].any() and not out["masks"][:, :, 21:].any()


@pytest.mark.parametrize("n_in,n_out", [(4096, 1024), (3328, 2048), (96, 179), (1600, 102), (37, 37), (5, 64)])
def test_id_map_gather_is_torch_nearest_exact(n_in, n_out):
    """The id map is gathered at nearest_source_index, not interpolated: the same pixels as torch's
    nearest-exact (= PIL NEAREST, detectron2's resize of the panoptic PNG), per axis and in 2-D."""
    src = torch.arange(n_in, dtype=torch.float32)
    ref = F.interpolate(src[None, None, None], size=(1, n_out), mode="nearest-exact")[0, 0, 0].long()
    assert torch.equal(nearest_source_index(n_in, n_out), ref)


def test_lsj_masks_are_the_mask_path_of_before():
    """Gathering the cropped id map gives the masks that resizing every full-size mask (nearest-exact)
    and cropping them would; a flipped sample's too."""
    for seed in range(12):
        s = _sample(96, 64)
        out = LSJ(size=48, min_scale=0.3, max_scale=2.0)(s, random.Random(seed))
        rng = random.Random(seed)
        flip = rng.random() < 0.5
        masks = s["masks"].flip(-1) if flip else s["masks"]
        scale = rng.uniform(0.3, 2.0) * 48 / 96
        nh, nw = max(1, round(96 * scale)), max(1, round(64 * scale))
        u = rng.uniform(0.0, 1.0)
        y0, x0 = round(max(0, nh - 48) * u), round(max(0, nw - 48) * u)
        ref = F.interpolate(masks[None].float(), size=(nh, nw), mode="nearest-exact")[0][:, y0 : y0 + 48, x0 : x0 + 48] > 0.5
        ref = F.pad(ref, (0, 48 - ref.shape[2], 0, 48 - ref.shape[1]))
        assert torch.equal(out["masks"], ref), seed


def test_intensity_jitter_off_by_default():
    """Neither ODISE nor Mask2Former jitters intensity: the default transform is LSJ alone."""
    assert [type(t) for t in build_train_transform(64).transforms] == [LSJ]
    assert [type(t) for t in build_train_transform(64, intensity=True).transforms] == [LSJ, IntensityJitter]


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
