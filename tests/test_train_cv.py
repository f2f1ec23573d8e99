"""``modise cv`` on a small synthetic set: every fold trained and evaluated, finished folds kept, the table written."""

import json

import pytest

model_mod = pytest.importorskip("modise.model")
if not hasattr(model_mod, "build_model"):
    pytest.skip("model part not available yet", allow_module_level=True)


def test_cv_two_folds_writes_table_and_resumes(tmp_path):
    from modise.data.phantoms import prepare_synthetic
    from modise.engine.training.cv import cross_validate
    from modise.engine.training.config import TrainConfig

    prepare_synthetic(tmp_path / "data", n=8, seed=3, size=128, k=2, quiet=True)
    cfg = TrainConfig(preset="m-odise", size="tiny", data=str(tmp_path / "data"), random_weights=True, image_size=128,
                      batch_size=2, max_steps=1, accelerator="cpu", devices=1)
    out = tmp_path / "cv"
    report = cross_validate(cfg, out, folds=2, progress=False)
    for k in range(2):
        m = json.loads((out / f"fold{k}" / "metrics.json").read_text())
        assert m["train"]["fold"] == k and "pq" in m
    assert (out / "report").is_dir() and any((out / "report").iterdir())
    assert report
    # each fold predicted its own held-out images; the report pools them (out-of-fold) with patient CIs
    from modise.data.dataset import load_folds

    folds = load_folds(tmp_path / "data")
    for k in range(2):
        preds = json.loads((out / f"fold{k}" / "predictions" / "panoptic.json").read_text())
        assert sorted(a["image_id"] for a in preds["annotations"]) == sorted(folds[k])
    pooled = report["pooled"]["pooled"]["m-odise"]
    assert pooled["images"] == 8 and pooled["pq"]["ci"] is not None
    assert "out-of-fold" in (out / "report" / "report.md").read_text().lower()
    # a second call keeps finished folds (no retraining: metrics untouched)
    before = (out / "fold0" / "metrics.json").stat().st_mtime_ns
    cross_validate(cfg, out, folds=2, progress=False)
    assert (out / "fold0" / "metrics.json").stat().st_mtime_ns == before
