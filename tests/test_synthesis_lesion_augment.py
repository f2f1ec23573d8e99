"""`modise augment`: inpainted lesions become a canonical panoptic dataset, merged with D."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from modise.cli import app
from modise.data.panoptic import Category, read_id_png, write_id_png


def _tiny_dataset(root, image):
    """A one-image panoptic dataset with BI-RADS classes and a folds.json."""
    (root / "images").mkdir(parents=True)
    (root / "panoptic").mkdir()
    Image.fromarray(image).save(root / "images" / "p1.png")
    ids = np.zeros(image.shape, np.int64)
    ids[100:140, 100:150] = 1
    write_id_png(root / "panoptic" / "p1.png", ids)
    cats = [Category(i + 1, f"birads{b}", 1, [f"BI-RADS {b} lesion"]) for i, b in enumerate((3, 4, 5))]
    data = {
        "images": [{"id": 7, "file_name": "p1.png", "height": image.shape[0], "width": image.shape[1]}],
        "annotations": [{"image_id": 7, "file_name": "p1.png",
                         "segments_info": [{"id": 1, "category_id": 2, "area": 2000, "bbox": [100, 100, 50, 40], "iscrowd": 0}]}],
        "categories": [c.to_json() for c in cats],
    }
    (root / "panoptic.json").write_text(json.dumps(data))
    (root / "folds.json").write_text(json.dumps([[7]]))


def test_augment_merges_and_writes_consistent_panoptic(tmp_path, sample_images):
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    for p in sample_images[:2]:
        shutil.copy(p, healthy / p.name)
    (healthy / "broken.png").write_bytes(b"not an image")
    data = tmp_path / "D"
    _tiny_dataset(data, np.asarray(Image.open(sample_images[3]).convert("L")))
    out = tmp_path / "aug"
    args = ["augment", "--healthy", str(healthy), "--data", str(data), "--n", "3", "--steps", "1", "--crop", "64",
            "--classes", "birads4,birads5", "--size", "tiny", "--random-weights", "--out", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "broken.png" in res.output  # reported, skipped
    assert json.loads(res.output.strip().splitlines()[-1]) == {"out": str(out), "images": 4, "synthetic": 3}

    pan = json.loads((out / "panoptic.json").read_text())
    assert [c["name"] for c in pan["categories"]] == ["birads3", "birads4", "birads5"]
    assert json.loads((out / "folds.json").read_text()) == [[7]]  # synthetic images train only
    assert (out / "images" / "p1.png").read_bytes() == (data / "images" / "p1.png").read_bytes()
    ids = [im["id"] for im in pan["images"]]
    assert len(set(ids)) == 4 and ids[0] == 7
    by_id = {a["image_id"]: a for a in pan["annotations"]}
    for im in pan["images"][1:]:
        assert im["synthetic"] and im["lesion_class"] in ("birads4", "birads5")
        seg = by_id[im["id"]]["segments_info"][0]
        assert seg["category_id"] == {"birads4": 2, "birads5": 3}[im["lesion_class"]]
        pixels = np.asarray(Image.open(out / "images" / im["file_name"]))
        assert pixels.shape == (im["height"], im["width"])
        seg_ids = read_id_png(out / "panoptic" / im["file_name"])
        assert set(np.unique(seg_ids)) == {0, 1}
        assert int((seg_ids == 1).sum()) == seg["area"] > 0
        x0, y0, x1, y1 = im["inpaint_box_xyxy"]
        inside = np.zeros(seg_ids.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert not (seg_ids[~inside]).any()  # the lesion lies in the inpainted box
        src = np.asarray(Image.open(im["source_file"]).convert("L"))
        assert np.array_equal(pixels[~inside], src[~inside])
