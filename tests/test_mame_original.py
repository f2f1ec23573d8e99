"""MAM-E as its authors ran it (issue 14): per-vendor captions, one box per Mass, concept extrapolation."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from modise.cli import app
from tests.test_mame_prepare import HEADER, _write_dicom


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


def test_inpainting_data_is_one_box_mask_per_mass_finding(tmp_path):
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
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(root), "--inpainting", "--out", str(out),
                                   "--resolution", "64"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and len({r["mask_file_name"] for r in recs}) == 2
    for rec in recs:
        mask = np.asarray(Image.open(out / rec["mask_file_name"])) > 127
        ys, xs = np.nonzero(mask)
        assert mask.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one filled box
    tops = sorted(int(np.nonzero(np.asarray(Image.open(out / r["mask_file_name"])) > 127)[0].min()) for r in recs)
    assert tops[0] < 20 < tops[1]  # the two masses, each in its own mask
