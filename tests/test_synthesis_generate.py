"""`modise generate` with tiny random pipelines: reproducible grey PNGs, metadata, sweep, loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from modise.cli import app
from modise.errors import MissingWeightsError, ModiseError

TINY = ["--size", "tiny", "--random-weights", "--steps", "1", "--resolution", "64"]


def _run(*args):
    res = CliRunner().invoke(app, ["generate", *TINY, *args])
    return res


def test_same_seed_gives_identical_grey_pngs_and_metadata(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        res = _run("--vendor", "hologic", "--view", "CC", "--area", "big", "--n", "2", "--seed", "7", "--out", str(out))
        assert res.exit_code == 0, res.output
    names = sorted(p.name for p in a.glob("*.png"))
    assert len(names) == 2
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
        with Image.open(a / name) as im:
            assert im.mode == "L" and im.size == (64, 64)
    first, second = (np.asarray(Image.open(a / n)) for n in names)
    assert not np.array_equal(first, second)  # seed+i differs per image
    records = [json.loads(line) for line in (a / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in records] == names
    assert records[0]["prompt"] == "a hologic mammogram in CC view with big area"
    assert [r["seed"] for r in records] == [7, 8]
    assert records[0]["steps"] == 1 and records[0]["guidance"] == 5.0


def test_right_laterality_is_the_mirror(tmp_path):
    for lat in ("L", "R"):
        assert _run("--laterality", lat, "--out", str(tmp_path / lat)).exit_code == 0
    left = Image.open(next((tmp_path / "L").glob("*.png")))
    right = Image.open(next((tmp_path / "R").glob("*.png")))
    assert np.array_equal(np.asarray(ImageOps.mirror(left)), np.asarray(right))


def test_guidance_sweep_grid(tmp_path):
    res = _run("--guidance-sweep", "--sweep-values", "4,14", "--view", "MLO", "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    grid = Image.open(tmp_path / "s" / "guidance_sweep.png")
    assert grid.mode == "L"
    assert grid.size == (2 * 64 + 1 * 4, 14 + 4 * 64 + 3 * 4)  # 2 guidances x 4 densities, 4 px gutter, label band
    band = np.asarray(grid)[:14]
    assert band.max() > 200 and band.min() == 0  # column labels written in the band above the grid
    cells = [json.loads(line) for line in (tmp_path / "s" / "metadata.jsonl").read_text().splitlines()]
    assert len(cells) == 8 and {c["guidance"] for c in cells} == {4.0, 14.0}
    assert cells[0]["prompt"] == "a mammogram in MLO view with very low density"


def test_non_empty_out_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    res = _run("--out", str(tmp_path))
    assert isinstance(res.exception, ModiseError) and "overwrite" in str(res.exception)
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_missing_weights_is_one_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["generate", "--model", "Likalto4/not-cached-here", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, MissingWeightsError)
    assert res.exception.model_id == "Likalto4/not-cached-here"
    assert not (tmp_path / "o").exists()


def test_saved_pipeline_folder_loads_and_generates(tmp_path):
    from modise.synthesis import generate_images, load_inpaint, load_text2img
    from modise.synthesis.pipelines import build_random_pipeline

    build_random_pipeline("tiny").save_pretrained(tmp_path / "pipe")
    pipe = load_text2img(str(tmp_path / "pipe"))
    assert pipe.safety_checker is None and type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    images = generate_images(pipe, "a mammogram", n=1, seed=0, steps=1, guidance=4.0, laterality="L", resolution=64)
    assert images[0].mode == "L" and images[0].size == (64, 64)
    with pytest.raises(ModiseError, match="4-channel"):
        load_inpaint(str(tmp_path / "pipe"))
    with pytest.raises(ModiseError, match="not a loadable"):
        load_text2img(str(tmp_path))
