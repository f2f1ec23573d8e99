"""Inpainting as MAM-E does it: whole-image frame, MAM-E box statistics, a seamless full-resolution paste."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from modise.cli import app
from modise.synthesis import inpaint_lesion, load_inpaint
from modise.synthesis.boxes import MameBoxStats, fit_mame_box_stats, sample_mame_box
from modise.synthesis.breast_mask import breast_mask


@pytest.fixture(scope="module")
def pipe():
    return load_inpaint(size="tiny", random_weights=True)  # native side 128: the frame is 128x128


@pytest.fixture()
def large(sample_images):
    """A real mammogram at a non-square, larger-than-frame size (W 900 x H 1200)."""
    return np.asarray(Image.open(sample_images[0]).convert("L").resize((900, 1200), Image.BILINEAR))


def test_mame_boxes_lie_in_the_breast_with_the_training_statistics(sample_images):
    image = np.asarray(Image.open(sample_images[1]).convert("L"))  # 512x512, like a MAM-E frame
    breast = breast_mask(image)
    stats = MameBoxStats(area_q25=600, area_q75=2400, ratio_mean=1.2, ratio_std=0.3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = sample_mame_box(breast, rng, stats)
        w, h = x1 - x0, y1 - y0
        assert breast[y0:y1, x0:x1].all()
        # width = int(sqrt(area * ratio)), height = int(sqrt(area / ratio)) (siemens_inpainting.py:148-149)
        assert 0.85 * 600 <= w * h < 2400 and 0.9 - 0.1 <= w / h <= 1.5 + 0.1
    masks = [np.pad(np.ones((h, w), bool), ((5, 40 - h), (5, 40 - w))) for h, w in ((10, 10), (20, 10), (10, 20), (30, 30))]
    fit = fit_mame_box_stats(masks, side=45)
    assert fit.area_q25 == pytest.approx(np.percentile([100, 200, 200, 900], 25))
    assert fit.ratio_mean == pytest.approx(np.mean([1, 2, 0.5, 1])) and fit.side == 45
    assert fit.scaled(90).area_q75 == pytest.approx(4 * fit.area_q75)


def test_whole_mode_is_the_default_and_keeps_everything_outside_the_box(pipe, large):
    result, region = inpaint_lesion(pipe, large, auto_box=True, seed=2, steps=1)
    out = np.asarray(result)
    assert out.shape == large.shape
    ys, xs = np.nonzero(region)
    assert region[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()  # one box
    assert breast_mask(large)[region].mean() > 0.97  # inside the breast (up to the frame's resampling)
    assert np.array_equal(out[~region], large[~region])
    # The box has MAM-E's area in frame pixels: 25th-75th percentile of the (scaled) training areas
    from modise.synthesis.boxes import CDD_CESM_MAME_BOX_STATS as S
    from modise.synthesis.pipelines import native_resolution

    side = native_resolution(pipe)
    frame_area = region.sum() / (900 / side) ** 2  # the short side (900 px) is the frame's side
    assert 0.6 * S.scaled(side).area_q25 <= frame_area <= 1.4 * S.scaled(side).area_q75


def test_right_breast_is_mirrored_into_the_frame(pipe, large):
    right = np.ascontiguousarray(large[:, ::-1])
    _, region = inpaint_lesion(pipe, right, auto_box=True, seed=2, steps=1, laterality="R")
    _, left_region = inpaint_lesion(pipe, large, auto_box=True, seed=2, steps=1, laterality="L")
    assert np.array_equal(region, left_region[:, ::-1])  # same draw, mirrored back


def _edge_jump(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference between each mask edge pixel and its 4-neighbours outside the mask."""
    o = image.astype(np.float64)
    diffs = []
    for axis, step in ((0, 1), (0, -1), (1, 1), (1, -1)):
        nb, nb_mask = np.roll(o, step, axis), np.roll(mask, step, axis)
        diffs.append(np.abs(o - nb)[mask & ~nb_mask])
    return float(np.concatenate(diffs).mean())


def test_paste_back_has_no_visible_seam(pipe, large):
    mask = np.zeros(large.shape, bool)
    mask[500:640, 150:300] = True
    hard = np.asarray(inpaint_lesion(pipe, large, mask, steps=1, feather=0)[0])
    soft = np.asarray(inpaint_lesion(pipe, large, mask, steps=1)[0])
    assert np.array_equal(soft[~mask], large[~mask]) and np.array_equal(hard[~mask], large[~mask])
    core = ndimage.binary_erosion(mask, iterations=30)
    assert np.array_equal(soft[core], hard[core])  # the lesion itself is the model's, at full weight
    # Random weights paint noise, so a hard paste jumps by tens of grey levels at the edge;
    # the feather brings the step across the edge near the image's own neighbour differences.
    own, jump_hard, jump_soft = _edge_jump(large, mask), _edge_jump(hard, mask), _edge_jump(soft, mask)
    assert jump_hard > 10 * own
    assert jump_soft < 0.15 * jump_hard and jump_soft < 4 * own + 3


