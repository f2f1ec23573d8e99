"""Each pytest-xdist worker caps its threads (`pytest -n auto` on 16 cores would oversubscribe them), and
`modise --threads N` / MODISE_THREADS limits a command's threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLEAN = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _threads_in_worker(workers: int, cpus: int) -> int:
    code = (f"import os; os.cpu_count = lambda: {cpus}; import runpy; runpy.run_path({str(TESTS / 'conftest.py')!r}); "
            "import torch; print(torch.get_num_threads())")
    env = {**CLEAN, "PYTEST_XDIST_WORKER_COUNT": str(workers), "PYTHONPATH": str(TESTS)}  # conftest imports its neighbours
    return int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)


def test_xdist_workers_share_the_cores():
    assert _threads_in_worker(14, 16) == 1
    assert _threads_in_worker(4, 16) == 4


def test_threads_option_and_environment_limit_torch():
    # torch's thread count in the process after the CLI parsed its global options
    for args, env in ((["--threads", "1", "version"], CLEAN), (["version"], {**CLEAN, "MODISE_THREADS": "1"})):
        code = (f"import sys\nfrom modise.cli import app\nsys.argv[1:] = {args}\n"
                "try:\n    app()\nexcept SystemExit:\n    pass\nimport torch\nprint(torch.get_num_threads())")
        run = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
                             capture_output=True, text=True, check=True)
        assert run.stdout.split()[-1] == "1", run
