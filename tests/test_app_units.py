"""The app's pieces without a server: run discovery, thresholds, the lesion table, brush masks,
the annotated overlay and ``modise serve``'s argument errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modise.app.state import DEFAULT_THRESHOLDS, RANDOM_RUN, AppSettings, AppState, find_runs
from modise.data.panoptic import Category
from modise.errors import ModiseError

CATS = [Category(1, "benign", 1, ["benign lesion"]), Category(2, "malignant", 1, ["malignant lesion"])]


def fake_run(path: Path, thresholds: tuple[float, float] | None = None) -> Path:
    """The layout ``modise train`` writes: RUN/model/model.safetensors (+ the model's RUN/model/config.yaml)."""
    (path / "model").mkdir(parents=True)
    (path / "model" / "model.safetensors").write_bytes(b"")
    (path / "checkpoints").mkdir()
    if thresholds:
        (path / "config.yaml").write_text("model: model\n")
        (path / "model" / "config.yaml").write_text(
            f"inference:\n  object_mask_threshold: {thresholds[0]}\n  overlap_threshold: {thresholds[1]}\n")
    return path


def test_find_runs_and_their_thresholds(tmp_path):
    a = fake_run(tmp_path / "runs" / "demo" / "run", (0.5, 0.6))
    b = fake_run(tmp_path / "runs" / "fold1")
    (tmp_path / "runs" / "notes").mkdir()
    assert find_runs(tmp_path / "runs") == [b, a]  # breadth first, a run's own folders are not searched
    state = AppState(AppSettings(runs_dir=tmp_path / "runs", random_weights=True), tmp_root=tmp_path)
    try:
        assert state.run_choices == [str(b), str(a), RANDOM_RUN]  # a run is the default, the random model last
        assert state.default_thresholds(str(a)) == (0.5, 0.6)
        assert state.default_thresholds(str(b)) == DEFAULT_THRESHOLDS  # no config.yaml: Mask2Former's defaults
        with pytest.raises(ModiseError, match="Unknown run"):
            state.segmentation_pipeline(str(tmp_path / "elsewhere"))
    finally:
        state.cleanup()
    assert not state.tmp_dir.exists()
    with pytest.raises(ModiseError, match="does not exist"):
        find_runs(tmp_path / "missing")


def test_no_model_is_a_sentence(tmp_path):
    state = AppState(AppSettings(), tmp_root=tmp_path)
    try:
        assert state.run_choices == []
        with pytest.raises(ModiseError, match="--run RUN, --runs-dir DIR or --random-weights"):
            state.segmentation_pipeline(None)
    finally:
        state.cleanup()


def test_lesion_rows_in_mm2_when_spacing_is_known():
    from modise.app.views import lesion_rows

    segs = [{"id": 3, "category_id": 2, "score": 0.91234, "area": 400, "bbox": [10, 20, 20, 20]}]
    headers, rows = lesion_rows(segs, CATS, [0.1, 0.07])
    assert headers[3] == "area (mm²)" and rows == [[1, "malignant", 0.912, 2.8, "10,20,20,20"]]
    headers, rows = lesion_rows(segs, CATS, None)
    assert headers[3] == "area (px)" and rows[0][3] == 400


def test_labelled_overlay_outlines_in_class_colour():
    from modise.app.views import labelled_overlay
    from modise.viz.palette import CLASS_COLOURS

    ids = np.zeros((200, 200), np.int64)
    ids[100:160, 60:140] = 7
    seg = {"id": 7, "category_id": 2, "score": 0.8, "area": int((ids == 7).sum()), "bbox": [60, 100, 80, 60]}
    im = np.asarray(labelled_overlay(np.full((200, 200), 0.5, np.float32), ids, [seg], CATS))
    assert tuple(im[159, 100]) == CLASS_COLOURS[1]  # bottom outline, malignant = second colour
    assert tuple(im[20, 20]) == (128, 128, 128)  # background untouched
    label = im[80:100, 60:140]  # the "#1 malignant 0.80" label sits above the box
    assert (np.abs(label.astype(int) - 128).sum(axis=2) > 100).mean() > 0.3


def test_brush_layers_become_the_mask():
    from modise.app.inpaint_tab import _grey, mask_from_layers

    layer = np.zeros((50, 80, 4), np.uint8)
    layer[10:20, 30:40] = (255, 0, 0, 255)
    other = np.zeros((50, 80, 4), np.uint8)
    other[40:45, 0:5, 3] = 128
    m = mask_from_layers([layer, other], (50, 80))
    assert m.sum() == 100 + 25 and m[15, 35] and m[42, 2]
    # a canvas of another size is scaled onto the image
    assert mask_from_layers([layer], (100, 160)).sum() == 400
    assert mask_from_layers([np.zeros((50, 80, 4), np.uint8)], (50, 80)) is None
    rgba = np.dstack([np.full((4, 4, 3), 200, np.uint8), np.full((4, 4), 255, np.uint8)])
    assert _grey(rgba).dtype == np.uint8 and (_grey(rgba) == 200).all()


def test_serve_rejects_a_missing_run_in_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from modise.cli import app

    res = CliRunner().invoke(app, ["serve", "--run", str(tmp_path / "nope")])
    assert isinstance(res.exception, ModiseError) and "does not exist" in str(res.exception)


def test_results_older_than_keep_files_s_are_deleted_and_the_upload_limit_is_what_gradio_shows(tmp_path):
    from modise.app.segment_tab import load_upload

    state = AppState(AppSettings(random_weights=True, size="tiny", keep_files_s=60, max_upload_mb=1), tmp_root=tmp_path)
    try:
        old = state.job_dir("segment")
        (old / "result.png").write_bytes(b"x")
        os.utime(old, (0, 0))  # made long ago
        recent = state.job_dir("segment")
        new = state.job_dir("inpaint")
        assert not old.exists() and recent.is_dir() and new.is_dir()
        # Gradio's upload box counts 1 MB as 2**20 bytes ("200.0 Mb" for --max-upload-mb 200)
        assert state.settings.max_upload_bytes == 2**20
        big = tmp_path / "big.png"
        big.write_bytes(b"\0" * (3 * 2**19))
        with pytest.raises(ModiseError, match=r"big.png: the file is 1.5 MB, more than the 1 MB limit"):
            load_upload(state, big)
    finally:
        state.cleanup()


def test_the_lesions_table_shows_its_own_columns_before_a_run(tmp_path, monkeypatch):
    from modise.app.server import build_app
    from modise.app.views import lesion_rows

    for var in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # build_app sets them; restored afterwards
    state = AppState(AppSettings(random_weights=True, size="tiny"), tmp_root=tmp_path)
    try:
        demo = build_app(state)
        table = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "segment-table")
        assert table.get_config()["value"]["headers"] == lesion_rows([], [], None)[0]  # not "1 2 3"
        assert any(getattr(b, "elem_id", None) == "inpaint-summary" for b in demo.blocks.values())
        assert demo.delete_cache == (600, 3600)  # every 10 min: Gradio's copies of uploads go by age as well
    finally:
        state.cleanup()
