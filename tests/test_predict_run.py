"""``modise predict`` end to end on a tiny trained run: real sample mammograms as DICOM and JPEG
(+ one broken file), DICOM SEG read back, and ``evaluate`` accepting the output."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

model_mod = pytest.importorskip("modise.model")
if not hasattr(model_mod, "build_model"):
    pytest.skip("model part not available yet", allow_module_level=True)

from data_fixtures import train_tiny_run, write_mammogram_dicom  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("pred"), n=10, seed=2, k=5, fold=0)


def test_predict_dicom_jpeg_and_broken(trained, tmp_path, sample_dir, sample_images):
    import highdicom as hd
    from PIL import Image

    from modise.data.panoptic import read_id_png
    from modise.engine.prediction.predict import predict_files

    inp = tmp_path / "in"
    inp.mkdir()
    img = np.asarray(Image.open(sample_images[0]).convert("L"))
    dcm = write_mammogram_dicom(inp / "mammo.dcm", img[:, :400], monochrome1=True)  # non-square, MONOCHROME1
    shutil.copy(sample_images[1], inp / "real.jpg")
    (inp / "broken.png").write_bytes(b"not a png")
    summary = predict_files(trained / "run", [inp], tmp_path / "out", dicom_seg=True, batch_size=2, progress=False)
    out = tmp_path / "out"
    assert summary["images"] == 2
    assert len(summary["errors"]) == 1 and "broken.png" in summary["errors"][0]["input"]

    pj = json.loads((out / "panoptic.json").read_text())
    assert [im["file_name"] for im in pj["images"]] == ["mammo.dcm", "real.jpg"]
    for im, ann in zip(pj["images"], pj["annotations"]):
        ids = read_id_png(out / "panoptic" / ann["file_name"])
        assert ids.shape == (im["height"], im["width"])
        assert {s["id"] for s in ann["segments_info"]} == set(np.unique(ids)) - {0}
        assert all(0.0 <= s["score"] <= 1.0 for s in ann["segments_info"])
    assert pj["images"][0]["height"] == 512 and pj["images"][0]["width"] == 400
    cats = [c["name"] for c in pj["categories"]]
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == sorted(f"{s}_{c}.png" for s in ("mammo", "real") for c in cats)
    assert (out / "overlays" / "mammo.png").is_file() and (out / "overlays" / "real.png").is_file()

    seg = hd.seg.segread(out / "dicom_seg" / "mammo_seg.dcm")
    import pydicom

    src = pydicom.dcmread(dcm)
    arr = seg.get_pixels_by_source_instance([src.SOPInstanceUID], combine_segments=False)
    n = len(pj["annotations"][0]["segments_info"])  # instance segments first, then one per class
    assert arr.shape == (1, 512, 400, n + len(cats))
    ids = read_id_png(out / "panoptic" / "mammo.png")
    for k, cat in enumerate(pj["categories"]):
        seg_ids = [s["id"] for s in pj["annotations"][0]["segments_info"] if s["category_id"] == cat["id"]]
        assert np.array_equal(arr[0, ..., n + k].astype(bool), np.isin(ids, seg_ids))
    assert sorted(p.name for p in (out / "dicom_seg").iterdir()) == ["mammo_seg.dcm"]  # not the source's own name


def test_evaluate_accepts_predict_output(trained, tmp_path):
    from modise.engine.evaluation import evaluate_folders
    from modise.engine.prediction.predict import predict_files

    data = trained / "data"
    predict_files(trained / "run", [data / "images"], tmp_path / "pred", progress=False, overlays=False)
    gt = json.loads((data / "panoptic.json").read_text())
    pred = json.loads((tmp_path / "pred" / "panoptic.json").read_text())
    assert sorted(i["id"] for i in pred["images"]) == sorted(i["id"] for i in gt["images"])
    metrics = evaluate_folders(data, tmp_path / "pred", tmp_path / "eval")
    assert len(metrics["pq"]) == len(metrics["thresholds"]) and "best" in metrics


def test_predict_cli_errors_are_one_sentence(trained, tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "modise", "predict", "--checkpoint", str(tmp_path / "nope"),
                        "--input", str(trained / "data" / "images"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "does not exist" in p.stderr and "Traceback" not in p.stderr
