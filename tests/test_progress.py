"""Progress in log files: when stderr is not a terminal, train, mame train, prepare and predict print
plain lines (step, loss, rate, ETA) as they go; `mame train` stops on Ctrl-C like `modise train`."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MODISE_PROGRESS_SECONDS": "30"}


def test_plain_lines_come_at_the_first_step_every_tenth_and_the_end():
    from modise.progress import ProgressLines

    out = io.StringIO()
    lines = ProgressLines("training", 100, "step", stream=out, every_s=1e9)
    for step in range(1, 101):
        lines.update(step, metrics=f"loss {1 / step:.3g}")
    lines.close()
    text = out.getvalue().splitlines()
    assert [t.split()[2] for t in text] == [f"{s}/100" for s in (1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100)]
    assert text[0].startswith("training: step 1/100 (1%)  loss 1  ") and "ETA " in text[0]
    assert text[-1].startswith("training: step 100/100 (100%)  loss 0.01") and "ETA" not in text[-1]
    assert all("it/s" in t or "s/it" in t for t in text)


def test_prepare_and_train_write_progress_lines_to_a_log_file(tmp_path):
    env = _env()
    log = tmp_path / "prepare.log"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-m", "modise", "prepare", "synthetic", "--out", "data", "--n", "6",
                        "--image-size", "128"], cwd=tmp_path, env=env, stderr=f, stdout=f, check=True, timeout=300)
    text = log.read_text()
    assert "phantoms: image 1/6 (17%)" in text and "phantoms: image 6/6 (100%)" in text, text

    log = tmp_path / "train.log"
    with log.open("w") as f:  # `modise train > log 2>&1`
        subprocess.run([sys.executable, "-m", "modise", "train", "--data", "data", "--out", "run", "--size", "tiny",
                        "--random-weights", "--image-size", "128", "--batch-size", "2", "--accelerator", "cpu",
                        "--devices", "1", "--warmup-steps", "1", "--max-steps", "4"],
                       cwd=tmp_path, env=env, stderr=f, stdout=f, check=True, timeout=300)
    lines = log.read_text().splitlines()
    steps = [line for line in lines if line.startswith("training: step ")]
    assert steps[0].startswith("training: step 1/4 (25%)  loss ") and "ETA " in steps[0], lines
    assert steps[-1].startswith("training: step 4/4 (100%)  loss "), lines
    assert any(line.startswith("validating: batch ") for line in lines), lines
    assert not any("\x1b[" in line or "━" in line for line in lines), lines  # no terminal drawing in a log


def test_mame_train_ctrl_c_exits_130_with_a_sentence_and_a_quiet_log(tmp_path, sample_images):
    data = tmp_path / "d"
    data.mkdir()
    for i, p in enumerate(sample_images[:2]):
        Image.open(p).convert("L").resize((64, 64)).save(data / f"{i}.png")
    (data / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": f"{i}.png", "text": "a siemens mammogram in CC view"}) + "\n" for i in range(2)))
    log = tmp_path / "mame.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modise", "mame", "train", "--size", "tiny", "--random-weights", "--resolution",
             "64", "--data", "d", "--out", "run", "--max-steps", "100000", "--checkpoint-every", "1", "--val-every", "0"],
            cwd=tmp_path, env=_env(), stdout=f, stderr=f,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # see test_runs
        try:
            ckpt, end = tmp_path / "run" / "checkpoints" / "last.ckpt", time.time() + 240
            while not ckpt.is_file() and proc.poll() is None and time.time() < end:
                time.sleep(0.2)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:  # a child that outlives the test would slow every test after it (100000 steps)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert code == 130, text
    assert "Training interrupted (checkpoint at step" in text and "--resume (--out run)" in text, text
    assert "Traceback" not in text and "GPU available" not in text and "Epoch" not in text, text
    assert "mame train: step 1/100000" in text, text
    assert ckpt.is_file()


def test_interrupted_prepare_says_so_and_leaves_no_output(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "modise", "prepare", "synthetic", "--out", "data", "--n", "400"],
                            cwd=tmp_path, env={**_env(), "MODISE_PROGRESS_SECONDS": "0"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stderr.readline()  # the first progress line: it is converting
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert first.startswith("phantoms: image 1/400"), first
    assert proc.returncode == 130 and "interrupted (Ctrl-C)" in err and "Traceback" not in err, err
    assert not (tmp_path / "data").exists()
