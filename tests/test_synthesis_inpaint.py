"""Lesion inpainting: native-resolution crop, exact paste-back, masks, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from modise.cli import app
from modise.errors import ModiseError
from modise.synthesis import inpaint_lesion, load_inpaint
from modise.synthesis.breast_mask import breast_mask


@pytest.fixture(scope="module")
def pipe():
    return load_inpaint(size="tiny", random_weights=True)


def test_pixels_outside_the_mask_are_unchanged(pipe, sample_images):
    image = np.asarray(Image.open(sample_images[0]).convert("L"))
    image = np.ascontiguousarray(image[:, :400])  # not square, larger than the window
    mask = np.zeros(image.shape, bool)
    mask[300:330, 200:240] = True
    result, region = inpaint_lesion(pipe, image, mask, seed=3, steps=1, crop=64)
    out = np.asarray(result)
    assert result.mode == "L" and out.shape == image.shape
    assert np.array_equal(out[~mask], image[~mask])
    assert (out[mask] != image[mask]).mean() > 0.5  # the lesion region was repainted
    assert np.array_equal(region, mask)
    again, _ = inpaint_lesion(pipe, image, mask, seed=3, steps=1, crop=64)
    assert np.array_equal(np.asarray(again), out)


def test_auto_box_is_inside_the_breast(pipe, sample_images):
    image = np.asarray(Image.open(sample_images[1]).convert("L"))
    result, region = inpaint_lesion(pipe, image, auto_box=True, seed=1, steps=1, crop=64)
    ys, xs = np.nonzero(region)
    assert region[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()  # a box
    assert breast_mask(image)[region].all()
    assert np.array_equal(np.asarray(result)[~region], image[~region])


def test_image_smaller_than_the_window_is_padded(pipe):
    image = np.full((40, 50), 120, np.uint8)
    mask = np.zeros_like(image, bool)
    mask[10:20, 30:45] = True
    result, _ = inpaint_lesion(pipe, image, mask, steps=1, crop=64)
    assert np.asarray(result).shape == (40, 50)
    assert np.array_equal(np.asarray(result)[~mask], image[~mask])


def test_bad_masks_are_refused(pipe):
    image = np.zeros((64, 64), np.uint8)
    with pytest.raises(ModiseError, match="empty"):
        inpaint_lesion(pipe, image, np.zeros((64, 64), bool), steps=1)
    with pytest.raises(ModiseError, match="px but the image"):
        inpaint_lesion(pipe, image, np.ones((32, 32), bool), steps=1)
    with pytest.raises(ModiseError, match="larger than"):
        inpaint_lesion(pipe, np.zeros((200, 200), np.uint8), np.ones((200, 200), bool), steps=1, crop=64)


def test_cli_writes_result_and_mask(tmp_path, sample_images):
    src = tmp_path / "in.png"
    Image.open(sample_images[2]).convert("L").save(src)
    mask = np.zeros((512, 512), np.uint8)
    mask[200:230, 150:190] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "out"
    args = ["inpaint", "--image", str(src), "--mask", str(tmp_path / "m.png"), "--n", "2", "--steps", "1",
            "--crop", "64", "--size", "tiny", "--random-weights", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    masks = sorted(out.glob("*mask*.png"))
    results = sorted(out.glob("*inpainted*.png"))
    assert len(masks) == 2 and len(results) == 2
    assert np.array_equal(np.asarray(Image.open(masks[0])) > 0, mask > 0)
    assert (out / "metadata.jsonl").read_text().count("\n") == 2
    res = CliRunner().invoke(app, ["inpaint", "--image", str(src), "--out", str(tmp_path / "o2")])
    assert isinstance(res.exception, ModiseError) and "--auto-box" in str(res.exception)


def test_auto_box_keeps_clear_of_the_breast_edge_and_the_image_border(pipe, sample_images):
    """MAM-E's box draw accepts any box inside the breast, one touching the skin line or the image's top row
    too; the automatic box keeps a margin (BOX_MARGIN of the model's frame) inside instead."""
    from modise.synthesis.breast_mask import inner_breast
    from modise.synthesis.inpaint import BOX_MARGIN

    image = np.asarray(Image.open(sample_images[1]).convert("L"))[::4, ::4]
    assert breast_mask(image)[0].any()  # the breast reaches the image's top edge
    inner = inner_breast(breast_mask(image), BOX_MARGIN / 2)  # half the margin, in image pixels
    for seed in range(6):  # without the margin, seeds 1 and 5 draw boxes on the edge
        _, region = inpaint_lesion(pipe, image, auto_box=True, seed=seed, steps=1)
        assert inner[region].all(), seed
