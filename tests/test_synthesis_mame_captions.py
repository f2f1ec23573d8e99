"""MAM-E as its authors ran it: per-vendor captions, one box per Mass, concept extrapolation."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from modise.cli import app
from tests.test_synthesis_mame_prepare import HEADER, _write_dicom


def test_training_captions_per_vendor_as_the_original():
    from modise.synthesis.prompts import extrapolation, training_caption

    # prompt_saving.py:38 + create_fusion.py:43 / vindr-mammo/prompt_saving.py:34-35 + create_fusion.py:46
    assert training_caption("hologic", "CC", "high", "small") == "a hologic mammogram in CC view with small area"
    assert training_caption("siemens", "MLO", "C", "big") == "a siemens mammogram in MLO view with high density"
    assert training_caption(None, "CC", None, "medium") == "a mammogram in CC view with medium area"
    for caption in ("a hologic mammogram in CC view with small area", "a siemens mammogram in MLO view with high density"):
        assert extrapolation(caption) is None
    # The poster's example mixes Siemens density with an area: no training caption held it.
    assert "area and density" in extrapolation("a siemens mammogram in MLO view with high density and small area")
    assert "siemens" in extrapolation("a siemens mammogram in CC view with big area")
    assert "hologic" in extrapolation("a hologic mammogram with low density")


def test_generate_metadata_marks_concept_extrapolation(tmp_path):
    base = ["generate", "--size", "tiny", "--random-weights", "--steps", "1", "--json"]
    res = CliRunner().invoke(app, [*base, "--vendor", "siemens", "--view", "MLO", "--density", "high", "--area", "small",
                                   "--out", str(tmp_path / "mix")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "mix" / "metadata.jsonl").read_text().splitlines()[0])
    assert rec["prompt"] == "a siemens mammogram in MLO view with small area and high density"
    assert rec["concept_extrapolation"] is True and "area and density" in rec["extrapolation"]
    assert "concept extrapolation" in res.stderr
    res = CliRunner().invoke(app, [*base, "--vendor", "siemens", "--density", "C", "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "one" / "metadata.jsonl").read_text().splitlines()[0])
    assert rec["concept_extrapolation"] is False and rec["extrapolation"] is None


def test_mass_inpainting_data_is_one_box_mask_per_mass_finding(tmp_path):
    """--findings mass: MAM-E's later Mass-only selection (masks_generation_vindr.py@HEAD:25-29)."""
    root = tmp_path / "vindr"
    _write_dicom(root / "images" / "s1" / "m.dicom", 4095 - 1400, "SIEMENS", "L", "CC")
    rows = [  # two masses and a calcification on one image; an architectural distortion with a mass is not kept
        "s1,x,m,L,CC,200,100,BI-RADS 4,DENSITY C,['Mass'],BI-RADS 4,5,60,25,90,training",
        "s1,x,m,L,CC,200,100,BI-RADS 4,DENSITY C,\"['Suspicious Calcification', 'Mass']\",BI-RADS 4,10,120,30,150,training",
        "s1,x,m,L,CC,200,100,BI-RADS 4,DENSITY C,['Suspicious Calcification'],BI-RADS 4,0,0,10,10,training",
        "s1,x,m,L,CC,200,100,BI-RADS 4,DENSITY C,\"['Mass', 'Architectural Distortion']\",BI-RADS 4,0,60,10,80,training",
    ]
    (root / "finding_annotations.csv").write_text(HEADER + "\n".join(rows) + "\n")
    out = tmp_path / "inp"
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(root), "--inpainting", "--findings", "mass",
                                   "--out", str(out), "--resolution", "64"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and len({r["mask_file_name"] for r in recs}) == 2
    for rec in recs:
        mask = np.asarray(Image.open(out / rec["mask_file_name"])) > 127
        ys, xs = np.nonzero(mask)
        assert mask.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one filled box
    tops = sorted(int(np.nonzero(np.asarray(Image.open(out / r["mask_file_name"])) > 127)[0].min()) for r in recs)
    assert tops[0] < 20 < tops[1]  # the two masses, each in its own mask
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["images"] == 2 and isinstance(report["warnings"], list)


def test_cdd_cesm_rows_without_an_image_file_are_named(tmp_path):
    import pandas as pd

    from tests import data_fixtures as fx

    root = fx.make_cdd_cesm(tmp_path / "cdd")
    xlsx = root / "Radiology manual annotations.xlsx"
    df = pd.read_excel(xlsx, dtype=str)
    extra = pd.DataFrame({"Image_name": ["P5_L_DM_CC.jpg", None], "Patient_ID": ["5", "9"], "Side": ["L", "L"],
                          "Type": ["DM", "DM"], "View": ["CC", "CC"],
                          "Pathology Classification/ Follow up": ["Benign", "Benign"]})
    pd.concat([df, extra], ignore_index=True).to_excel(xlsx, index=False)
    csv = root / "Radiology_hand_drawn_segmentations_v2.csv"
    csv.write_text(csv.read_text() + fx.via_row("P5_L_DM_CC.jpg", {"name": "circle", "cx": 30, "cy": 30, "r": 5}) + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "prepare_report.json").read_text())
    skipped = {(s["file"], s["row"]): s["reason"] for s in report["skipped"]}
    assert "P5_L_DM_CC: no image file" in skipped[(xlsx.name, 8)]  # the workbook row, spreadsheet numbering
    assert "without an image name" in skipped[(xlsx.name, 9)]
    assert "P5_L_DM_CC" in skipped[(csv.name, 11)]  # its region row too
    assert report["excluded_normal_files"] == ["Low energy images of CDD-CESM/P3_L_DM_CC.jpg"]
    # Only the modality being converted: with --modality CM the DM row is not reported missing
    res = CliRunner().invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(tmp_path / "cm"),
                                   "--modality", "CM", "-q"])
    report = json.loads((tmp_path / "cm" / "prepare_report.json").read_text())
    assert not any("P5_L_DM_CC" in s["reason"] for s in report["skipped"])


def test_vindr_pseudo_mask_switch_defaults_to_the_paper_recipe(tmp_path):
    from modise.data import pseudomask as pm
    from modise.data.dataset import PanopticDataset
    from modise.data.imageio import read_image
    from tests import data_fixtures as fx

    root = fx.make_vindr(tmp_path / "vindr")
    px = read_image(root / "images" / "s3" / "im3.dicom").pixels
    box = (18, 28, 42.5, 52)  # im3's row in the fixture CSV
    got = {}
    for recipe in (None, "paper", "refined"):
        out = tmp_path / f"o-{recipe}"
        flags = ["--pseudo-mask", recipe] if recipe else []
        res = CliRunner().invoke(app, ["prepare", "vindr", "--root", str(root), "--out", str(out), "-q", *flags])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "prepare_report.json").read_text())["pseudo_mask"] == (recipe or "paper")
        ds = PanopticDataset(out)
        (item,) = [ds[i] for i in range(len(ds)) if ds[i]["file_name"] == "im3.png"]
        got[recipe] = item["masks"][0].numpy().astype(bool)
    assert np.array_equal(got[None], got["paper"])
    assert np.array_equal(got["paper"], pm.bare_pseudo_mask(px, box))
    assert np.array_equal(got["refined"], pm.pseudo_mask(px, box))
    assert not np.array_equal(got["paper"], got["refined"])
    res = CliRunner().invoke(app, ["prepare", "vindr", "--root", str(root), "--out", str(tmp_path / "x"),
                                   "--pseudo-mask", "otsu"])
    assert res.exit_code == 2 and not (tmp_path / "x").exists()
