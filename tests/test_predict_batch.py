"""``modise predict`` batched on the device with a writer thread: the same files with --batch-size 1
and 3, and a failing write surfaces on the main thread."""

import json
import shutil

import numpy as np
import pytest

from modise.data.panoptic import Category, read_id_png


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    from modise.model import build_model

    torch.manual_seed(0)
    cats = [Category(1, "benign", 1), Category(2, "malignant", 1)]
    model = build_model("m-odise", "tiny", categories=cats,
                        overrides={"inference": {"object_mask_threshold": 0.0, "overlap_threshold": 0.0}})
    return model.save_pretrained(tmp_path_factory.mktemp("pb") / "model")


def test_batch_sizes_write_the_same_predictions(model_dir, tmp_path, sample_images):
    from modise.engine.prediction.predict import predict_files

    inp = tmp_path / "in"
    inp.mkdir()
    for p in sample_images[:4]:
        shutil.copy(p, inp / p.name)
    (inp / "zz_broken.png").write_bytes(b"not a png")
    outs = {}
    for bs in (1, 3):
        out = tmp_path / f"out{bs}"
        s = predict_files(model_dir, [inp], out, batch_size=bs, progress=False, device="cpu")
        assert s["images"] == 4 and len(s["errors"]) == 1 and "zz_broken.png" in s["errors"][0]["input"]
        outs[bs] = out
    pj = {bs: json.loads((o / "panoptic.json").read_text()) for bs, o in outs.items()}
    assert [im["file_name"] for im in pj[1]["images"]] == [im["file_name"] for im in pj[3]["images"]]
    assert pj[1]["info"]["image_size"] == 128 and pj[1]["info"]["object_mask_threshold"] == 0.0
    for a1, a3 in zip(pj[1]["annotations"], pj[3]["annotations"]):
        ids1, ids3 = read_id_png(outs[1] / "panoptic" / a1["file_name"]), read_id_png(outs[3] / "panoptic" / a3["file_name"])
        assert ids1.shape == ids3.shape and (ids1 != ids3).mean() < 1e-3
        assert len(a1["segments_info"]) == len(a3["segments_info"])
        for s1, s3 in zip(a1["segments_info"], a3["segments_info"]):
            assert s1["category_id"] == s3["category_id"] and abs(s1["score"] - s3["score"]) < 1e-4
    inst = {bs: json.loads((o / "instances.json").read_text()) for bs, o in outs.items()}
    assert len(inst[1]) == len(inst[3]) > 0
    np.testing.assert_allclose([r["score"] for r in inst[1]], [r["score"] for r in inst[3]], atol=1e-4)
    heat = sorted(p.name for p in (outs[3] / "heatmaps").iterdir())
    assert heat == sorted(p.name for p in (outs[1] / "heatmaps").iterdir()) and len(heat) == 8


def test_a_failing_write_is_raised_not_lost(model_dir, tmp_path, sample_images, monkeypatch):
    from modise.engine.prediction import predict, records

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(records, "write_heatmaps", broken)
    with pytest.raises(OSError, match="disk full"):
        predict.predict_files(model_dir, [sample_images[0]], tmp_path / "out", progress=False, device="cpu")
    assert not (tmp_path / "out" / "panoptic.json").exists()
