"""CAD-study outputs of `modise evaluate` and `modise compare` on real files: FROC files, patient-level
bootstrap CIs (contain the estimate, narrow with more patients, never split a patient), breakdowns by
lesion size and image attribute, the paired comparison (identical -> 0 / p = 1, empty -> p < 0.05),
and the notes for a GT without patient_id and predictions without instances.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from modise.cli import app
from modise.data.coco_records import encode_rle
from modise.data.panoptic import Category, write_id_png
from modise.engine.evaluation import PanopticEvaluator
from modise.engine.evaluation.bootstrap import patient_index, replicate_weights

CATS = [{"id": 1, "name": "benign", "isthing": 1}, {"id": 2, "name": "malignant", "isthing": 1}]
runner = CliRunner()


def _images(n: int, seed: int, quality: float = 0.8, h: int = 40, w: int = 40):
    """n images (2 per patient): GT square lesions of varied size; predictions find each with
    probability ``quality`` (shifted copy, score ~ high) and add false positives (score ~ low)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt, pr = np.zeros((h, w), np.int64), np.zeros((h, w), np.int64)
        gs, ps, inst = [], [], []
        for k in range(int(rng.integers(0, 3))):
            side = int(rng.choice([4, 8, 14]))
            y, x = 2 + 19 * k, int(rng.integers(0, w - side))
            gt[y : y + side, x : x + side] = k + 1
            gs.append({"id": k + 1, "category_id": int(rng.integers(1, 3))})
            if rng.random() < quality:
                dy = int(rng.integers(-1, 2))
                m = np.zeros((h, w), bool)
                m[max(y + dy, 0) : y + dy + side, x : x + side] = True
                pr[m & (pr == 0)] = 10 + k
                sc = float(rng.uniform(0.5, 1))
                ps.append({"id": 10 + k, "category_id": gs[-1]["category_id"], "score": sc})
                inst.append({"category_id": gs[-1]["category_id"], "score": sc, "mask": m})
        for _ in range(int(rng.integers(0, 2))):  # a false positive
            m = np.zeros((h, w), bool)
            y, x = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
            m[y : y + 5, x : x + 5] = True
            inst.append({"category_id": int(rng.integers(1, 3)), "score": float(rng.uniform(0, 0.6)), "mask": m})
        out.append({"id": i + 1, "gt": gt, "gs": gs, "pr": pr, "ps": ps, "inst": inst, "patient": f"P{i // 2}",
                    "view": "CC" if i % 2 == 0 else "MLO", "density": "ABCD"[i % 4]})
    return out


