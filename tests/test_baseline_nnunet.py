"""nnU-Net as the seventh Table-1 row: the export to nnU-Net's raw layout (labels, dataset.json,
splits_final.json = folds.json, image ids kept), connected components of semantic maps as scored
panoptic segments, the baseline's folds in ``modise report`` beside a preset, bad input in one
sentence with nothing written, and (``-m benchmark`` with the ``nnunet`` extra installed) nnU-Net
itself planning, training a few CPU iterations and predicting two folds of tiny phantoms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

SRC = Path(__file__).resolve().parents[1] / "src"


def _app():
    from modise.cli import app

    return app


def _phantoms(root: Path, n: int = 8) -> Path:
    from modise.data.phantoms import prepare_synthetic

    prepare_synthetic(root, n=n, seed=1, size=64, k=2, quiet=True)
    return root


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _gt_semantic(data: Path, image: dict, ann: dict, cats: list[dict]) -> np.ndarray:
    """The expected label map, computed from the panoptic PNG independently of the exporter."""
    from modise.data.panoptic import read_id_png

    ids = read_id_png(data / "panoptic" / ann["file_name"])
    labels = np.zeros(ids.shape, np.uint8)
    index = {c["id"]: i + 1 for i, c in enumerate(cats)}
    for s in ann["segments_info"]:
        labels[ids == s["id"]] = index[s["category_id"]]
    return labels


def test_export_writes_nnunet_raw_layout_with_modise_folds(tmp_path):
    from modise.data.imageio import read_image

    data = _phantoms(tmp_path / "data")
    raw = tmp_path / "nnUNet_raw"
    res = CliRunner().invoke(_app(), ["export", "nnunet", "--data", str(data), "--out", str(raw), "--dataset-id", "42", "--name", "Phantoms"])
    assert res.exit_code == 0, res.output
    ds = raw / "Dataset042_Phantoms"
    pan = json.loads((data / "panoptic.json").read_text())
    cats = pan["categories"]
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "grey"} and meta["file_ending"] == ".png"
    assert meta["labels"] == {"background": 0, **{c["name"]: i + 1 for i, c in enumerate(cats)}}
    assert meta["numTraining"] == len(pan["images"]) == len(list((ds / "imagesTr").iterdir())) == len(list((ds / "labelsTr").iterdir()))

    cases = json.loads((ds / "modise_cases.json").read_text())["cases"]
    case_of = {v["image_id"]: case for case, v in cases.items()}
    assert sorted(case_of) == sorted(im["id"] for im in pan["images"])  # every image id survives, once
    anns = {a["image_id"]: a for a in pan["annotations"]}
    lesion_pixels = 0
    for im in pan["images"]:
        case = case_of[im["id"]]
        assert cases[case]["file_name"] == im["file_name"]
        labels = _read_png(ds / "labelsTr" / f"{case}.png")
        expected = _gt_semantic(data, im, anns[im["id"]], cats)
        np.testing.assert_array_equal(labels, expected)
        lesion_pixels += int((labels > 0).sum())
        grey = _read_png(ds / "imagesTr" / f"{case}_0000.png")
        assert grey.ndim == 2 and grey.shape == labels.shape  # one channel
        np.testing.assert_allclose(grey / 255.0, read_image(data / "images" / im["file_name"]).pixels, atol=1e-6)
    assert lesion_pixels > 0

    folds = json.loads((data / "folds.json").read_text())["folds"]
    splits = json.loads((ds / "splits_final.json").read_text())
    assert len(splits) == len(folds) == 2
    for k, fold in enumerate(folds):
        assert sorted(cases[c]["image_id"] for c in splits[k]["val"]) == sorted(fold)
        assert sorted(cases[c]["image_id"] for c in splits[k]["train"]) == sorted(i for j, f in enumerate(folds) if j != k for i in f)

    again = CliRunner().invoke(_app(), ["export", "nnunet", "--data", str(data), "--out", str(raw), "--dataset-id", "42", "--name", "Other"])
    assert again.exit_code == 1 and "already uses nnU-Net dataset id 42" in str(again.exception)


def _corrupt(data: Path, how: str) -> None:
    if how == "overlap":  # one segment listed twice, with two classes
        pan = json.loads((data / "panoptic.json").read_text())
        ann = next(a for a in pan["annotations"] if a["segments_info"])
        other = next(c["id"] for c in pan["categories"] if c["id"] != ann["segments_info"][0]["category_id"])
        ann["segments_info"].append({**ann["segments_info"][0], "category_id": other})
        (data / "panoptic.json").write_text(json.dumps(pan))
    else:  # an empty third fold
        folds = json.loads((data / "folds.json").read_text())
        folds["folds"].append([])
        (data / "folds.json").write_text(json.dumps(folds))


@pytest.mark.parametrize("how,message", [("overlap", "listed with two classes"), ("empty-fold", "fold 2 holds no image")])
def test_export_refuses_bad_input_in_one_sentence_and_writes_nothing(tmp_path, how, message):
    data = _phantoms(tmp_path / "data", n=4)
    _corrupt(data, how)
    raw = tmp_path / "raw"
    res = CliRunner().invoke(_app(), ["export", "nnunet", "--data", str(data), "--out", str(raw), "--dataset-id", "3"])
    error = str(res.exception)
    assert res.exit_code == 1 and message in error, res.output
    assert error.count(". ") == 0 and error.endswith(".")  # one sentence
    assert not raw.exists() or not any(p.name.startswith("Dataset003") for p in raw.iterdir())


def test_connected_components_become_scored_segments():
    from modise.baseline.semantic_instances import components_to_segments

    labels = np.zeros((20, 20), np.uint8)
    labels[1:4, 1:4] = 1  # class 1, 9 px
    labels[4:6, 4:6] = 1  # touches the first only at a corner: its own instance with 4-connectivity
    labels[10:15, 10:16] = 2  # class 2, 30 px
    labels[18, 18] = 1  # a speck
    probs = np.zeros((3, 20, 20))
    probs[0] = 1.0
    for c in (1, 2):
        probs[c][labels == c] = np.linspace(0.5, 0.9, int((labels == c).sum()))
        probs[0][labels == c] = 1 - probs[c][labels == c]
    ids, segs = components_to_segments(labels, probs, [11, 22], min_area=2)
    assert sorted((s["category_id"], s["area"]) for s in segs) == [(11, 13), (22, 30)]  # 8-connected; speck dropped
    for s in segs:
        m = ids == s["id"]
        assert s["area"] == int(m.sum()) and s["score"] == pytest.approx(float(probs[{11: 1, 22: 2}[s["category_id"]]][m].mean()))
    assert ids[18, 18] == 0
    _, segs4 = components_to_segments(labels, probs, [11, 22], min_area=0, connectivity=1)
    assert sorted((s["category_id"], s["area"]) for s in segs4) == [(11, 1), (11, 4), (11, 9), (22, 30)]


def _write_preset_run(data: Path, run: Path, folds: list[list[int]]) -> None:
    """A preset's CV folder whose folds predicted nothing (real, empty prediction folders, evaluated)."""
    from modise.data.dataset import load_categories
    from modise.data.panoptic import PanopticFolderWriter
    from modise.engine.evaluation import evaluate_folders

    (run).mkdir(parents=True)
    images = json.loads((data / "panoptic.json").read_text())["images"]
    for k in range(len(folds)):
        fold = run / f"fold{k}"
        writer = PanopticFolderWriter(fold / "pred", load_categories(data))
        for im in images:
            if im["id"] in folds[k]:
                writer.add(im, np.zeros((im["height"], im["width"]), np.int64), [])
        writer.finish()
        evaluate_folders(data, fold / "pred", fold / "eval", fold=k, ap_source="panoptic", workers=1)
        (fold / "metrics.json").write_text((fold / "eval" / "metrics.json").read_text())
        (fold / "config.yaml").write_text("preset: m-odise\n")


