"""Ctrl-C during `modise demo` says to run the demo again (its run lives in a staging folder that goes
with it: nothing to resume), leaves no folder behind and prints no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_ctrl_c_in_the_demo_says_run_it_again(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MODISE_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "modise", "demo", "--out", "d", "--max-steps", "5000", "--minutes", "60"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C must reach it (an ignored SIGINT is inherited through exec)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, end = [], time.time() + 240
    while time.time() < end:  # stage lines go to stderr: wait for training to have started
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "2/4 training" in line:
            break
    time.sleep(4)  # inside fit, past the first steps
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = "".join(lines) + err
    assert proc.returncode == 130, err
    assert "Run `modise demo` again" in err and "--resume" not in err and "Traceback" not in err, err
    assert not (tmp_path / "d").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".d.")], list(tmp_path.iterdir())
