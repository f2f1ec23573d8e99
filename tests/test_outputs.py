"""--overwrite never deletes what modise did not write; outputs get the umask's modes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modise.cli import app
from modise.errors import ModiseError
from modise.outputs import MARKER, check_output_dir, output_dir, write_json_atomic

runner = CliRunner()


def _user_files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir() if p.is_file()}


@pytest.mark.parametrize("out", [".", ".."])
def test_out_cannot_be_the_working_folder_or_a_parent(tmp_path, monkeypatch, out):
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    (tmp_path / "a" / "thesis.tex").write_text("mine too")
    monkeypatch.chdir(work)
    res = runner.invoke(app, ["prepare", "synthetic", "--out", out, "--n", "2", "--image-size", "64", "--overwrite", "-q"])
    assert res.exit_code != 0 and "working folder" in str(res.exception)
    assert (work / "notes.txt").read_text() == "mine" and (tmp_path / "a" / "thesis.tex").read_text() == "mine too"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["thesis.tex", "work"]  # no staging debris


def test_predict_out_equal_to_or_containing_the_input_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "mg.png").write_bytes(b"a patient's scan")
    for out, why in (("scans", "is the input 'scans'"), (".", "working folder")):
        res = runner.invoke(app, ["predict", "--checkpoint", "no-run", "--input", "scans", "--out", out, "--overwrite"])
        assert res.exit_code != 0 and why in str(res.exception), res.output
    with pytest.raises(ModiseError, match="contains the input"):
        check_output_dir(scans, True, [scans / "mg.png"])
    assert (scans / "mg.png").read_bytes() == b"a patient's scan"


def test_a_folder_modise_did_not_write_is_never_overwritten(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "paper.docx").write_text("draft")
    res = runner.invoke(app, ["prepare", "synthetic", "--out", str(out), "--n", "2", "--image-size", "64", "-q"])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    res = runner.invoke(app, ["prepare", "synthetic", "--out", str(out), "--n", "2", "--image-size", "64", "--overwrite", "-q"])
    assert res.exit_code != 0 and MARKER in str(res.exception) and "did not write" in str(res.exception)
    assert _user_files(out) == {"paper.docx": "draft"}
    # what modise wrote it may replace
    new = tmp_path / "phantoms"
    for _ in range(2):
        res = runner.invoke(app, ["prepare", "synthetic", "--out", str(new), "--n", "2", "--image-size", "64", "--overwrite", "-q"])
        assert res.exit_code == 0, res.output
    assert (new / MARKER).is_file() and (new / "panoptic.json").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_umask_modes(tmp_path, umask):
    old = os.umask(umask)
    try:
        with output_dir(tmp_path / "out") as stage:
            write_json_atomic(stage / "metrics.json", {"pq": 1.0})
            (stage / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "out") == 0o777 & ~umask
    assert mode(tmp_path / "out" / "metrics.json") == 0o666 & ~umask
    assert mode(tmp_path / "out" / "metrics.json") == mode(tmp_path / "out" / "plain.txt")


WRITERS = {
    "prepare folder": ["prepare", "folder", "--images", "proj/gt/images", "--masks", "proj/gt/images", "--out", "proj"],
    "evaluate": ["evaluate", "--gt", "proj/gt", "--pred", "proj/gt", "--out", "proj"],
    "report": ["report", "proj/ev", "--out", "proj"],
    "train": ["train", "--data", "proj/gt", "--out", "proj/gt", "--size", "tiny", "--random-weights"],
    "cv": ["cv", "--data", "proj/gt", "--out", "proj", "--folds", "1", "--size", "tiny", "--random-weights"],
    "mame prepare": ["mame", "prepare", "--data", "proj/gt", "--out", "proj"],
    "inpaint": ["inpaint", "--image", "proj/gt/images/img.png", "--auto-box", "--out", "proj/gt/images",
                "--size", "tiny", "--random-weights"],
    "augment": ["augment", "--healthy", "proj/gt/images", "--n", "1", "--out", "proj", "--size", "tiny",
                "--random-weights"],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_every_writer_refuses_an_out_holding_its_input(tmp_path, monkeypatch, command):
    from modise.data.phantoms import prepare_synthetic

    monkeypatch.chdir(tmp_path)
    prepare_synthetic(tmp_path / "proj" / "gt", n=2, size=64, quiet=True)
    shutil.copy(next((tmp_path / "proj" / "gt" / "images").iterdir()), tmp_path / "proj" / "gt" / "images" / "img.png")
    if command == "report":  # a folder with a metrics.json to report on
        (tmp_path / "proj" / "ev").mkdir()
        (tmp_path / "proj" / "ev" / "metrics.json").write_text(json.dumps(
            {"thresholds": [0.5], "pq": [50.0], "rq": [60.0], "sq": [80.0], "dice": 40.0, "per_class": {},
             "best": {"threshold": 0.5, "pq": 50.0, "rq": 60.0, "sq": 80.0, "ap": 10.0}}))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    res = runner.invoke(app, [*WRITERS[command], "--overwrite"])
    assert res.exit_code != 0 and "Refusing to write" in str(res.exception), (res.output, res.exception)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_output_dir_refuses_non_empty_and_is_atomic(tmp_path):
    import numpy as np

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (out / ".modise-output").touch()  # written by modise: --overwrite may replace it
    with pytest.raises(ModiseError, match="--overwrite"):
        with output_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with output_dir(out, overwrite=True) as stage:
            (stage / "new.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (out / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging debris
    with output_dir(out, overwrite=True) as stage:
        write_json_atomic(stage / "x.json", {"a": np.int64(3)})
    assert json.loads((out / "x.json").read_text()) == {"a": 3}
    assert not (out / "keep.txt").exists()