def _write(root: Path, items, pred: bool = False, patients: bool = True, instances: bool = True, empty: bool = False) -> Path:
    (root / "panoptic").mkdir(parents=True)
    images, anns, recs = [], [], []
    for it in items:
        name = f"img{it['id']:03d}.png"
        ids, segs = (it["pr"], it["ps"]) if pred else (it["gt"], it["gs"])
        if empty:
            ids, segs = np.zeros_like(ids), []
        write_id_png(root / "panoptic" / name, ids)
        im = {"id": it["id"], "file_name": name, "height": ids.shape[0], "width": ids.shape[1]}
        if not pred:
            im.update(view=it["view"], breast_density=it["density"], pixel_spacing=[0.9, 0.9])
            if patients:
                im["patient_id"] = it["patient"]
        images.append(im)
        anns.append({"image_id": it["id"], "file_name": name, "segments_info": segs})
        if pred and not empty:
            recs += [{"image_id": it["id"], "category_id": d["category_id"], "score": d["score"], "segmentation": encode_rle(d["mask"])}
                     for d in it["inst"]]
    (root / "panoptic.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    if pred and instances:
        (root / "instances.json").write_text(json.dumps(recs))
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cad")
    items = _images(40, seed=0)
    return tmp, _write(tmp / "gt", items), _write(tmp / "pred", items, pred=True), items


def test_evaluate_writes_froc_cis_and_breakdowns(sets):
    tmp, gt, pred, _ = sets
    r = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp / "E"), "--bootstrap", "200", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "FROC CPM (all lesions)" in r.output
    m = json.loads((tmp / "E" / "metrics.json").read_text())
    assert m["bootstrap"]["seed"] == 3 and m["bootstrap"]["replicates"] == 200 and m["bootstrap"]["patients"] == 20
    assert "note" not in m["bootstrap"]
    vals = {"pq": m["best"]["pq"], "rq": m["best"]["rq"], "sq": m["best"]["sq"], "ap": m["best"]["ap"], "dice": m["dice"]}
    for k, v in vals.items():
        lo, hi = m["ci"][k]
        assert lo <= v <= hi and lo < hi, (k, lo, v, hi)
    assert set(m["froc"]) == {"benign", "malignant", "all"} and m["froc_protocol"] == {
        "hit": "iou", "iou": 0.1, "detections": "instances", "units": m["froc_protocol"]["units"]}
    f = m["froc"]["all"]
    assert f["fps"] == [0.125, 0.25, 0.5, 1, 2, 4, 8] and len(f["sensitivity"]) == 7
    assert f["ci"][0] <= f["cpm"] <= f["ci"][1] and abs(f["cpm"] - np.mean(f["sensitivity"])) < 1e-12
    # breakdowns: size by equivalent diameter (spacing known), and each attribute present
    assert m["by"]["lesion_size"]["how"].startswith("equivalent diameter")
    assert set(m["by"]["lesion_size"]["bins"]) == {"<=10 mm", "10-20 mm", ">20 mm"}
    assert sum(b["lesions"] for b in m["by"]["lesion_size"]["bins"].values()) == f["lesions"]
    for row in m["by"]["lesion_size"]["bins"].values():  # every metric, with its interval
        assert {"lesions", "segments", "pq", "rq", "sq", "ap", "dice", "cpm", "sensitivity", "ci"} <= set(row)
        assert set(row["cpm"]) == {"benign", "malignant", "all"} and set(row["ci"]) == {"pq", "rq", "sq", "dice"}
        for k in row["ci"]:
            lo, hi = row["ci"][k]
            assert lo <= row[k] <= hi if row["lesions"] else row[k] is None and lo is None, (k, row)  # >20 mm: none here
    for row in m["by"]["view"].values():
        assert {"images", "pq", "rq", "sq", "ap", "dice", "cpm", "ci"} <= set(row)
        assert all(row["ci"][k][0] <= row[k] <= row["ci"][k][1] for k in row["ci"])
    assert set(m["by"]["view"]) == {"CC", "MLO"} and sum(g["images"] for g in m["by"]["view"].values()) == 40
    assert set(m["by"]["breast_density"]) == {"A", "B", "C", "D"}
    csv_rows = (tmp / "E" / "froc.csv").read_text().splitlines()
    assert csv_rows[0] == "class,fps,sensitivity,ci_lo,ci_hi" and len(csv_rows) == 1 + 3 * 25
    assert Image.open(tmp / "E" / "froc.png").size[0] > 300
    md = (tmp / "E" / "metrics.md").read_text()
    assert "## FROC" in md and "## By view" in md and "95 % confidence intervals" in md
    assert "| size | lesions | RQ | SQ | PQ | AP | Dice |" in md


def test_missing_patient_ids_and_instances_give_notes(tmp_path):
    items = _images(8, seed=1)
    gt = _write(tmp_path / "gt", items, patients=False)
    pred = _write(tmp_path / "pred", items, pred=True, instances=False)
    r = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "E"), "--bootstrap", "20"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "E" / "metrics.json").read_text())
    assert m["bootstrap"]["note"] == "the ground truth has no patient_id for 8 image(s); each of those is its own patient"
    assert m["bootstrap"]["patients"] == 8
    assert m["froc_protocol"]["detections"] == "panoptic" and "panoptic segments" in m["froc_protocol"]["note"]
    assert "FROC on the panoptic segments" in (tmp_path / "E" / "metrics.md").read_text()


