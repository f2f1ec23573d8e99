"""prepare folder: folds never split a patient (DICOM PatientID, else --patient-regex, default the first
_-part with a digit), the rule is reported; mammograms given as masks are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import data_fixtures as fx
from modise.cli import app
from modise.data.folder import patient_id

runner = CliRunner()


def _patients_per_fold(out: Path) -> list[set[str]]:
    images = {im["id"]: im["patient_id"] for im in json.loads((out / "panoptic.json").read_text())["images"]}
    return [{images[i] for i in fold} for fold in json.loads((out / "folds.json").read_text())["folds"]]


def _assert_no_patient_in_two_folds(out: Path) -> None:
    folds = _patients_per_fold(out)
    for a in range(len(folds)):
        for b in range(a + 1, len(folds)):
            assert not folds[a] & folds[b], f"patients {folds[a] & folds[b]} in folds {a} and {b}"


def test_patient_id_rules():
    assert patient_id("flipped_P150_L_DM_CC") == ("P150", "regex")
    assert patient_id("P150_R_CM_MLO") == ("P150", "regex")
    assert patient_id("case-a") == ("case-a", "name")
    assert patient_id("scan-17-left", regex=r"scan-(\d+)") == ("17", "regex")

    class Ds:
        PatientID = "ANON42"

    assert patient_id("flipped_P150_L_DM_CC", Ds()) == ("ANON42", "dicom")


def test_two_views_of_a_patient_share_a_fold(tmp_path, sample_dir):
    # the shared sample with a second view of every patient (the issue: P150's views landed in different folds)
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    for p in sorted((sample_dir / "images").glob("*.jpg")):
        for view in ("CC", "MLO"):
            name = p.name.rsplit("_", 1)[0] + f"_{view}.jpg"
            shutil.copy(p, imgs / name)
            shutil.copy(sample_dir / "masks" / p.name, masks / name)
    out = tmp_path / "out"
    res = runner.invoke(app, ["prepare", "folder", "--images", str(imgs), "--masks", str(masks), "--out", str(out),
                              "--folds", "5", "-q"])
    assert res.exit_code == 0, res.output
    assert "patient ids: DICOM PatientID, else" in res.output
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["patients"] == 10 and report["patient_ids"]["images_by_source"]["regex"] == 20
    _assert_no_patient_in_two_folds(out)
    assert sum(len(f) for f in _patients_per_fold(out)) == 10


def test_dicom_patient_id_wins_over_the_name(tmp_path):
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(8):  # 4 patients x 2 views, names that share nothing
        px = fx.blob_image(seed=i).astype(np.uint16) * 16
        fx.write_dicom(imgs / f"img{i:03d}.dcm", px, patient_id=f"PAT{i // 2}", view="CC" if i % 2 else "MLO")
        fx.write_jpeg(masks / f"img{i:03d}.jpg", (fx.blob_image(seed=i) > 150).astype(np.uint8) * 255)
    out = tmp_path / "out"
    res = runner.invoke(app, ["prepare", "folder", "--images", str(imgs), "--masks", str(masks), "--out", str(out),
                              "--folds", "4", "-q", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["patients"] == 4 and report["patient_ids"]["images_by_source"]["dicom"] == 8
    _assert_no_patient_in_two_folds(out)


@pytest.mark.parametrize("as_png", [False, True])
def test_mammograms_as_masks_are_refused(tmp_path, sample_dir, as_png):
    masks = tmp_path / "masks"
    masks.mkdir()
    for p in sorted((sample_dir / "images").glob("*.jpg"))[:2]:
        if as_png:
            Image.open(p).convert("L").save(masks / f"{p.stem}.png")
        else:
            shutil.copy(p, masks / p.name)
    res = runner.invoke(app, ["prepare", "folder", "--images", str(sample_dir / "images"), "--masks", str(masks),
                              "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code != 0 and "looks like an image, not a mask" in str(res.exception)
    assert not (tmp_path / "out").exists()
