"""A training run says whether it is complete: Ctrl-C saves a checkpoint and says how to resume,
`predict` refuses an unfinished run naming the fix, `--resume` of nothing is an error;
the web app started with --run segments with that run and shows it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--preset", "m-odise", "--size", "tiny", "--random-weights", "--image-size", "128", "--batch-size", "2",
        "--accelerator", "cpu", "--devices", "1", "--warmup-steps", "1"]
STEPS = 4  # more than the first step, after which Ctrl-C lands (then fit, evaluation and saving are still to come)


def modise(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "modise", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A `modise train` stopped by SIGINT (Ctrl-C) after its first checkpoint: (workdir, result)."""
    from modise.data.phantoms import prepare_synthetic

    work = tmp_path_factory.mktemp("life")
    prepare_synthetic(work / "data", n=6, seed=0, size=128, k=3, quiet=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "modise", "train", "--data", "data", "--out", "run", *TINY,
                             "--max-steps", str(STEPS), "--checkpoint-every", "1"],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C must reach it: an ignored SIGINT is inherited through exec, and Lightning
                            # ignores SIGINT in a process after it handled one (an earlier in-process test)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt, end = work / "run" / "checkpoints" / "last.ckpt", time.time() + 240
    while not ckpt.is_file() and proc.poll() is None and time.time() < end:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return work, proc.returncode, err


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(interrupted):
    import torch

    work, code, err = interrupted
    assert code == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err, err
    status = json.loads((work / "run" / "run.json").read_text())
    assert status["status"] == "interrupted" and status["global_step"] >= 1
    ck = torch.load(work / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ck["global_step"] == status["global_step"]  # the step reached, not only the last periodic one


def test_unfinished_run_is_refused_naming_the_fix_then_resumes(interrupted):
    work, _, _ = interrupted
    res = modise("predict", "--checkpoint", "run", "--input", "data/images", "--out", "preds", cwd=work)
    assert res.returncode == 1 and "unfinished training run" in res.stderr and "--resume" in res.stderr, res.stderr
    assert not (work / "preds").exists()
    res = modise("train", "--data", "data", "--out", "run", *TINY, "--max-steps", "3", cwd=work)
    assert res.returncode == 1 and "--resume" in res.stderr and "--overwrite" in res.stderr, res.stderr
    res = modise("train", "--data", "data", "--out", "elsewhere", *TINY, "--resume", cwd=work)
    assert res.returncode == 1 and "Cannot resume" in res.stderr and not (work / "elsewhere").exists(), res.stderr
    res = modise("train", "--data", "data", "--out", "run", *TINY, "--max-steps", str(STEPS + 2), "--resume", cwd=work)
    assert res.returncode == 2 and f"--max-steps {STEPS}, not {STEPS + 2}" in res.stderr, res.stderr
    # how it runs may change (checkpoint interval), what it computes may not
    res = modise("train", "--data", "data", "--out", "run", *TINY, "--max-steps", str(STEPS), "--checkpoint-every", "100",
                 "--resume", cwd=work)
    assert res.returncode == 0, res.stderr
    status = json.loads((work / "run" / "run.json").read_text())
    assert status["status"] == "complete" and status["global_step"] == STEPS
    assert not list((work / "run" / "logs").glob("version_*"))


def test_app_started_with_a_run_segments_with_it_and_says_so(interrupted, sample_images):
    from modise.app.segment_tab import segment_file
    from modise.app.state import RANDOM_RUN, AppSettings, AppState

    work, _, _ = interrupted
    run = work / "run"
    if json.loads((run / "run.json").read_text())["status"] != "complete":
        pytest.skip("needs the resumed run of the previous test")
    state = AppState(AppSettings(runs=[run], random_weights=True, size="tiny", preset="m2f-sd"), tmp_root=work)
    try:
        assert state.run_choices[0] == str(run) and state.run_choices[-1] == RANDOM_RUN
        res = segment_file(state, sample_images[0], state.run_choices[0], 0.3, 0.6)
        assert "m-odise (tiny, random frozen parts" in res.summary and run.name in res.summary
        assert "object-mask threshold 0.3, overlap threshold 0.6" in res.summary
        panoptic = json.loads(Path(res.files[0]).read_text())
        assert panoptic["info"]["model"].startswith(str(run)) and panoptic["info"]["object_mask_threshold"] == 0.3
        rnd = segment_file(state, sample_images[0], RANDOM_RUN, 0.4, 0.5)
        assert "NOT a trained model" in rnd.summary
    finally:
        state.cleanup()
    # an unfinished run is not offered
    status = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**status, "status": "interrupted"}))
    from modise.errors import ModiseError

    with pytest.raises(ModiseError, match="unfinished"):
        AppState(AppSettings(runs=[run]), tmp_root=work)
    (run / "run.json").write_text(json.dumps(status))


def test_predict_names_a_failed_input_and_exits_3(interrupted, sample_images):
    import shutil

    work, _, _ = interrupted
    if json.loads((work / "run" / "run.json").read_text())["status"] != "complete":
        pytest.skip("needs the resumed run of the previous test")
    scans = work / "scans"
    scans.mkdir()
    shutil.copy(sample_images[0], scans / "good.jpg")
    (scans / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = modise("predict", "--checkpoint", "run", "--input", "scans", "--out", "preds", "--no-overlays", cwd=work)
    assert res.returncode == 3, res.stderr
    assert "broken.png" in res.stderr and "good.jpg" not in res.stderr
    assert res.stderr.count("broken.png") == 1, res.stderr  # named once, not per warning and again per error
    assert "1 images" in res.stdout and (work / "preds" / "panoptic.json").is_file()
