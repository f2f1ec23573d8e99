"""A refused or mistyped command changes nothing: values that only their context shows to be wrong (the
dataset, the run, the machine) are usage errors (one sentence naming the option, exit 2) checked before
anything is created; `--resume` with other settings leaves the run byte-identical; a diverging run stops."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from modise.cli import app

runner = CliRunner()
TINY = ["--preset", "m-odise", "--size", "tiny", "--random-weights", "--image-size", "128", "--batch-size", "2",
        "--accelerator", "cpu", "--devices", "1", "--warmup-steps", "1"]
NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from modise.data.phantoms import prepare_synthetic

    root = tmp_path_factory.mktemp("refusals") / "data"
    prepare_synthetic(root, n=6, seed=0, size=128, k=3, quiet=True)
    return root


@pytest.fixture(scope="module")
def run(data) -> Path:
    """A complete 1-step tiny run (all images trained on: no evaluation, fast)."""
    out = data.parent / "run"
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), *TINY, "--max-steps", "1", "--fold", "-1"])
    assert res.exit_code == 0, res.output
    return out


def _usage_error(res, option: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert re.search(rf"Invalid value for '{option}'", res.output), res.output


def _bad(data: Path, empty: Path) -> list[tuple[list[str], str]]:
    d = str(data)
    cases = [
        (["train", "--data", "nope", *TINY], "--data"),
        (["train", "--data", d, *TINY, "--preset", "foo"], "--preset"),
        (["train", "--data", d, *TINY, "--image-size", "100"], "--image-size"),
        (["train", "--data", d, *TINY, "--fold", "7"], "--fold"),
        (["train", "--data", d, *TINY, "--override", "foo"], "--override"),
        (["train", "--data", d, *TINY, "--override", "model.bogus=1"], "--override"),
        (["train", "--data", d, *TINY, "--override", "a=[1"], "--override"),
        (["train", "--data", d, *TINY, "--strategy", "bogus"], "--strategy"),
        (["train", "--data", d, *TINY, "--batch-size", "100000"], "--batch-size"),
        (["cv", "--data", d, *TINY, "--folds", "7"], "--folds"),
        (["reproduce", "--data", d, *TINY[2:], "--presets", "m-odise", "--folds", "3", "--image-size", "100"], "--image-size"),
        (["mame", "train", "--data", "nope", "--size", "tiny", "--random-weights"], "--data"),
        (["prepare", "synthetic", "--image-size", "10000000"], "--image-size"),
        (["prepare", "synthetic", "--n", "100000000000"], "--n"),
        (["generate", "--n", "100000000000", "--size", "tiny", "--random-weights"], "--n"),
        (["benchmark", "--size", "tiny", "--random-weights", "--image-size", "0"], "--image-size"),
        (["benchmark", "--size", "tiny", "--random-weights", "--image-size", "-64"], "--image-size"),
        (["benchmark", "--size", "tiny", "--random-weights", "--image-size", "100"], "--image-size"),
        (["benchmark", "--size", "tiny", "--random-weights", "--device", "foo"], "--device"),
        (["evaluate", "--gt", d, "--pred", d, "--workers", "0"], "--workers"),
        (["evaluate", "--gt", d, "--pred", d, "--thresholds", "0.5:0.1:x"], "--thresholds"),
        (["evaluate", "--gt", d, "--pred", d, "--thresholds", "0.000001:1:0.000001"], "--thresholds"),
        (["serve", "--random-weights", "--preset", "foo"], "--preset"),
        (["serve", "--runs-dir", str(empty)], "--runs-dir"),
    ]
    if NO_GPU:
        cases += [
            (["train", "--data", d, *TINY, "--accelerator", "cuda"], "--accelerator"),
            (["benchmark", "--size", "tiny", "--random-weights", "--device", "cuda"], "--device"),
            (["predict", "--checkpoint", "c", "--input", d, "--device", "cuda"], "--device"),
            (["serve", "--random-weights", "--device", "cuda"], "--device"),
        ]
    return cases


def test_each_bad_value_is_one_sentence_exit_2_and_creates_nothing(data, tmp_path, tmp_path_factory, monkeypatch):
    empty = tmp_path_factory.mktemp("no-runs")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for args, option in _bad(data, empty):
        out = [] if args[0] in ("serve", "benchmark") else ["--out", "out"]
        res = runner.invoke(app, [*args, *out])
        _usage_error(res, option)
        assert list(work.iterdir()) == [], f"{' '.join(args)} created {list(work.iterdir())}"


def test_predictions_matching_no_gt_image_are_refused(data, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "panoptic.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "other.png", "height": 8, "width": 8}],
        "annotations": [{"image_id": 1, "file_name": "other.png", "segments_info": []}],
        "categories": json.loads((data / "panoptic.json").read_text())["categories"]}))
    res = runner.invoke(app, ["evaluate", "--gt", str(data), "--pred", str(pred), "--out", str(tmp_path / "E")])
    _usage_error(res, "--pred")
    assert "matches an image" in res.output and not (tmp_path / "E").exists()


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change", [
    ["--preset", "odise"], ["--max-steps", "5"], ["--lr", "0.001"], ["--override", "inference.overlap_threshold=0.5"],
    ["--fold", "0"], ["--seed", "3"], ["--image-size", "160"], ["--image-size", "100"], ["--strategy", "bogus"],
    ["--data", "nope"],
], ids=lambda c: " ".join(c))
def test_mistyped_resume_leaves_the_run_byte_identical(run, change):
    before = _hashes(run)
    res = runner.invoke(app, ["train", "--data", str(run.parent / "data"), "--out", str(run), *TINY, "--max-steps", "1",
                              "--fold", "-1", *change, "--resume"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    if change[0] in ("--preset", "--max-steps", "--lr", "--override", "--fold", "--seed", "--image-size") and change[1] != "100":
        assert "was started with other settings" in res.output and change[0] in res.output, res.output
    assert _hashes(run) == before
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_resume_names_every_difference_and_allows_other_hardware(run):
    from modise.engine.training.checks import check_resume
    from modise.engine.training.config import TrainConfig
    from modise.errors import UsageError

    cfg = TrainConfig(preset="m-odise", size="tiny", data=str(run.parent / "data"), fold=None, random_weights=True,
                      image_size=128, batch_size=2, max_steps=1, warmup_steps=1, accelerator="cpu", devices=1)
    check_resume(cfg.model_copy(update={"checkpoint_every": 7, "num_workers": 1, "precision": "32-true"}), run, 128)
    with pytest.raises(UsageError) as e:
        check_resume(cfg.model_copy(update={"max_steps": 9, "lr": 0.5}), run, 128)
    assert "--max-steps 1, not 9" in str(e.value) and "--lr 0.0001, not 0.5" in str(e.value)
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["fold"] is None  # --fold -1: trained on all images


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_a_fresh_start(tmp_path):
    from modise.runs import prepare_run_dir, write_run_status
    from modise.errors import ModiseError
    from modise.outputs import claim_output_dir

    out = claim_output_dir(tmp_path / "run")
    write_run_status(out, "failed", global_step=0, max_steps=10, error="RuntimeError: out of memory")
    assert prepare_run_dir(out, resume=False, overwrite=False) is None
    assert not (out / "run.json").exists()
    # one that saved a checkpoint is kept for --resume
    write_run_status(out, "failed", global_step=3, max_steps=10, error="RuntimeError: out of memory")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "last.ckpt").write_bytes(b"step 3")
    with pytest.raises(ModiseError, match="--resume"):
        prepare_run_dir(out, resume=False, overwrite=False)
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"step 3"


def test_a_diverging_run_stops_and_does_not_suggest_resume(data, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), *TINY, "--max-steps", "20", "--fold", "-1",
                              "--lr", "1e9", "--checkpoint-every", "1"])
    assert res.exit_code == 1, res.output
    message = str(res.exception)
    assert "loss became" in message and "--lr" in message and "--overwrite" in message and "--resume" not in message
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_mame_resume_with_other_settings_leaves_the_run_byte_identical(tmp_path, sample_images):
    from PIL import Image

    data = tmp_path / "d"
    data.mkdir()
    for i, p in enumerate(sample_images[:2]):
        Image.open(p).convert("L").resize((64, 64)).save(data / f"{i}.png")
    (data / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i}.png", "text": "a siemens mammogram"}) + "\n"
                                                 for i in range(2)))
    mame = ["mame", "train", "--size", "tiny", "--random-weights", "--resolution", "64", "--data", str(data),
            "--out", str(tmp_path / "run"), "--max-steps", "1", "--val-every", "0"]
    res = runner.invoke(app, mame)
    assert res.exit_code == 0, res.output
    before = _hashes(tmp_path / "run")
    res = runner.invoke(app, [*mame, "--lr", "0.5", "--lora", "--resume"])
    assert res.exit_code == 2 and "was started with other settings" in res.output, res.output
    assert "--lr 1e-06, not 0.5" in res.output and "--lora-rank 0, not 8" in res.output, res.output
    assert _hashes(tmp_path / "run") == before