def test_patients_are_never_split():
    ids = list(range(30))
    pidx, n, note = patient_index(ids, {i: f"P{i % 7}" for i in ids if i != 29})
    assert n == 8 and "1 image" in note
    for w in replicate_weights(pidx, 50, seed=1):
        for p in range(n):
            assert len(set(w[pidx == p])) == 1  # every image of a patient weighs its draw count
        assert np.bincount(pidx, weights=w).sum() == w.sum()
        draws = [w[pidx == p][0] for p in range(n)]
        assert sum(draws) == n  # n patients drawn


def _ev(items):
    ev = PanopticEvaluator([Category.from_json(c) for c in CATS])
    for it in items:
        ev.add(it["id"], it["gt"], it["gs"], it["pr"], it["ps"], instances=it["inst"])
    return ev, {it["id"]: {"patient_id": it["patient"]} for it in items}


def test_ci_narrows_with_more_patients():
    widths = []
    for n in (20, 200):
        ev, images = _ev(_images(n, seed=7))
        m = ev.compute(bootstrap=200, seed=0, images=images)
        widths.append({k: m["ci"][k][1] - m["ci"][k][0] for k in ("pq", "dice")} | {"cpm": m["froc"]["all"]["ci"][1] - m["froc"]["all"]["ci"][0]})
    for k in widths[0]:
        assert widths[1][k] < widths[0][k], (k, widths)


def test_compare_identical_and_against_empty(sets):
    tmp, gt, pred, items = sets
    r = runner.invoke(app, ["compare", "--gt", str(gt), "--pred-a", str(pred), "--pred-b", str(pred), "--out", str(tmp / "C0"),
                            "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    same = json.loads((tmp / "C0" / "compare.json").read_text())
    assert same["n_images"] == 40 and same["n_patients"] == 20 and "paired patient-level bootstrap" in same["method"]
    assert set(same["metrics"]) == {"pq", "rq", "sq", "ap", "dice", "cpm"}
    for k, v in same["metrics"].items():
        assert v["diff"] == 0 and v["p"] == 1 and v["ci"] == [0, 0], (k, v)
    assert "| PQ |" in r.output
    empty = _write(tmp / "empty", items, pred=True, empty=True)
    r = runner.invoke(app, ["compare", "--gt", str(gt), "--pred-a", str(pred), "--pred-b", str(empty), "--out", str(tmp / "C1"),
                            "--bootstrap", "200", "--seed", "1"])
    assert r.exit_code == 0, r.output
    diff = json.loads((tmp / "C1" / "compare.json").read_text())["metrics"]
    for k in ("pq", "rq", "dice", "cpm"):
        assert diff[k]["diff"] > 0 and diff[k]["ci"][0] > 0 and diff[k]["p"] < 0.05, (k, diff[k])


def test_compare_options_are_checked(sets):
    tmp, gt, pred, _ = sets
    r = runner.invoke(app, ["compare", "--gt", str(gt), "--pred-a", str(pred), "--out", str(tmp / "X")])
    assert r.exit_code == 2 and "--pred-b" in r.output
    r = runner.invoke(app, ["compare", str(pred), str(pred), "--out", str(tmp / "X")])
    assert r.exit_code == 2 and "--data" in r.output and not (tmp / "X").exists()


def test_compare_runs_predicts_out_of_fold(tmp_path_factory):
    pytest.importorskip("modise.model")
    from data_fixtures import train_tiny_run

    root = train_tiny_run(tmp_path_factory.mktemp("cmp"), n=9, seed=4, k=3, fold=1)
    out = root / "C"
    r = runner.invoke(app, ["compare", str(root / "run"), str(root / "run"), "--data", str(root / "data"), "--out", str(out),
                            "--bootstrap", "50", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.splitlines()[-1])
    from modise.data.dataset import load_folds

    assert res["n_images"] == len(load_folds(root / "data")[1])  # the held-out fold only
    assert (out / "predictions" / "A" / "fold1" / "panoptic.json").is_file() and (out / "compare.md").is_file()
    assert all(v["p"] == 1 for v in res["metrics"].values() if v["p"] is not None)  # the same model twice


@pytest.mark.parametrize("t_index", [1, 12])  # t = 0.1 (assignment) and 0.65 (unique pairs)
def test_pq_by_size_adds_up_to_the_set(t_index):
    from modise.engine.evaluation.cad import evaluator_stats

    ev, images = _ev(_images(30, seed=2))
    s = evaluator_stats(ev, t_index, "instances", [0.9] * 30)
    counts = s.pq_by_size.sum(axis=0)  # over size bins
    assert np.array_equal(counts[0], ev.tp[t_index]) and np.array_equal(counts[1], ev.fp[t_index])
    assert np.array_equal(counts[2], ev.fn[t_index]) and np.allclose(counts[3], ev.iou_sum[t_index], atol=1e-9)
    assert (s.pq_by_size[:, 0].sum(axis=1) > 0).sum() >= 2  # lesions of at least two sizes matched
    dice = s.by_size.dice.sum(axis=1)  # (N, 3, C): each image's Dice pixels, split by size and added up again
    assert np.array_equal(dice[:, 0], s.inter) and np.array_equal(dice[:, 1], s.pred_area) and np.array_equal(dice[:, 2], s.gt_area)
    assert (s.by_size.dice[:, :, 0].sum(axis=(0, 2)) > 0).sum() >= 2


def test_froc_options_on_the_command_line(sets):
    tmp, gt, pred, _ = sets
    r = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp / "F"), "--froc-iou", "1.5"])
    assert r.exit_code == 2 and "--froc-iou" in r.output and not (tmp / "F").exists()
    r = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp / "F"), "--froc-hit", "centroid",
                            "--bootstrap", "0", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout.splitlines()[-1])
    assert m["froc_protocol"]["hit"] == "centroid" and "iou" not in m["froc_protocol"]
    assert "ci" not in m and m["bootstrap"] == {"replicates": 0, "seed": 0} and m["froc"]["all"]["ci"] is None