def test_crop_mode_keeps_native_resolution(pipe, large):
    mask = np.zeros(large.shape, bool)
    mask[500:530, 150:190] = True
    out = np.asarray(inpaint_lesion(pipe, large, mask, steps=1, mode="crop")[0])  # window 64 at native resolution
    assert np.array_equal(out[~mask], large[~mask]) and (out[mask] != large[mask]).mean() > 0.5
    with pytest.raises(Exception, match="mode"):
        inpaint_lesion(pipe, large, mask, steps=1, mode="tile")


def test_inpaint_cli_defaults_to_mames_settings(tmp_path, sample_images):
    src = tmp_path / "in.png"
    Image.open(sample_images[2]).convert("L").resize((300, 400)).save(src)
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["inpaint", "--image", str(src), "--auto-box", "--steps", "1", "--size", "tiny",
                                   "--random-weights", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "metadata.jsonl").read_text().splitlines()[0])
    assert rec["mode"] == "whole" and rec["guidance"] == 4.0 and rec["crop"] is None
    res = CliRunner().invoke(app, ["inpaint", "--help"])
    assert "[default: 40" in res.output


@pytest.mark.parametrize("args,option", [
    (["generate", "--resolution", "-64"], "--resolution"),
    (["generate", "--guidance", "-5"], "--guidance"),
    (["generate", "--laterality", "X"], "--laterality"),
    (["generate", "--vendor", "agfa"], "--vendor"),
    (["inpaint", "--image", "x.png", "--auto-box", "--crop", "-512"], "--crop"),
    (["inpaint", "--image", "x.png", "--auto-box", "--mode", "tile"], "--mode"),
    (["inpaint", "--image", "x.png", "--auto-box", "--mode", "whole", "--crop", "64"], "--crop"),
    (["mame", "train", "--data", ".", "--precision", "fp8"], "--precision"),
    (["augment", "--healthy", ".", "--n", "1", "--sigma", "0"], "--sigma"),
    (["mame", "train", "--data", ".", "--lr", "-1"], "--lr"),
    (["mame", "train", "--data", ".", "--batch-size", "0"], "--batch-size"),
    (["mame", "train", "--data", ".", "--recipe", "sd"], "--recipe"),
    (["mame", "prepare", "--root", ".", "--resolution", "100"], "--resolution"),
])
def test_bad_numbers_and_choices_stop_at_the_cli_edge(tmp_path, args, option):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert option in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_box_statistics_travel_from_prepare_to_inpaint(tmp_path, sample_images):
    from modise.synthesis.boxes import load_box_stats, save_box_stats
    from modise.synthesis.pipelines import build_random_pipeline
    from tests.test_synthesis_mame_captions import HEADER, _write_dicom

    root = tmp_path / "vindr"
    for i, (y0, y1) in enumerate(((60, 90), (100, 150))):
        _write_dicom(root / "images" / f"s{i}" / f"m{i}.dicom", 4095 - 1400, "SIEMENS", "L", "CC")
    rows = [f"s{i},x,m{i},L,CC,200,100,BI-RADS 4,DENSITY C,['Mass'],BI-RADS 4,5,{y0},25,{y1},training"
            for i, (y0, y1) in enumerate(((60, 90), (100, 150)))]
    (root / "finding_annotations.csv").write_text(HEADER + "\n".join(rows) + "\n")
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(root), "--inpainting", "--out",
                                   str(tmp_path / "prep"), "--resolution", "64"])
    assert res.exit_code == 0, res.output
    stats = load_box_stats(tmp_path / "prep")
    assert stats.side == 64 and stats.area_q25 < stats.area_q75 and stats.ratio_mean > 1  # tall boxes

    # An inpainting "run" folder with narrow statistics: the automatic box follows them.
    run = tmp_path / "run"
    build_random_pipeline("tiny", inpainting=True).save_pretrained(run)
    save_box_stats(MameBoxStats(area_q25=400, area_q75=401, ratio_mean=1.0, ratio_std=0.0, side=128), run)
    src = tmp_path / "in.png"
    Image.open(sample_images[1]).convert("L").save(src)  # 512x512 into the tiny model's 128 frame: 4 px per frame px
    res = CliRunner().invoke(app, ["inpaint", "--image", str(src), "--auto-box", "--steps", "1", "--model", str(run),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    mask = np.asarray(Image.open(next((tmp_path / "o").glob("*_mask_*.png")))) > 127
    assert mask.sum() == 20 * 20 * 4 * 4  # a 20x20 frame box (area 400, ratio 1) at 4 px per frame pixel


@pytest.mark.parametrize("flip", [False, True])
def test_frame_maps_back_onto_the_original_pixels(large, flip):
    from modise.synthesis.frame import Frame

    frame = Frame(*large.shape, side=128, flip=flip)
    win = frame.to_frame(large)
    box = np.zeros((128, 128), bool)
    box[40:80, 20:60] = True
    rows, cols = frame.region_of(box, margin=0)
    back, orig = frame.sample(win, rows, cols), large[rows, cols].astype(np.float64)
    assert np.abs(back - orig).mean() < 0.3 * np.abs(orig - orig.mean()).mean()  # the same tissue, only softer
    assert (frame.sample(box.astype(float), rows, cols, nearest=True) > 0.5).mean() > 0.99
