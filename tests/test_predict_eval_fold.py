"""``predict --data D --fold K`` predicts that fold's images and ``evaluate --fold K`` scores
only them: together they reproduce the held-out metrics the training run wrote, and nothing
outside the fold counts as missed."""

import json

import pytest
from typer.testing import CliRunner

model_mod = pytest.importorskip("modise.model")
if not hasattr(model_mod, "build_model"):
    pytest.skip("model part not available yet", allow_module_level=True)


from data_fixtures import train_tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("fold"), n=9, seed=4, k=3, fold=1)


def _app():
    from modise.cli import app

    return app


def test_predict_and_evaluate_one_fold_match_the_run(run, tmp_path):
    from modise.data.dataset import load_folds

    data = run / "data"
    fold1 = load_folds(data)[1]
    r = CliRunner().invoke(_app(), ["predict", "--checkpoint", str(run / "run"), "--data", str(data), "--fold", "1",
                                    "--out", str(tmp_path / "P"), "--no-overlays", "--json"])
    assert r.exit_code == 0, r.output
    pred = json.loads((tmp_path / "P" / "panoptic.json").read_text())
    assert sorted(im["id"] for im in pred["images"]) == sorted(fold1)
    inst = json.loads((tmp_path / "P" / "instances.json").read_text())
    assert inst and {d["image_id"] for d in inst} <= set(fold1)
    assert all(set(d) == {"image_id", "category_id", "score", "segmentation"} for d in inst)

    r = CliRunner().invoke(_app(), ["evaluate", "--gt", str(data), "--pred", str(tmp_path / "P"), "--fold", "1",
                                    "--out", str(tmp_path / "E"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "E" / "metrics.json").read_text())
    assert m["fold"] == {"index": 1, "images": len(fold1)} and m["ap_source"] == "instances"
    # the same numbers the run computed on its held-out fold in memory
    held_out = json.loads((run / "run" / "metrics.json").read_text())
    for key in ("pq", "rq", "sq", "ap", "dice", "ap_source"):
        assert m[key] == pytest.approx(held_out[key], abs=1e-6), key

    # without --fold every other image counts as missed (the trap the README example fell into)
    whole = json.loads(CliRunner().invoke(_app(), ["evaluate", "--gt", str(data), "--pred", str(tmp_path / "P"),
                                                   "--out", str(tmp_path / "W"), "--json"]).stdout.splitlines()[-1])
    assert "had no prediction" not in (tmp_path / "E" / "metrics.md").read_text()
    assert f"{9 - len(fold1)} GT image(s) had no prediction" in (tmp_path / "W" / "metrics.md").read_text()
    assert sum(c["gt_segments"] for c in whole["per_class"].values()) >= sum(c["gt_segments"] for c in m["per_class"].values())


def test_fold_errors_are_one_sentence(run, tmp_path):
    data = run / "data"
    r = CliRunner().invoke(_app(), ["evaluate", "--gt", str(data), "--pred", str(data), "--fold", "7", "--out", str(tmp_path / "E")])
    assert r.exit_code == 1 and "defines folds 0..2" in str(r.exception) and not (tmp_path / "E").exists()
    r = CliRunner().invoke(_app(), ["predict", "--checkpoint", str(run / "run"), "--fold", "0", "--out", str(tmp_path / "P")])
    assert r.exit_code == 1 and "--fold needs --data" in str(r.exception)
    r = CliRunner().invoke(_app(), ["predict", "--checkpoint", str(run / "run"), "--out", str(tmp_path / "P")])
    assert r.exit_code == 1 and "Nothing to predict" in str(r.exception) and not (tmp_path / "P").exists()
