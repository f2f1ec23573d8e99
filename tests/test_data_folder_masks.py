"""prepare folder reads ordinary masks: binary and instance-labelled PNG/TIFF at 512² and mammogram size, and
JPEG masks (lossy: binary at half their brightest grey, so 0/255 and 0/1 masks both work)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage.draw import ellipse
from typer.testing import CliRunner

from modise.cli import app
from modise.data.folder import mask_instances

runner = CliRunner()
REAL = (4096, 3328)  # H, W of a full-field digital mammogram


def _labels(shape: tuple[int, int]) -> np.ndarray:
    """Three filled ellipses labelled 1, 2, 3; the 2nd and 3rd touch (only their ids tell them apart)."""
    h, w = shape
    lab = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate([(0.3, 0.3), (0.65, 0.6), (0.65, 0.6 + 0.16)], start=1):
        rr, cc = ellipse(cy * h, cx * w, 0.12 * h, 0.08 * w, shape=shape)
        lab[rr, cc] = i
    return lab


def _areas(masks: list[np.ndarray]) -> list[int]:
    return sorted(int(m.sum()) for m in masks)


@pytest.mark.parametrize("shape", [(512, 512), REAL], ids=["512", "real"])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_binary_and_instance_masks_are_read(tmp_path, shape, suffix):
    lab = _labels(shape)
    binary = tmp_path / f"binary{suffix}"
    Image.fromarray(((lab == 1) * 255).astype(np.uint8)).save(binary)
    inst = mask_instances(binary)
    assert _areas(inst) == [int((lab == 1).sum())]

    labelled = tmp_path / f"labelled{suffix}"
    Image.fromarray(lab.astype(np.uint8)).save(labelled)
    assert _areas(mask_instances(labelled)) == _areas([lab == i for i in (1, 2, 3)])
    if suffix == ".tif":  # 16-bit instance ids
        wide = tmp_path / "labelled16.tif"
        Image.fromarray((lab.astype(np.int32) * 1000).astype(np.uint16)).save(wide)
        assert _areas(mask_instances(wide)) == _areas([lab == i for i in (1, 2, 3)])


@pytest.mark.parametrize("shape", [(512, 512), REAL], ids=["512", "real"])
@pytest.mark.parametrize("top", [255, 1])
def test_jpeg_masks_are_binary_at_half_their_brightest_grey(tmp_path, shape, top):
    lab = _labels(shape)
    path = tmp_path / "mask.jpg"
    Image.fromarray(((lab == 1) * top).astype(np.uint8)).save(path, quality=75)
    inst = mask_instances(path, min_area=16)
    assert len(inst) == 1  # compression noise is neither an instance nor a reason to refuse
    assert abs(int(inst[0].sum()) - int((lab == 1).sum())) < 0.02 * (lab == 1).sum()


def test_real_size_png_masks_prepare_end_to_end(tmp_path):
    """The refusal the row-counting check gave every 3328x4096 PNG mask ("85 distinct values")."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        lab = _labels(REAL)
        Image.fromarray(rng.integers(0, 255, REAL, dtype=np.uint8)).save(images / f"P{i}_L_CC.png")
        Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(masks / f"P{i}_L_CC.png")
    out = tmp_path / "out"
    res = runner.invoke(app, ["prepare", "folder", "--images", str(images), "--masks", str(masks), "--out", str(out),
                              "--max-size", "512", "--folds", "2", "-q", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["converted"] == 2 and report["skipped_count"] == 0, report
    # the two touching ellipses are one connected component in a binary mask: 2 instances per image
    assert len(json.loads((out / "panoptic.json").read_text())["annotations"][0]["segments_info"]) == 2
