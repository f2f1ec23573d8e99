"""``modise predict`` at archive scale on the real samples: the files written with ``--workers 2``, with
``--devices 2`` (two gloo CPU processes) and after a kill + ``--resume`` are those of one plain run, which
is the full-size inference (the pipeline's non-compact path, checked against Mask2Former's functions in
test_pipeline.py); a corrupt DICOM in the middle is named in summary.json, the rest written, exit code 3."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

model_mod = pytest.importorskip("modise.model")

from data_fixtures import write_mammogram_dicom  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sample_images):
    from PIL import Image

    from modise.data.panoptic import Category
    from modise.model import build_model

    root = tmp_path_factory.mktemp("scale")
    model = build_model("m-odise", "tiny", categories=[Category(1, "benign", 1), Category(2, "malignant", 1)],
                        overrides={"inference": {"object_mask_threshold": 0.0, "overlap_threshold": 0.0}})
    model_dir = model.save_pretrained(root / "model")
    inp = root / "in"
    inp.mkdir()
    for p in sample_images[:4]:
        shutil.copy(p, inp / p.name)
    img = np.asarray(Image.open(sample_images[4]).convert("L"))
    write_mammogram_dicom(inp / sample_images[1].with_suffix(".dcm").name, img[:, :400], monochrome1=True)
    (inp / sample_images[2].with_suffix(".dcm").name).write_bytes(b"DICM but corrupt" * 8)  # in the middle
    return model_dir, inp


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    """The full-size inference written through PanopticFolderWriter, image ids in input order."""
    from modise.data.imageio import read_image
    from modise.data.panoptic import PanopticFolderWriter
    from modise.engine.prediction.inputs import discover_inputs, unique_stems
    from modise.errors import ModiseError
    from modise.pipeline import ModisePipeline

    model_dir, inp = setup
    out = tmp_path_factory.mktemp("ref")
    pipe = ModisePipeline.from_pretrained(model_dir, device="cpu")
    w = PanopticFolderWriter(out, pipe.categories)
    paths = discover_inputs([inp])
    for p, name in zip(paths, unique_stems(paths)):
        try:
            im = read_image(p)
        except ModiseError:
            continue
        pipe([im.pixels])[0].write(w, {"id": len(w.images) + 1, "file_name": p.name, "source": str(p)}, png_name=f"{name}.png")
    w.finish()
    return out


def assert_same_predictions(out: Path, ref: Path) -> None:
    pj, rj = json.loads((out / "panoptic.json").read_text()), json.loads((ref / "panoptic.json").read_text())
    assert pj["images"] == rj["images"] and pj["annotations"] == rj["annotations"] and pj["categories"] == rj["categories"]
    for ann in rj["annotations"]:
        assert (out / "panoptic" / ann["file_name"]).read_bytes() == (ref / "panoptic" / ann["file_name"]).read_bytes()
    inst, rinst = json.loads((out / "instances.json").read_text()), json.loads((ref / "instances.json").read_text())
    assert [(r["image_id"], r["category_id"], r["segmentation"]) for r in inst] == \
           [(r["image_id"], r["category_id"], r["segmentation"]) for r in rinst]
    # scores: the mean mask probability is summed one query at a time instead of 16 at a time (float32 order)
    np.testing.assert_allclose([r["score"] for r in inst], [r["score"] for r in rinst], rtol=1e-6, atol=1e-7)


def assert_corrupt_dicom_named(summary: dict, inp: Path) -> None:
    assert summary["failed"] == 1 and summary["images"] == 5
    assert [Path(e["input"]).name for e in summary["errors"]] == [p.name for p in sorted(inp.glob("*.dcm"))
                                                                  if p.read_bytes().startswith(b"DICM but")]


def test_workers_2_writes_the_reference(setup, reference, tmp_path):
    from modise.engine.prediction.predict import predict_files

    model_dir, inp = setup
    summary = predict_files(model_dir, [inp], tmp_path / "out", workers=2, progress=False, device="cpu")  # batch 1: as the reference
    assert_same_predictions(tmp_path / "out", reference)
    assert summary["done"] == 5 and summary["skipped"] == 0
    assert_corrupt_dicom_named(json.loads((tmp_path / "out" / "summary.json").read_text()), inp)
    assert len(list((tmp_path / "out" / "heatmaps").iterdir())) == 10 and len(list((tmp_path / "out" / "overlays").iterdir())) == 5


def test_full_heatmaps_are_the_full_size_semantic_maps(setup, tmp_path):
    from PIL import Image

    from modise.data.imageio import read_image
    from modise.engine.prediction.predict import predict_files
    from modise.pipeline import ModisePipeline

    model_dir, inp = setup
    one = sorted(inp.glob("*.jpg"))[0]
    predict_files(model_dir, [one], tmp_path / "full", full_heatmaps=True, overlays=False, progress=False, device="cpu")
    predict_files(model_dir, [one], tmp_path / "small", overlays=False, progress=False, device="cpu")
    sem = ModisePipeline.from_pretrained(model_dir, device="cpu")([read_image(one).pixels])[0].sem_seg
    full = np.asarray(Image.open(tmp_path / "full" / "heatmaps" / f"{one.stem}_benign.png"))
    assert full.shape == sem.shape[1:] and np.array_equal(full, np.clip(np.rint(sem[0] * 255), 0, 255).astype(np.uint8))
    small = np.asarray(Image.open(tmp_path / "small" / "heatmaps" / f"{one.stem}_benign.png"))
    assert small.shape == (128, 128)  # the inference resolution of a 512x512 image (shortest edge 128)


def test_killed_run_resumes_to_the_reference(setup, reference, tmp_path):
    model_dir, inp = setup
    out = tmp_path / "out"
    code = (f"from modise.engine.prediction.predict import predict_files; "
            f"predict_files({str(model_dir)!r}, [{str(inp)!r}], {str(out)!r}, progress=False, device='cpu')")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and len(list((out / "records").glob("*.json"))) < 2:
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "panoptic.json").exists()  # a killed run never looks finished
    written = len(list((out / "records").glob("*.json")))
    from typer.testing import CliRunner

    from modise.cli import app

    r = CliRunner().invoke(app, ["predict", "--checkpoint", str(model_dir), "--input", str(inp), "--out", str(out),
                                 "--resume", "--device", "cpu", "--json"])
    assert r.exit_code == 3, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == written and summary["done"] == 5 - written
    assert_corrupt_dicom_named(summary, inp)
    assert_same_predictions(out, reference)
    r = CliRunner().invoke(app, ["predict", "--checkpoint", str(model_dir), "--input", str(inp), "--out", str(out), "--device", "cpu"])
    assert r.exit_code != 0 and "--resume" in str(r.exception)  # a used folder is neither continued nor replaced silently


def test_devices_2_gloo_processes_write_what_one_process_writes(setup, tmp_path):
    """Each rank runs 1 thread (Lightning gives each of 2 CPU processes half the cores), so the one-process
    run it is compared with does too: float reductions then add in the same order."""
    model_dir, inp = setup
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    outs = {}
    for devices in (None, "2"):
        out = outs[devices] = tmp_path / f"out{devices}"
        r = subprocess.run([sys.executable, "-m", "modise", "predict", "--checkpoint", str(model_dir), "--input", str(inp),
                            "--out", str(out), "--device", "cpu", "--workers", "2", *(["--devices", devices] if devices else [])],
                           env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 3, r.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["done"] == 5
        assert_corrupt_dicom_named(summary, inp)
    assert_same_predictions(outs["2"], outs[None])
    assert (outs["2"] / "instances.json").read_bytes() == (outs[None] / "instances.json").read_bytes()


def test_two_nodes_write_what_one_process_writes(setup, tmp_path):
    """``--devices 1 --num-nodes 2``: two processes started as a cluster starts them on two nodes
    (same command, NODE_RANK 0 and 1, MASTER_ADDR/PORT of node 0; here both on this machine, sharing
    --out as nodes share a filesystem); both exit 0, rank 0 merges, the files are one process's."""
    import socket

    model_dir, inp = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    base = [sys.executable, "-m", "modise", "predict", "--checkpoint", str(model_dir), "--input", str(inp), "--device", "cpu"]
    one = subprocess.run([*base, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=900)
    assert one.returncode == 3, one.stderr
    cmd = [*base, "--out", str(tmp_path / "two"), "--devices", "1", "--num-nodes", "2"]
    nodes = [subprocess.Popen(cmd, env={**env, "NODE_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    results = [(p.wait(timeout=900), *p.communicate()) for p in nodes]
    assert results[0][0] == 3, results[0][2]  # rank 0 reports the corrupt DICOM, as one process does
    assert results[1][0] == 0, results[1][2]  # the other node has nothing to report
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["done"] == 5
    assert_corrupt_dicom_named(summary, inp)
    assert_same_predictions(tmp_path / "two", tmp_path / "one")
