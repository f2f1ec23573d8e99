"""`prepare` keeps the image attributes evaluation breaks results down by (breast density, view,
laterality, manufacturer, modality) and the pixel spacing that sizes lesions in mm."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import data_fixtures as fx  # noqa: E402

from modise.cli import app  # noqa: E402
from modise.data.panoptic import load_panoptic_json  # noqa: E402

runner = CliRunner()


def test_vindr_keeps_density_view_laterality_manufacturer_spacing(tmp_path):
    root = fx.make_vindr(tmp_path / "vindr")
    res = runner.invoke(app, ["prepare", "vindr", "--root", str(root), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    ims = {im["file_name"]: im for im in load_panoptic_json(tmp_path / "out")["images"]}
    assert ims["im2.png"]["breast_density"] == "DENSITY B" and ims["im2.png"]["view"] == "MLO" and ims["im2.png"]["laterality"] == "R"
    assert all(im["manufacturer"] == "fixture" and im["modality"] == "MG" for im in ims.values())
    assert all(im["pixel_spacing"] == [0.1, 0.1] for im in ims.values())  # 96x80: not resized


def test_vindr_spacing_follows_the_resize(tmp_path):
    root = fx.make_vindr(tmp_path / "vindr")
    res = runner.invoke(app, ["prepare", "vindr", "--root", str(root), "--out", str(tmp_path / "out"), "--max-image-size", "48", "-q"])
    assert res.exit_code == 0, res.output
    im = load_panoptic_json(tmp_path / "out")["images"][0]
    assert im["height"] == 48 and im["pixel_spacing"] == [0.2, 0.2]


def test_cdd_cesm_keeps_density_and_modality(tmp_path):
    root = fx.make_cdd_cesm(tmp_path / "cdd")
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    ims = {im["file_name"].split(".")[0]: im for im in load_panoptic_json(tmp_path / "out")["images"]}
    assert ims["P1_L_DM_CC"]["breast_density"] == "C" and ims["P2_R_DM_MLO"]["breast_density"] == "B"
    assert ims["P1_L_DM_CC"]["modality"] and ims["P1_L_CM_CC"]["modality"] != ims["P1_L_DM_CC"]["modality"]
