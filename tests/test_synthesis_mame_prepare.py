"""`modise mame prepare`: VinDr-style DICOMs and PNG folders -> 512-frame PNGs + prompts."""

from __future__ import annotations

import json

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from typer.testing import CliRunner

from modise.cli import app

H, W = 200, 100  # tall, like a mammogram: the short side (width) is scaled to the frame


def _write_dicom(path, breast_value, manufacturer, laterality, view):
    """12-bit MONOCHROME1 DICOM: background stored 4095 (dark), breast ``breast_value`` on its side."""
    stored = np.full((H, W), 4095, np.uint16)
    cols = slice(0, 30) if laterality == "L" else slice(W - 30, W)
    stored[:, cols] = breast_value
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer, ds.ImageLaterality, ds.ViewPosition = "MG", manufacturer, laterality, view
    ds.Rows, ds.Columns, ds.SamplesPerPixel = H, W, 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


HEADER = ("study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,"
          "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split\n")


def _vindr(root):
    _write_dicom(root / "images" / "s1" / "a.dicom", 4095 - 1400, "SIEMENS", "R", "MLO")
    _write_dicom(root / "images" / "s2" / "b.dicom", 4095 - 2048, "HOLOGIC", "L", "CC")
    _write_dicom(root / "images" / "s3" / "c.dicom", 4095 - 2048, "HOLOGIC", "L", "CC")
    (root / "images" / "s4").mkdir(parents=True)
    (root / "images" / "s4" / "d.dicom").write_bytes(b"DICM but not really")
    rows = [
        "s1,x,a,R,MLO,200,100,BI-RADS 1,DENSITY C,['No Finding'],,,,,,training",
        "s2,x,b,L,CC,200,100,BI-RADS 1,DENSITY A,['No Finding'],,,,,,training",
        "s3,x,c,L,CC,200,100,BI-RADS 4,DENSITY B,['Mass'],BI-RADS 4,10.0,90.0,50.0,130.0,training",
        "s3,x,c,L,CC,200,100,BI-RADS 4,DENSITY B,['Suspicious Calcification'],BI-RADS 4,10.0,140.0,30.0,160.0,training",
        "s4,x,d,L,CC,200,100,BI-RADS 1,DENSITY B,['No Finding'],,,,,,training",
    ]
    (root / "finding_annotations.csv").write_text(HEADER + "\n".join(rows) + "\n")


def _records(out):
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def test_vindr_healthy_images_prompts_flip_and_vendor_saturation(tmp_path):
    _vindr(tmp_path / "vindr")
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(tmp_path / "vindr"), "--out", str(out),
                                   "--resolution", "64", "--all-vendors"])
    assert res.exit_code == 0, res.output
    assert "d.dicom" in res.output  # the unreadable DICOM is reported and skipped
    recs = _records(out)
    assert [r["source"].split("/")[-1] for r in recs] == ["a.dicom", "b.dicom"]  # the Mass image is not healthy
    # MAM-E's captions: Siemens with its density, Hologic with its area (prompt_saving.py, create_fusion.py)
    assert recs[0]["text"] == "a siemens mammogram in MLO view with high density"
    assert recs[1]["text"] == "a hologic mammogram in CC view with small area"
    a = np.asarray(Image.open(out / recs[0]["file_name"]))
    b = np.asarray(Image.open(out / recs[1]["file_name"]))
    assert a.shape == b.shape == (64, 64)
    # MONOCHROME1 inverted; Siemens saturates at 3500, Hologic at 4095; right breast mirrored to the left
    assert a[32, 2] == round(1400 / 3500 * 255) and a[32, 60] == 0
    assert b[32, 2] == round(2048 / 4095 * 255) and b[32, 60] == 0
    assert recs[0]["flipped"] is True and recs[1]["flipped"] is False


def test_vindr_siemens_only_by_default(tmp_path):
    """MAM-E's VinDr data is its Siemens images (from_dicom2png.py:34-39 into ``siemens15k``): the
    Hologic one is left out, counted once; the unreadable DICOM is still reported."""
    _vindr(tmp_path / "vindr")
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(tmp_path / "vindr"), "--out", str(out),
                                   "--resolution", "64", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["source"].split("/")[-1] for r in _records(out)] == ["a.dicom"]
    assert "1 image(s) of other vendors than Siemens left out (HOLOGIC: 1)" in res.output and "--all-vendors" in res.output
    assert "d.dicom" in res.output
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["all_vendors"] is False and any("HOLOGIC" in w for w in report["warnings"])


def _inpainting(tmp_path, *extra):
    _vindr(tmp_path / "vindr")
    out = tmp_path / "inp"
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(tmp_path / "vindr"), "--inpainting",
                                   "--out", str(out), "--resolution", "64", "--all-vendors", *extra])
    assert res.exit_code == 0, res.output
    return out


