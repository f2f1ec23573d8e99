"""``prepare ... --workers N``: the dataset written by several processes is the one written by one,
byte for byte (ids, file names, folds, messages), bad items included."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import make_cdd_cesm, make_vindr

TIMING = ("seconds", "images_per_s", "out")  # and the folder name: w1 or w2


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "prepare_report.json":  # timings differ, the rest may not
                data = json.dumps({k: v for k, v in json.loads(data).items() if k not in TIMING}, sort_keys=True).encode()
            out[p.relative_to(root).as_posix()] = data
    return out


def _same_for_1_and_2_workers(tmp_path: Path, run) -> dict:
    reports = {n: run(tmp_path / f"w{n}", n) for n in (1, 2)}
    one, two = _files(tmp_path / "w1"), _files(tmp_path / "w2")
    assert sorted(one) == sorted(two)
    assert [k for k in one if one[k] != two[k]] == []
    return reports[2]


def test_vindr_workers_write_the_same_dataset(tmp_path):
    from modise.data.vindr import prepare_vindr

    root = make_vindr(tmp_path / "vindr")
    report = _same_for_1_and_2_workers(tmp_path, lambda out, n: prepare_vindr(root, out, quiet=True, workers=n))
    assert report["converted"] == 3
    assert any("im4" in s["file"] for s in report["skipped"])  # the corrupt DICOM in the middle is named


def test_cdd_cesm_workers_write_the_same_dataset(tmp_path):
    from modise.data.cdd_cesm import prepare_cdd_cesm

    root = make_cdd_cesm(tmp_path / "cdd")
    report = _same_for_1_and_2_workers(tmp_path, lambda out, n: prepare_cdd_cesm(root, out, quiet=True, workers=n))
    assert report["converted"] >= 1


def test_folder_workers_write_the_same_dataset(tmp_path, sample_dir):
    from PIL import Image

    from modise.data.folder import prepare_folder

    imgs, masks = tmp_path / "images", tmp_path / "masks"
    shutil.copytree(sample_dir / "images", imgs)
    masks.mkdir()
    for m in sorted((sample_dir / "masks").iterdir()):  # as binary PNGs (more than 64 distinct rows: still a mask)
        Image.fromarray(((np.asarray(Image.open(m).convert("L")) >= 128) * 255).astype(np.uint8)).save(masks / f"{m.stem}.png")
    (imgs / "P999_L_DM_CC.png").write_bytes(b"broken")  # an unreadable image among good ones
    shutil.copy(next(masks.iterdir()), masks / "P999_L_DM_CC.png")
    report = _same_for_1_and_2_workers(tmp_path, lambda out, n: prepare_folder(imgs, masks, out, quiet=True, workers=n))
    assert report["converted"] == len(list((sample_dir / "images").iterdir()))
    assert [s["file"] for s in report["skipped"]] == ["P999_L_DM_CC.png"]


@pytest.mark.parametrize("workers", ["0", "x"])
def test_bad_workers_is_a_usage_error(tmp_path, workers):
    from typer.testing import CliRunner

    from modise.cli import app

    r = CliRunner().invoke(app, ["prepare", "folder", "--images", str(tmp_path), "--masks", str(tmp_path), "--out",
                                 str(tmp_path / "o"), "--workers", workers])
    assert r.exit_code == 2 and "--workers" in r.output


@pytest.mark.parametrize("inpainting", [False, True])
def test_mame_prepare_workers_write_the_same_folder(tmp_path, inpainting):
    from test_synthesis_mame_prepare import _vindr
    from typer.testing import CliRunner

    from modise.cli import app

    _vindr(tmp_path / "vindr")
    for n in (1, 2):
        r = CliRunner().invoke(app, ["mame", "prepare", "--root", str(tmp_path / "vindr"), "--out", str(tmp_path / f"w{n}"),
                                     "--resolution", "64", "--workers", str(n), "--all-vendors", *(["--inpainting"] if inpainting else [])])
        assert r.exit_code == 0, r.output
    one, two = _files(tmp_path / "w1"), _files(tmp_path / "w2")
    assert one == two and "metadata.jsonl" in one
    assert inpainting or b"d.dicom" in one["prepare_report.json"]  # the unreadable DICOM is named, the rest written
