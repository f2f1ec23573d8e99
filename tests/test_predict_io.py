"""Prediction I/O: input discovery, overlays (the DICOM SEG and SR: tests/test_dicom_*.py)."""

from pathlib import Path

import numpy as np
import pytest

from modise.data.panoptic import Category
from modise.errors import ModiseError

CATS = [Category(1, "benign", 1, ["benign lesion"]), Category(2, "malignant", 1, ["malignant lesion"])]


def test_discover_inputs(tmp_path, sample_images):
    import shutil

    (tmp_path / "sub").mkdir()
    shutil.copy(sample_images[0], tmp_path / "a.jpg")
    shutil.copy(sample_images[1], tmp_path / "sub" / "a.jpg")
    (tmp_path / "notes.txt").write_text("x")
    from modise.engine.prediction.inputs import discover_inputs, unique_stems

    found = discover_inputs([tmp_path, tmp_path / "a.jpg"])
    assert [p.name for p in found] == ["a.jpg", "a.jpg"]
    assert unique_stems(found) == ["a", "a_1"]
    with pytest.raises(ModiseError, match="does not exist"):
        discover_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModiseError, match="No PNG"):
        discover_inputs([tmp_path / "empty"])


def test_figure2_overlay_panels():
    from modise.data.coco_records import Instances
    from modise.model.config import InferenceConfig
    from modise.pipeline import PanopticResult
    from modise.viz.overlays import figure2

    px = np.random.default_rng(0).random((100, 80)).astype(np.float32)
    ids = np.zeros((100, 80), np.int64)
    ids[10:40, 10:40] = 3
    masks = (ids == 3)[None]
    sem = np.zeros((2, 100, 80), np.float32)
    sem[0][masks[0]] = 0.9
    res = PanopticResult(ids, [{"id": 3, "category_id": 1, "score": 0.9, "isthing": 1}],
                         Instances(labels=np.array([0]), scores=np.array([0.9]), masks=masks), sem, InferenceConfig())
    fig = np.asarray(figure2(px, res, CATS, max_side=100, gt=(ids, [{"id": 3, "category_id": 1}])))
    assert fig.shape == (100 + 16 + 16, 80 * 5 + 16, 3)  # title row, panels, legend row
    panoptic = fig[16:, 2 * 84 : 2 * 84 + 80]
    assert (panoptic[25, 25, 0] > panoptic[25, 25, 2]) and np.allclose(panoptic[80, 60], panoptic[80, 60, 0])  # red lesion, grey elsewhere
    big = figure2(px, res, CATS)  # small images are drawn enlarged (up to 4x) so labels stay legible
    assert big.size == (4 * 320 + 3 * 4, 400 + 32)  # 4 panels without ground truth


def test_discover_inputs_skips_folders_modise_wrote(tmp_path):
    """`predict --input scans --out scans/preds`: a rerun must not read its own earlier outputs as scans."""
    from PIL import Image

    from modise.engine.prediction.inputs import discover_inputs
    from modise.outputs import MARKER

    scans = tmp_path / "scans"
    (scans / "preds" / "overlays").mkdir(parents=True)
    Image.new("L", (8, 8)).save(scans / "a.png")
    Image.new("L", (8, 8)).save(scans / "preds" / "overlays" / "a.png")
    (scans / "preds" / MARKER).touch()
    assert discover_inputs([scans]) == [scans / "a.png"]