def test_vindr_inpainting_takes_every_finding_but_no_finding(tmp_path):
    """The released vindr_lesion-inpainting's data: one image + box per finding that is not
    "No Finding" (masks_generation_vindr.py@10a9966:30,45-118): c's Mass and its calcification."""
    out = _inpainting(tmp_path)
    recs = _records(out)
    assert [r["source"].split("/")[-1] for r in recs] == ["c.dicom", "c.dicom"]
    boxes = [np.nonzero(np.asarray(Image.open(out / r["mask_file_name"])) > 127) for r in recs]
    assert boxes[1][0].min() > boxes[0][0].max()  # the calcification box lies below the Mass box
    assert json.loads((out / "prepare_report.json").read_text())["findings"] == "lesions"


def test_vindr_masses_for_inpainting_map_the_box(tmp_path):
    out = _inpainting(tmp_path, "--findings", "mass")
    (rec,) = _records(out)
    assert rec["text"] == "a mammogram with a lesion"
    mask = np.asarray(Image.open(out / rec["mask_file_name"])) > 127
    ys, xs = np.nonzero(mask)
    # 200x100 -> 128x64 (x0.64), centre crop drops 32 rows: box (10,90)-(50,130) -> (6.4,25.6)-(32,51.2)
    assert abs(xs.min() - 6) <= 1 and abs(xs.max() + 1 - 32) <= 1
    assert abs(ys.min() - 26) <= 1 and abs(ys.max() + 1 - 51) <= 1


def test_png_folder_with_metadata_csv(tmp_path, sample_images):
    root = tmp_path / "pngs"
    root.mkdir()
    for p in sample_images[:2]:
        Image.open(p).convert("L").save(root / (p.stem + ".png"))
    lines = ["file_name,laterality,view,density,vendor",
             f"{sample_images[0].stem}.png,L,CC,D,siemens",
             f"{sample_images[1].stem}.png,,,,",
             "missing.png,L,CC,A,hologic"]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(root), "--out", str(out), "--resolution", "64"])
    assert res.exit_code == 0, res.output
    assert "missing.png" in res.output and "shorter prompt" in res.output
    recs = _records(out)
    assert len(recs) == 2
    assert recs[0]["text"] == "a siemens mammogram in CC view with very high density"
    assert recs[1]["text"].startswith("a mammogram with ")  # no vendor, view, density: a shorter prompt
    assert not (root / "metadata.jsonl").exists()
    res = CliRunner().invoke(app, ["mame", "prepare", "--root", str(root), "--out", str(out)])
    assert res.exit_code != 0 and "overwrite" in str(res.exception)


def test_panoptic_dataset_lesions_become_inpainting_masks(tmp_path):
    from modise.data.panoptic import write_id_png

    root = tmp_path / "D"
    (root / "images").mkdir(parents=True)
    (root / "panoptic").mkdir()
    image = np.zeros((128, 64), np.uint8)
    image[:, 34:] = 150  # a right breast
    Image.fromarray(image).save(root / "images" / "r.png")
    ids = np.zeros((128, 64), np.int64)
    ids[60:70, 40:50] = 1  # lesion
    ids[0:5, 0:5] = 2  # a stuff segment, not a lesion
    write_id_png(root / "panoptic" / "r.png", ids)
    (root / "images" / "empty.png").write_bytes((root / "images" / "r.png").read_bytes())
    data = {
        "images": [{"id": 1, "file_name": "r.png", "laterality": "R"}, {"id": 2, "file_name": "empty.png"}],
        "annotations": [
            {"image_id": 1, "file_name": "r.png", "segments_info": [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 9}]},
            {"image_id": 2, "file_name": "empty.png", "segments_info": []},
        ],
        "categories": [{"id": 1, "name": "mass", "isthing": 1}, {"id": 9, "name": "tissue", "isthing": 0}],
    }
    (root / "panoptic.json").write_text(json.dumps(data))
    out = tmp_path / "prep"
    res = CliRunner().invoke(app, ["mame", "prepare", "--data", str(root), "--out", str(out), "--resolution", "64"])
    assert res.exit_code == 0, res.output
    (rec,) = _records(out)  # the image without lesions is left out
    assert rec["flipped"] is True and rec["text"] == "a mammogram with a lesion"
    mask = np.asarray(Image.open(out / rec["mask_file_name"])) > 127
    ys, xs = np.nonzero(mask)
    # mirrored (x -> 63 - x), then rows 32..95 kept: lesion (40..50, 60..70) -> x 14..24, y 28..38
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (14, 24, 28, 38)
    assert np.asarray(Image.open(out / rec["file_name"]))[:, :20].mean() > 100  # breast now on the left
