"""`modise evaluate` / `modise report` on real files: canonical panoptic folders written with
the package's own PNG writer, bad inputs, and the report over folds and variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from modise.data.panoptic import Category, write_id_png
from modise.engine.evaluation import PanopticEvaluator, evaluate_folders, parse_thresholds, write_report
from modise.errors import ModiseError

CATS = [{"id": 1, "name": "benign", "isthing": 1}, {"id": 2, "name": "malignant", "isthing": 1}]


def _write_set(root: Path, items, with_images: bool = False, pred: bool = False) -> None:
    (root / "panoptic").mkdir(parents=True)
    images, anns = [], []
    for image_id, ids, segs in items:
        name = f"img{image_id:03d}"
        write_id_png(root / "panoptic" / f"{name}.png", ids)
        images.append({"id": image_id, "file_name": f"{name}.png", "height": ids.shape[0], "width": ids.shape[1]})
        anns.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": segs})
        if with_images:
            (root / "images").mkdir(exist_ok=True)
            Image.fromarray((np.random.default_rng(image_id).random(ids.shape) * 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
    (root / "panoptic.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))


def _case(n: int = 6, seed: int = 0, h: int = 32, w: int = 32):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(n):
        gt = np.zeros((h, w), np.int64)
        pr = np.zeros((h, w), np.int64)
        gs, ps = [], []
        for k in range(int(rng.integers(0, 3))):
            y, x = 4 + 12 * k, int(rng.integers(0, w - 10))
            gt[y : y + 8, x : x + 8] = k + 1
            gs.append({"id": k + 1, "category_id": int(rng.integers(1, 3)), "area": 64})
            dy, dx = (int(v) for v in rng.integers(-3, 4, size=2))
            pr[max(y + dy, 0) : y + dy + 8, max(x + dx, 0) : x + dx + 8] = 10 + k
            ps.append({"id": 10 + k, "category_id": gs[-1]["category_id"], "score": float(rng.random())})
        gts.append((i + 1, gt, gs))
        preds.append((i + 1, pr, ps))
    return gts, preds


@pytest.fixture()
def folders(tmp_path: Path):
    gts, preds = _case()
    _write_set(tmp_path / "gt", gts, with_images=True)
    _write_set(tmp_path / "pred", preds, pred=True)
    return tmp_path, gts, preds


def test_evaluate_folders_matches_in_memory_and_writes_outputs(folders):
    tmp, gts, preds = folders
    m = evaluate_folders(tmp / "gt", tmp / "pred", tmp / "E", overlays=2)
    ev = PanopticEvaluator([Category.from_json(c) for c in CATS])
    for (i, g, gs), (_, p, ps) in zip(gts, preds):
        ev.add(i, g, gs, p, ps)
    assert m == json.loads(json.dumps(ev.compute()))
    saved = json.loads((tmp / "E" / "metrics.json").read_text())
    # no instances.json in PRED: AP falls back to the panoptic segments and says so
    assert list(saved) == ["thresholds", "pq", "rq", "sq", "ap", "ap_source", "ap_source_note", "best", "dice", "per_class",
                           "bootstrap", "froc", "froc_protocol", "by"]  # the CAD-study keys (test_eval_cad.py)
    assert saved["ap_source"] == "panoptic" and len(saved["ap"]) == 18
    assert set(saved["best"]) == {"threshold", "pq", "rq", "sq", "ap", "ap_by_source"}
    assert len(saved["pq"]) == 18 and saved == m
    md = (tmp / "E" / "metrics.md").read_text()
    assert "RQ_t | SQ_t | PQ_t | AP_t | Dice" in md and f"{m['best']['pq']:.1f}" in md
    assert Image.open(tmp / "E" / "threshold_sweep.png").size[0] > 300
    assert len(list((tmp / "E" / "overlays").glob("*.png"))) == 2


def test_pool_gives_the_same_numbers(folders, monkeypatch):
    from modise.engine.evaluation import folders as mod

    tmp, _, _ = folders
    serial = evaluate_folders(tmp / "gt", tmp / "pred", tmp / "E1", workers=1)
    monkeypatch.setattr(mod, "POOL_MIN_IMAGES", 1)
    pooled = evaluate_folders(tmp / "gt", tmp / "pred", tmp / "E2", workers=2)
    assert serial == pooled


def test_missing_prediction_counts_as_empty(tmp_path):
    gts, preds = _case(n=4, seed=1)
    gts[0] = (1, gts[0][1], gts[0][2])
    _write_set(tmp_path / "gt", gts)
    _write_set(tmp_path / "pred", preds[1:])  # image 1 not predicted
    m = evaluate_folders(tmp_path / "gt", tmp_path / "pred", tmp_path / "E")
    n_gt = sum(len(s) for _, _, s in gts)
    fn_total = sum(v["fn"][0] + v["tp"][0] for v in m["per_class"].values())
    assert fn_total == n_gt
    assert "had no prediction" in (tmp_path / "E" / "metrics.md").read_text()


@pytest.mark.parametrize(
    "mutate, message",
    [
        ("size", "img002.png.*32x32.*prediction is 30x32"),
        ("unlisted", "segment id 99 that segments_info does not list"),
        ("absent", "lists segment id 77 but the PNG has no pixel"),
        ("category", "unknown category_id 5"),
        ("score", "has no 'score'"),
    ],
)
def test_bad_input_names_image_and_problem_and_writes_nothing(tmp_path, mutate, message):
    gts, preds = _case(n=3, seed=2)
    i, pr, ps = preds[1]
    gt_i, g, gs = gts[1]
    if not ps:
        g[2:6, 2:6], pr[2:6, 2:6] = 1, 10
        gs.append({"id": 1, "category_id": 1})
        ps.append({"id": 10, "category_id": 1, "score": 0.5})
    if mutate == "size":
        pr = pr[:30]
    elif mutate == "unlisted":
        pr[0, 0] = 99
    elif mutate == "absent":
        ps.append({"id": 77, "category_id": 1, "score": 0.3})
    elif mutate == "category":
        ps[0]["category_id"] = 5
    elif mutate == "score":
        del ps[0]["score"]
    preds[1] = (i, pr, ps)
    gts[1] = (gt_i, g, gs)
    _write_set(tmp_path / "gt", gts)
    _write_set(tmp_path / "pred", preds)
    with pytest.raises(ModiseError, match=message) as err:
        evaluate_folders(tmp_path / "gt", tmp_path / "pred", tmp_path / "E")
    assert "image 2 (img002.png)" in str(err.value)
    assert not (tmp_path / "E").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".E")]


def test_thresholds_are_validated():
    assert parse_thresholds("0.05:0.9:0.05").tolist() == [round(0.05 * k, 2) for k in range(1, 19)]
    assert parse_thresholds("0.5,0.1").tolist() == [0.1, 0.5]
    for bad in ("0:0.5:0.1", "0.2,1.5", "x"):
        with pytest.raises(ModiseError, match="outside \\(0, 1\\]|Cannot read"):
            parse_thresholds(bad)


def _metrics(pq_best: float, dice: float, t=(0.1, 0.2)) -> dict:
    return {"thresholds": list(t), "pq": [pq_best, pq_best - 5], "rq": [60.0, 50.0], "sq": [70.0, 72.0],
            "best": {"threshold": t[0], "pq": pq_best, "rq": 60.0, "sq": 70.0, "ap": 40.0}, "dice": dice, "per_class": {}}


def test_report_over_folds_and_variants(tmp_path):
    cv = tmp_path / "runs" / "m-odise"
    for k, pq in enumerate((30.0, 40.0)):
        (cv / f"fold{k}").mkdir(parents=True)
        (cv / f"fold{k}" / "config.yaml").write_text("preset: m-odise\nsize: tiny\n")
        (cv / f"fold{k}" / "metrics.json").write_text(json.dumps({**_metrics(pq, 50.0), "train": {"fold": k}}))
    bare = tmp_path / "runs" / "baseline"
    bare.mkdir()
    (bare / "metrics.json").write_text(json.dumps(_metrics(20.0, 60.0)))
    (cv / "fold2").mkdir()  # unfinished fold: skipped with a warning
    res = CliRunner().invoke(_app(), ["report", str(cv), str(bare), "--out", str(tmp_path / "R")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "R" / "report.md").read_text()
    assert "| m-odise | 2 | 0.10 | **60.0 ± 0.0** | **70.0 ± 0.0** | **35.0 ± 7.1** | **40.0 ± 0.0** | 50.0 ± 0.0 |" in md
    assert "| baseline | 1 | 0.10 | **60.0** | **70.0** | 20.0 | **40.0** | **60.0** |" in md
    csv_text = (tmp_path / "R" / "report.csv").read_text().splitlines()
    assert csv_text[0].startswith("variant,folds,t,RQ_t_mean,RQ_t_std")
    assert csv_text[1].startswith("m-odise,2,0.10,60.0000,0.0000") and csv_text[1].endswith("RQ_t;SQ_t;PQ_t;AP_t")
    assert (tmp_path / "R" / "pq_threshold.png").is_file()
    assert "fold2" in json.loads((tmp_path / "R" / "report.json").read_text())["warnings"][0]


def test_report_refuses_runs_without_metrics(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModiseError, match="neither a metrics.json nor fold"):
        write_report([tmp_path / "empty"], tmp_path / "R")
    assert not (tmp_path / "R").exists()


def _app():
    from modise.cli import app

    return app


def test_cli_evaluate_json_and_refuses_non_empty_out(folders):
    tmp, _, _ = folders
    res = CliRunner().invoke(_app(), ["evaluate", "--gt", str(tmp / "gt"), "--pred", str(tmp / "pred"), "--out", str(tmp / "E"), "--json", "--thresholds", "0.1,0.5"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["thresholds"] == [0.1, 0.5]
    res = CliRunner().invoke(_app(), ["evaluate", "--gt", str(tmp / "gt"), "--pred", str(tmp / "pred"), "--out", str(tmp / "E")])
    assert isinstance(res.exception, ModiseError) and "not empty" in str(res.exception)


def test_report_counts_a_run_given_twice_once(tmp_path):
    run = tmp_path / "runs" / "m-odise" / "fold0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("preset: m-odise\nsize: tiny\n")
    (run / "metrics.json").write_text(json.dumps(_metrics(30.0, 50.0)))
    result = write_report([run, run], tmp_path / "R")
    (row,) = result["variants"]
    assert row["folds"] == 1, row
    assert any("more than once" in w for w in result["warnings"])