def test_baseline_folds_from_semantic_maps_make_a_report_row(tmp_path):
    """The baseline's last two steps on real files: semantic maps of each held-out fold (here the exported
    label maps, i.e. a perfect semantic model) -> connected components -> evaluate -> ``modise report``."""
    from modise.baseline.nnunet_export import export_nnunet
    from modise.baseline.nnunet_run import score_fold
    from modise.baseline.semantic_instances import write_semantic_predictions
    from modise.data.dataset import load_categories, load_folds

    data = _phantoms(tmp_path / "data")
    ds = Path(export_nnunet(data, tmp_path / "raw", 5, "Phantoms")["folder"])
    cases = json.loads((ds / "modise_cases.json").read_text())["cases"]
    images = {im["id"]: im for im in json.loads((data / "panoptic.json").read_text())["images"]}
    cats = load_categories(data)
    out = tmp_path / "nnunet"
    settings = {"configuration": "2d", "trainer": "nnUNetTrainer", "min_area": 0}
    for k, split in enumerate(json.loads((ds / "splits_final.json").read_text())):
        def items():
            for case in split["val"]:
                labels = _read_png(ds / "labelsTr" / f"{case}.png")
                probs = np.stack([labels == c for c in range(len(cats) + 1)]).astype(float) * 0.8 + 0.1
                im = images[cases[case]["image_id"]]
                yield {"id": im["id"], "file_name": im["file_name"], "height": im["height"], "width": im["width"]}, labels, probs

        write_semantic_predictions(out / f"fold{k}" / "predictions", cats, items())
        score_fold(data, out, k, settings)
    preset = tmp_path / "m-odise"
    _write_preset_run(data, preset, load_folds(data))

    res = CliRunner().invoke(_app(), ["report", str(out), str(preset), "--out", str(tmp_path / "table"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["variants"]
    assert [r["variant"] for r in rows] == ["m-odise", "nnunet"]  # the presets first, the baseline after them
    row = rows[1]
    assert row["folds"] == 2 and "connected components" in row["external"] and "external" not in rows[0]
    ms = [json.loads((out / f"fold{k}" / "metrics.json").read_text()) for k in range(2)]
    assert [m["fold"]["index"] for m in ms] == [0, 1] and all(m["variant"] == "nnunet" for m in ms)
    b = ms[0]["thresholds"].index(row["thresholds_t"][0])
    assert row["PQ_t"]["mean"] == pytest.approx(np.mean([m["pq"][b] for m in ms]))
    assert row["PQ_t"]["mean"] > 90 and row["Dice"]["mean"] == pytest.approx(100.0)  # a perfect semantic model
    assert rows[0]["PQ_t"]["mean"] == 0
    md = (tmp_path / "table" / "report.md").read_text()
    assert "| nnunet † | 2 |" in md and "† nnunet: external baseline, nnU-Net v2" in md


@pytest.mark.parametrize("command", [["baseline", "nnunet"], ["reproduce", "--presets", "m-odise,nnunet", "--size", "tiny"]])
def test_missing_nnunetv2_is_one_sentence_and_writes_nothing(tmp_path, command):
    data = _phantoms(tmp_path / "data", n=4)
    out = tmp_path / "R"
    argv = ["modise", *command, "--data", str(data), "--out", str(out)]
    code = f"import sys; sys.modules['nnunetv2'] = None; from modise.cli import main; sys.argv = {argv!r}; main()"  # as if not installed
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert "pip install -e '.[nnunet]'" in proc.stderr and proc.stderr.strip().count(". ") == 0
    assert not out.exists()  # reproduce refuses before training any preset


@pytest.mark.benchmark  # ~4 min on the shared 2-core machine (nnU-Net's spawned preprocessing workers, imports,
def test_nnunet_plans_trains_and_predicts_two_folds(tmp_path):  # checkpoints): run with -m benchmark and the nnunet extra
    """nnU-Net itself: planning + preprocessing, nnUNetTrainer_modiseSmoke (a few CPU iterations of a
    16-channel U-Net) and prediction of each held-out fold, then the Table-1 row; a second call keeps it all."""
    pytest.importorskip("nnunetv2")
    data = _phantoms(tmp_path / "data")
    out = tmp_path / "R"
    cmd = ["baseline", "nnunet", "--data", str(data), "--out", str(out), "--folds", "2", "--trainer", "nnUNetTrainer_modiseSmoke",
           "--device", "cpu", "--processes", "1", "--json"]
    res = CliRunner().invoke(_app(), cmd)
    assert res.exit_code == 0, res.output
    for k in range(2):
        assert (out / "nnUNet_results" / "Dataset001_Modise" / "nnUNetTrainer_modiseSmoke__nnUNetPlans__2d" / f"fold_{k}" / "checkpoint_final.pth").is_file()
        pred = json.loads((out / f"fold{k}" / "predictions" / "panoptic.json").read_text())
        fold_ids = json.loads((data / "folds.json").read_text())["folds"][k]
        assert sorted(im["id"] for im in pred["images"]) == sorted(fold_ids)  # the held-out fold, by modise image id
        assert all(0 < s["score"] <= 1 for a in pred["annotations"] for s in a["segments_info"])
    splits = json.loads((out / "nnUNet_preprocessed" / "Dataset001_Modise" / "splits_final.json").read_text())
    assert [len(s["val"]) for s in splits] == [len(f) for f in json.loads((data / "folds.json").read_text())["folds"]]
    rep = CliRunner().invoke(_app(), ["report", str(out), "--out", str(tmp_path / "table"), "--json"])
    assert rep.exit_code == 0, rep.output
    (row,) = json.loads(rep.output)["variants"]
    assert row["variant"] == "nnunet" and row["folds"] == 2 and row["external"]

    before = {p: p.stat().st_mtime_ns for p in out.glob("fold*/metrics.json")}
    res = CliRunner().invoke(_app(), cmd)
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("fold*/metrics.json")} == before  # finished folds kept
    changed = CliRunner().invoke(_app(), [*cmd[:-1], "--min-area", "5"])
    assert changed.exit_code == 1 and "was started with min_area=0" in str(changed.exception)

    bad = CliRunner().invoke(_app(), ["baseline", "nnunet", "--data", str(data), "--out", str(tmp_path / "bad"), "--folds", "2",
                                    "--trainer", "NoSuchTrainer", "--device", "cpu"])
    assert bad.exit_code == 1 and "--trainer NoSuchTrainer: no such nnU-Net trainer" in str(bad.exception)
    assert not (tmp_path / "bad").exists()  # refused before training: nothing left
