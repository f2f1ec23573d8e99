"""prepare cdd-cesm / vindr / folder on real fixture files, read back with PanopticDataset."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import data_fixtures as fx  # noqa: E402

from modise.cli import app  # noqa: E402
from modise.data.dataset import PanopticDataset, load_categories, load_folds  # noqa: E402
from modise.data.panoptic import load_panoptic_json  # noqa: E402

runner = CliRunner()


def _check_layout(out: Path) -> dict:
    data = load_panoptic_json(out)
    folds = load_folds(out)
    ids = sorted(i for f in folds for i in f)
    assert ids == sorted(im["id"] for im in data["images"])  # every image exactly once
    by_patient: dict[str, set[int]] = {}
    for im in data["images"]:
        for k in ("id", "file_name", "height", "width", "patient_id", "laterality", "view", "modality", "source"):
            assert k in im
        assert (out / "images" / im["file_name"]).is_file()
        by_patient.setdefault(im["patient_id"], set()).add(next(j for j, f in enumerate(folds) if im["id"] in f))
    assert all(len(s) == 1 for s in by_patient.values())  # a patient never split
    assert all(c["prompts"] for c in data["categories"])
    return data


def test_cdd_cesm_converts_good_items_and_reports_bad(tmp_path):
    root = fx.make_cdd_cesm(tmp_path / "cdd")
    out = tmp_path / "out"
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    data = _check_layout(out)
    names = sorted(im["file_name"] for im in data["images"])
    assert names == ["P1_L_CM_CC.jpg", "P1_L_DM_CC.jpg", "P2_R_DM_MLO.jpg"]  # Normal P3 excluded by default
    # JPEG sources are copied byte for byte
    assert (out / "images" / "P1_L_DM_CC.jpg").read_bytes() == (root / "Low energy images of CDD-CESM" / "P1_L_DM_CC.jpg").read_bytes()
    reasons = " | ".join(f"{s['file']}:{s['row']}:{s['reason']}" for s in report["skipped"])
    for needle in ("P4_R_DM_CC", "truncated", ":8:", "broken shape JSON", "unknown shape 'hexagon'", "degenerate polygon", "no usable region"):
        assert needle in reasons
    assert report["excluded_normal"] == 1
    ds = PanopticDataset(out)
    cats = [c.name for c in ds.categories]
    assert cats == ["Benign", "Malignant"]
    by_name = {ds[i]["file_name"]: ds[i] for i in range(len(ds))}
    s = by_name["P1_L_DM_CC.jpg"]
    assert s["image"].shape == (1, 96, 80) and s["masks"].shape[0] == 2
    assert s["labels"].tolist() == [1, 1] and s["meta"]["modality"] == "DM"
    # the polygon 20..40 square is where it was drawn
    sq = s["masks"][s["masks"].sum((1, 2)).argmax()].numpy()
    assert sq[30, 30] and not sq[10, 10] and 380 < sq.sum() < 470
    p2 = by_name["P2_R_DM_MLO.jpg"]
    assert p2["labels"].tolist() == [0, 0] and p2["meta"]["laterality"] == "R" and p2["meta"]["view"] == "MLO"
    assert by_name["P1_L_CM_CC.jpg"]["meta"]["modality"] == "CM"


def test_cdd_cesm_options_strict_and_overwrite(tmp_path):
    root = fx.make_cdd_cesm(tmp_path / "cdd")
    out = tmp_path / "o"
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(out), "--modality", "CM", "--include-normal", "--max-size", "48", "-q"])
    assert res.exit_code == 0, res.output
    data = load_panoptic_json(out)
    assert [im["file_name"] for im in data["images"]] == ["P1_L_CM_CC.png"] and data["images"][0]["height"] == 48
    # a non-empty --out is refused without --overwrite and left untouched
    before = sorted(p.name for p in out.rglob("*"))
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(out), "-q"])
    assert res.exit_code != 0 and "overwrite" in str(res.exception)
    assert sorted(p.name for p in out.rglob("*")) == before
    # --strict stops at the first problem with one sentence, nothing written
    out2 = tmp_path / "strict"
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(out2), "--strict", "-q"])
    assert res.exit_code != 0 and "--strict" in str(res.exception)
    assert not out2.exists() and not list(tmp_path.glob(".strict.tmp-*"))
    # include-normal keeps the Normal image with no segments
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(root), "--out", str(out), "--include-normal", "--overwrite", "-q"])
    assert res.exit_code == 0
    ds = PanopticDataset(out)
    normal = [ds[i] for i in range(len(ds)) if ds[i]["file_name"].startswith("P3")]
    assert len(normal) == 1 and normal[0]["masks"].shape[0] == 0


def test_cdd_cesm_missing_release_parts_is_one_sentence(tmp_path):
    res = runner.invoke(app, ["prepare", "cdd-cesm", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "not found" in str(res.exception)


def test_vindr_dicom_variants_boxes_and_pseudomasks(tmp_path):
    root = fx.make_vindr(tmp_path / "vindr")
    out = tmp_path / "out"
    res = runner.invoke(app, ["prepare", "vindr", "--root", str(root), "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    data = _check_layout(out)
    assert sorted(im["file_name"] for im in data["images"]) == ["im1.png", "im2.png", "im3.png"]
    assert report["rows_without_birads"] == 1 and report["images_without_chosen_finding"] == 1
    assert any("im4.dicom" in s["file"] and "DICOM" in s["reason"] for s in report["skipped"])
    assert [c.name for c in load_categories(out)] == ["BI-RADS 3", "BI-RADS 4", "BI-RADS 5"]
    ds = PanopticDataset(out)
    by = {ds[i]["file_name"]: ds[i] for i in range(len(ds))}
    yy, xx = np.mgrid[0:96, 0:80]
    truth = (xx - 30) ** 2 + (yy - 40) ** 2 <= 100
    for name in ("im1.png", "im2.png", "im3.png"):
        s = by[name]
        img = s["image"][0].numpy()
        # MONOCHROME1 inverted, JPEG 2000 decoded, window applied: the lesion is bright in all
        assert img[truth].mean() > img[~truth].mean() + 0.2, name
        m = s["masks"][int(np.argmax([float(m[truth].sum()) for m in s["masks"]]))].numpy()
        dice = 2 * (m & truth).sum() / (m.sum() + truth.sum())
        assert dice > 0.8, (name, dice)
    assert by["im1.png"]["labels"].tolist().count(1) == 2  # box partly outside clipped, kept
    assert by["im1.png"]["masks"].shape[0] == 2
    assert by["im2.png"]["labels"].tolist() == [0] and by["im2.png"]["meta"]["laterality"] == "R"
    assert by["im3.png"]["labels"].tolist() == [2]
    assert by["im2.png"]["meta"]["finding_categories"] == ["Architectural Distortion", "Focal Asymmetry", "Mass"]


def test_vindr_classes_option(tmp_path):
    root = fx.make_vindr(tmp_path / "vindr")
    res = runner.invoke(app, ["prepare", "vindr", "--root", str(root), "--out", str(tmp_path / "o"), "--classes", "4", "-q", "--json"])
    assert res.exit_code == 0, res.output
    data = load_panoptic_json(tmp_path / "o")
    assert [c["name"] for c in data["categories"]] == ["BI-RADS 4"]
    assert [im["file_name"] for im in data["images"]] == ["im1.png"]


def test_folder_binary_and_instance_masks(tmp_path):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    fx.write_jpeg(imgs / "a.jpg", fx.blob_image(seed=1))
    Image.fromarray(fx.blob_image(seed=2)).save(imgs / "b.png")
    fx.write_jpeg(imgs / "c.jpg", fx.blob_image(seed=3))  # no mask: skipped
    masks.mkdir()
    binary = np.zeros((96, 80), np.uint8)
    binary[10:20, 10:20] = 255
    binary[50:70, 40:60] = 255
    Image.fromarray(binary).save(masks / "a.png")
    inst = np.zeros((96, 80), np.uint8)
    inst[10:30, 10:30] = 1
    inst[10:30, 30:50] = 2  # touching instances stay apart
    Image.fromarray(inst).save(masks / "b_mask.png")
    out = tmp_path / "out"
    res = runner.invoke(app, ["prepare", "folder", "--images", str(imgs), "--masks", str(masks), "--out", str(out), "-q", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["converted"] == 2 and report["skipped"][0]["file"] == "c.jpg"
    ds = PanopticDataset(out)
    counts = {ds[i]["file_name"]: ds[i]["masks"].shape[0] for i in range(len(ds))}
    assert counts == {"a.jpg": 2, "b.png": 2}
    assert ds.categories[0].name == "lesion"


def test_dataset_subset_transform_and_bad_ids(tmp_path):
    from modise.data.phantoms import prepare_synthetic
    from modise.errors import ModiseError

    prepare_synthetic(tmp_path / "s", n=4, seed=0, size=96, quiet=True)
    folds = load_folds(tmp_path / "s")
    ds = PanopticDataset(tmp_path / "s", image_ids=folds[0], transform=lambda d: {**d, "seen": True})
    assert len(ds) == len(folds[0]) and ds[0]["seen"] and ds.image_ids == folds[0]
    with pytest.raises(ModiseError):
        PanopticDataset(tmp_path / "s", image_ids=[999])
    with pytest.raises(ModiseError):
        PanopticDataset(tmp_path / "missing")


def test_real_sample_mammograms_through_folder_converter(tmp_path, sample_dir):
    out = tmp_path / "real"
    # the sample's masks are JPEG (lossy): read as binary at 128; specks under --min-area dropped
    masks = sample_dir / "masks"
    res = runner.invoke(app, ["prepare", "folder", "--images", str(sample_dir / "images"), "--masks", str(masks), "--out", str(out), "-q", "--json", "--overwrite"])
    assert res.exit_code == 0, res.output
    ds = PanopticDataset(out)
    assert len(ds) == 10
    areas = [s["area"] for a in json.loads((out / "panoptic.json").read_text())["annotations"] for s in a["segments_info"]]
    assert 20 <= len(areas) <= 30 and min(areas) >= 16  # 22 lesions + a few artefact strokes, no JPEG specks
    s = ds[0]
    assert s["image"].shape == (1, 512, 512) and 0 <= float(s["image"].min()) < float(s["image"].max()) <= 1
    assert s["masks"].shape[0] >= 1
    shutil.rmtree(out)
