"""`modise.data.panoptic` owns the panoptic format: id<->RGB coding, reading, and the writer
every command uses (panoptic/*.png + panoptic.json + optional instances.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modise.data.panoptic import (
    Category,
    PanopticFolderWriter,
    load_panoptic_json,
    panoptic_record,
    read_id_png,
)

CATS = [Category(1, "benign"), Category(2, "malignant")]


def test_writer_round_trip_with_instances(tmp_path):
    ids = np.zeros((20, 30), np.int64)
    ids[2:6, 3:9] = 1
    ids[10:12, 0:2] = 70000  # needs all three colour channels
    w = PanopticFolderWriter(tmp_path, CATS, info={"description": "t"})
    ann = w.add({"id": 7, "file_name": "x.jpg", "height": 20, "width": 30}, ids,
                [{"id": 1, "category_id": 1, "score": 0.5}, {"id": 70000, "category_id": 2}],
                instances=[{"category_id": 2, "score": 0.4, "segmentation": {"size": [20, 30], "counts": "x"}}])
    data = w.finish()
    assert ann["file_name"] == "x.png"
    assert load_panoptic_json(tmp_path) == json.loads(json.dumps(data))
    s1, s2 = data["annotations"][0]["segments_info"]
    assert (s1["area"], s1["bbox"], s1["iscrowd"], s1["score"]) == (24, [3, 2, 6, 4], 0, 0.5)
    assert (s2["area"], s2["bbox"]) == (4, [0, 10, 2, 2])
    assert np.array_equal(read_id_png(tmp_path / "panoptic" / "x.png"), ids)
    compact = read_id_png(tmp_path / "panoptic" / "x.png", compact=True)
    assert compact.dtype == np.int32 and np.array_equal(compact, ids)
    inst = json.loads((tmp_path / "instances.json").read_text())
    assert inst[0]["image_id"] == 7 and list(inst[0])[0] == "image_id"
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_writer_without_instances_and_custom_names(tmp_path):
    ids = np.zeros((8, 8), np.int64)
    ids[1:3, 1:3] = 4
    w = PanopticFolderWriter(tmp_path, CATS, png_dir=tmp_path, json_name="a_panoptic.json",
                             images=[{"id": 1, "file_name": "old.png", "height": 8, "width": 8}],
                             annotations=[{"image_id": 1, "file_name": "old.png", "segments_info": []}])
    w.add({"id": 2, "file_name": "a.dcm", "height": 8, "width": 8}, ids, [{"id": 4, "category_id": 1}], png_name="a_panoptic.png")
    data = w.finish()
    assert [im["id"] for im in data["images"]] == [1, 2] and "info" not in data
    assert read_id_png(tmp_path / "a_panoptic.png", compact=True).dtype == np.uint8
    assert not (tmp_path / "instances.json").exists()


def test_panoptic_record_drops_empty_segments():
    ids = torch.zeros(4, 4, dtype=torch.int32)
    ids[0, 0] = 3
    rec_ids, segs = panoptic_record({"panoptic_seg": (ids, [{"id": 3, "category_id": 2, "score": 0.7}, {"id": 9, "category_id": 1}])})
    assert rec_ids.dtype == np.int64 and segs == [{"id": 3, "category_id": 2, "score": 0.7, "area": 1, "isthing": 1}]


def test_reading_a_missing_panoptic_json_names_the_file(tmp_path):
    from modise.errors import ModiseError

    with pytest.raises(ModiseError, match="panoptic.json"):
        load_panoptic_json(tmp_path)


def test_id_rgb_roundtrip(tmp_path):
    from modise.data.panoptic import id2rgb, read_id_png, rgb2id, write_id_png

    ids = np.array([[0, 1, 255], [256, 65536 + 7, 300000]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    write_id_png(tmp_path / "a.png", ids)
    assert np.array_equal(read_id_png(tmp_path / "a.png"), ids)