def test_dice_by_size_on_a_hand_made_case():
    """One class, 1 mm pixels: lesions A (36 px, 6.8 mm), B (196 px, 15.8 mm), C (400 px, 22.6 mm).
    P1 covers A and 12 px beside it; P2 half of B; P3 20 px of B, 100 px of C and 30 px of neither;
    P4 a 25 px false positive (5.6 mm). Each predicted pixel inside a lesion counts in the lesion's bin,
    one outside in the bin of the lesion its segment overlaps most (P1: A; P3: C), P4 in its own size's."""
    gt, pr = np.zeros((40, 40), np.int64), np.zeros((40, 40), np.int64)
    gt[0:6, 0:6], gt[10:24, 0:14], gt[20:40, 20:40] = 1, 2, 3
    pr[0:6, 0:8] = 11
    pr[10:17, 0:14] = 12
    pr[17:19, 4:14], pr[20:25, 20:40], pr[17:19, 14:29] = 13, 13, 13
    pr[30:35, 0:5] = 14
    assert [int((pr == k).sum()) for k in (11, 12, 13, 14)] == [48, 98, 150, 25]
    ev = PanopticEvaluator([Category(1, "benign")], [0.5])
    ev.add(1, gt, [{"id": k, "category_id": 1} for k in (1, 2, 3)], pr,
           [{"id": k, "category_id": 1, "score": 0.5} for k in (11, 12, 13, 14)])
    m = ev.compute(images={1: {"pixel_spacing": [1.0, 1.0]}})
    bins = m["by"]["lesion_size"]["bins"]
    expect = {"<=10 mm": (36, 36 + 12 + 25, 36), "10-20 mm": (98 + 20, 98 + 20, 196), ">20 mm": (100, 100 + 30, 400)}
    for name, (inter, pred, g) in expect.items():
        assert bins[name]["dice"] == pytest.approx(100 * 2 * inter / (pred + g), abs=1e-12), name
    # the bins' pixels are the set's: intersection 254, predicted 321, GT 632
    assert m["dice"] == pytest.approx(100 * 2 * 254 / (321 + 632), abs=1e-12)
    assert [bins[n]["lesions"] for n in expect] == [1, 1, 1]
